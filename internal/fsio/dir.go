package fsio

import (
	"cmp"
	"encoding/binary"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// ReadDir opens the directory at path and lists its names, sorted. The returned fd (-1
// on error) is the directory's, to stat its entries relative to it; the caller closes it.
func ReadDir(path string) (int, []string, error) {
	fd, names, _, err := readDir(path, false)
	return fd, names, err
}

// Entry types of ReadDirTypes, as getdents gives them (d_type). TypeUnknown means that
// the file system did not say: an lstat has to.
const (
	TypeUnknown = unix.DT_UNKNOWN
	TypeRegular = unix.DT_REG
	TypeDir     = unix.DT_DIR
	TypeSymlink = unix.DT_LNK
)

// ReadDirTypes is ReadDir that also gives each name's type from the listing itself
// (types[i] is names[i]'s, TypeUnknown when the file system does not say), so that a
// caller can leave out the lstat of an entry whose type is all it needs to know yet.
func ReadDirTypes(path string) (int, []string, []uint8, error) {
	return readDir(path, true)
}

// readDir is ReadDirTypes, with the types only when withTypes.
func readDir(path string, withTypes bool) (int, []string, []uint8, error) {
	var fd int
	err := IgnoringEINTR(func() (err error) {
		fd, err = unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return -1, nil, nil, err
	}
	names, types, err := readEntries(fd, withTypes)
	if err != nil {
		unix.Close(fd)
		return -1, nil, nil, err
	}
	return fd, names, types, nil
}

type dirEntry struct {
	name string
	typ  uint8
}

// readEntries lists the names in the open directory fd, sorted by name, and their types
// when withTypes (else nil: a listing of thousands of names need not carry a slice that
// nobody reads).
func readEntries(fd int, withTypes bool) ([]string, []uint8, error) {
	bp := direntPool.Get().(*[]byte)
	defer direntPool.Put(bp)
	var ents []dirEntry
	for {
		var n int
		err := IgnoringEINTR(func() (err error) {
			n, err = unix.ReadDirent(fd, *bp)
			return err
		})
		if err != nil {
			return nil, nil, err
		}
		if n <= 0 {
			break
		}
		ents = parseDirents((*bp)[:n], ents)
	}
	slices.SortFunc(ents, func(a, b dirEntry) int { return cmp.Compare(a.name, b.name) })
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.name
	}
	if !withTypes {
		return names, nil, nil
	}
	types := make([]uint8, len(ents))
	for i, e := range ents {
		types[i] = e.typ
	}
	return names, types, nil
}

// parseDirents appends the entries of a buffer of linux_dirent64 records (ino 8, off 8,
// reclen 2, type 1, then the name, NUL-terminated) to ents, without "." and "..".
func parseDirents(b []byte, ents []dirEntry) []dirEntry {
	const nameOff = 19
	for len(b) >= nameOff {
		reclen := int(binary.NativeEndian.Uint16(b[16:18]))
		if reclen < nameOff || reclen > len(b) {
			break
		}
		rec := b[:reclen]
		b = b[reclen:]
		if binary.NativeEndian.Uint64(rec[0:8]) == 0 {
			continue // a deleted entry
		}
		name := rec[nameOff:]
		for i, c := range name {
			if c == 0 {
				name = name[:i]
				break
			}
		}
		if string(name) == "." || string(name) == ".." {
			continue
		}
		ents = append(ents, dirEntry{name: string(name), typ: rec[18]})
	}
	return ents
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
