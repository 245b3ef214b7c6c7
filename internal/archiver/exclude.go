package archiver

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"

	"github.com/brr-dev/brr/internal/excludes"
	"github.com/brr-dev/brr/internal/fsio"
	"golang.org/x/sys/unix"
)

// cacheTag is the file that marks a cache directory, and cacheTagSignature how it must
// begin to count (https://bford.info/cachedir/).
const cacheTag = "CACHEDIR.TAG"

var cacheTagSignature = []byte("Signature: 8a477f597d28d172789f06886806bc55")

// maxIgnoreFile bounds the ignore files read: a larger one is left unread, with a warning.
const maxIgnoreFile = 1 << 20

// dirExcludes are the excludes that apply to the entries of one directory.
type dirExcludes struct {
	match    *excludes.Matcher // those of the directories above and of this one's ignore file
	cacheDir bool              // the directory holds a valid CACHEDIR.TAG: all but the tag is left out
}

// dirExcludes reads what in the directory d (open as fd, at path, with the entries
// names) bears on its entries: its cache tag and its ignore file.
func (a *Archiver) dirExcludes(fd int, path string, d *dirState, names []string) dirExcludes {
	ex := dirExcludes{match: d.match}
	if fd < 0 {
		return ex
	}
	if a.opts.ExcludeCaches && hasName(names, cacheTag) {
		data, err := readSmallFile(fd, cacheTag, len(cacheTagSignature))
		if err != nil && !errors.Is(err, errNotRegular) {
			a.warn("read %s: %v; the directory is backed up as if it had no tag", filepath.Join(path, cacheTag), err)
		}
		ex.cacheDir = bytes.Equal(data, cacheTagSignature)
	}
	if f := a.opts.IgnoreFile; f != "" && !ex.cacheDir && hasName(names, f) {
		data, err := readSmallFile(fd, f, maxIgnoreFile+1)
		switch {
		case errors.Is(err, errNotRegular):
			a.warn("%s is not a regular file; its patterns are not applied", filepath.Join(path, f))
		case err != nil:
			a.warn("read %s: %v; its patterns are not applied", filepath.Join(path, f), err)
		case len(data) > maxIgnoreFile:
			a.warn("%s is larger than %d bytes; its patterns are not applied", filepath.Join(path, f), maxIgnoreFile)
		default:
			ex.match = ex.match.WithFile(d.rel, data)
		}
	}
	return ex
}

// excluded reports whether the entry name (rel from the root) of a directory with the
// excludes ex is left out, from its lstat st alone, and counts it when it is.
func (a *Archiver) excluded(ex dirExcludes, name, rel string, mode fs.FileMode, st *unix.Stat_t) bool {
	switch {
	case ex.cacheDir && name != cacheTag:
	case ex.match.Excluded(rel, mode.IsDir()):
	case mode.IsRegular() && a.opts.ExcludeLargerThan > 0 && st.Size > a.opts.ExcludeLargerThan:
	case a.opts.OneFileSystem && !mode.IsDir() && uint64(st.Dev) != a.rootDev:
		// A file mounted over another (a bind mount). A directory is kept, empty.
	default:
		return false
	}
	if mode.IsDir() {
		a.dirsExcluded.Add(1)
		return true
	}
	a.filesExcluded.Add(1)
	if mode.IsRegular() {
		a.bytesExcluded.Add(st.Size)
	}
	return true
}

func hasName(names []string, name string) bool {
	_, ok := slices.BinarySearch(names, name)
	return ok
}

var errNotRegular = errors.New("not a regular file")

// readSmallFile reads at most max bytes of the regular file name in the directory dirfd.
// It does not follow a symlink and does not wait on a FIFO: anything but a regular file
// is errNotRegular, whatever it turns into between the lstat and the open.
func readSmallFile(dirfd int, name string, max int) ([]byte, error) {
	var st unix.Stat_t
	if err := fsio.IgnoringEINTR(func() error { return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
		return nil, err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, errNotRegular
	}
	var fd int
	open := func(flags int) error {
		return fsio.IgnoringEINTR(func() (err error) {
			fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_CLOEXEC|flags, 0)
			return err
		})
	}
	err := open(unix.O_NOATIME)
	if errors.Is(err, unix.EPERM) {
		err = open(0) // O_NOATIME needs the file's owner, or root
	}
	if errors.Is(err, unix.ELOOP) {
		return nil, errNotRegular
	}
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, errNotRegular
	}
	b := make([]byte, min(max, int(st.Size)+1))
	n := 0
	for n < len(b) {
		m, err := fsio.Read(fd, b[n:])
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return b[:n], nil
}
