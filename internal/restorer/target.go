package restorer

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/fsio"
	"golang.org/x/sys/unix"
)

// target is the directory a restore writes below. Every change a restore makes to the
// file system by name goes through its methods, which take a path relative to it,
// slash-separated and checked by the plan ("." is the target itself), and make one system
// call each; what is written through an open file's descriptor is not named again. The
// methods join the path to the target's today, so a symlink swapped in for a directory
// while a restore runs would be followed; walking directory descriptors instead
// (openat, mkdirat, renameat…) changes this file alone.
type target struct {
	root string
}

func (t target) abs(rel string) string { return filepath.Join(t.root, filepath.FromSlash(rel)) }

func (t target) lstat(rel string) (fs.FileInfo, error) { return os.Lstat(t.abs(rel)) }

// mkdir creates the directory rel with mode 0700; it gets its own mode last.
func (t target) mkdir(rel string) error { return os.Mkdir(t.abs(rel), 0o700) }

func (t target) remove(rel string) error { return os.Remove(t.abs(rel)) }

func (t target) symlink(to, rel string) error { return os.Symlink(to, t.abs(rel)) }

func (t target) link(oldRel, rel string) error { return os.Link(t.abs(oldRel), t.abs(rel)) }

func (t target) lchown(rel string, uid, gid int) error { return os.Lchown(t.abs(rel), uid, gid) }

func (t target) chmod(rel string, mode fs.FileMode) error { return os.Chmod(t.abs(rel), mode) }

// setMtime sets the access and modification times of rel to mtime, without following a
// symlink at rel.
func (t target) setMtime(rel string, mtime time.Time) error {
	ts := unix.NsecToTimespec(mtime.UnixNano())
	return unix.UtimesNanoAt(unix.AT_FDCWD, t.abs(rel), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
}

// create creates the file rel, which must not exist, not even as a symlink, and opens
// it to write. An error names rel's directory.
func (t target) create(rel string) (int, error) {
	var fd int
	err := fsio.IgnoringEINTR(func() (err error) {
		fd, err = unix.Open(t.abs(rel), unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		return -1, &fs.PathError{Op: "open", Path: filepath.Dir(t.abs(rel)), Err: err}
	}
	return fd, nil
}

// renameNoReplace moves from to rel unless something is at rel; the error is EEXIST when
// something is, EINVAL or ENOSYS when the file system cannot tell atomically.
func (t target) renameNoReplace(from, rel string) error {
	return unix.Renameat2(unix.AT_FDCWD, t.abs(from), unix.AT_FDCWD, t.abs(rel), unix.RENAME_NOREPLACE)
}

func (t target) rename(from, rel string) error { return os.Rename(t.abs(from), t.abs(rel)) }

// PrepareTarget creates the target directory if needed and checks that it is one.
func PrepareTarget(target string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create restore target %s: %w", target, err)
	}
	fi, err := os.Lstat(target)
	if err != nil {
		return fmt.Errorf("stat restore target %s: %w", target, err)
	}
	if !fi.IsDir() {
		return brr.Permanent(fmt.Errorf("restore target %s is not a directory; restore into a directory", target))
	}
	return nil
}
