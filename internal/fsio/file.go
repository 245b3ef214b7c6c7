package fsio

import (
	"errors"
	"fmt"
	"io"
	"unsafe"

	"golang.org/x/sys/unix"
)

// OpenFile opens a regular file to read it: never through a symlink, never waiting on a
// FIFO, and without updating its access time when the worker may (it owns the file, or
// is root).
func OpenFile(path string) (int, error) { return OpenFileAt(unix.AT_FDCWD, path) }

// Read reads from fd into b; 0 and no error at the end of the file.
func Read(fd int, b []byte) (int, error) {
	for {
		n, err := unix.Read(fd, b)
		if err == unix.EINTR {
			continue
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}

// Reader reads a file descriptor; io.EOF at its end.
type Reader int

func (r Reader) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	n, err := Read(int(r), b)
	if err != nil {
		return n, err
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// PwriteAll writes all of b at off in fd.
func PwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		b = b[n:]
		off += int64(n)
	}
	return nil
}

// Futimens sets the access and modification times of the open file fd.
func Futimens(fd int, ts *[2]unix.Timespec) error {
	_, _, errno := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// OpenFileAt opens the regular file name in dirfd to read it, as OpenFile does: never
// through a symlink, and without updating its access time when the worker may. It does
// not wait on a FIFO that took the file's place (O_NONBLOCK, which a regular file's reads
// ignore): the caller's fstat tells it is not a regular file.
func OpenFileAt(dirfd int, name string) (int, error) {
	var fd int
	err := IgnoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOATIME|unix.O_CLOEXEC, 0)
		return err
	})
	if errors.Is(err, unix.EPERM) {
		err = IgnoringEINTR(func() (err error) {
			fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
			return err
		})
	}
	return fd, err
}
