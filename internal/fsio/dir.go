package fsio

import (
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// ReadDir opens the directory at path and lists its names, sorted. The returned fd (-1
// on error) is the directory's, to stat its entries relative to it; the caller closes it.
func ReadDir(path string) (int, []string, error) {
	var fd int
	err := IgnoringEINTR(func() (err error) {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, nil, err
	}
	names, err := readNames(fd)
	if err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, names, nil
}

// readNames lists the names in the open directory fd, sorted.
func readNames(fd int) ([]string, error) {
	bp := direntPool.Get().(*[]byte)
	defer direntPool.Put(bp)
	var names []string
	for {
		var n int
		err := IgnoringEINTR(func() (err error) {
			n, err = unix.ReadDirent(fd, *bp)
			return err
		})
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent((*bp)[:n], -1, names)
	}
	slices.Sort(names)
	return names, nil
}

var direntPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Readlinkat reads the target of the symlink name in the directory dirfd; size, its size
// from lstat, is a hint for the buffer.
func Readlinkat(dirfd int, name string, size int64) (string, error) {
	n := max(int(size)+1, 128)
	for {
		b := make([]byte, n)
		var m int
		err := IgnoringEINTR(func() (err error) {
			m, err = unix.Readlinkat(dirfd, name, b)
			return err
		})
		if err != nil {
			return "", err
		}
		if m < n {
			return string(b[:m]), nil
		}
		n *= 2
	}
}
