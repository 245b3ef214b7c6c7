package restorer

import (
	"errors"
	"fmt"
	"os"
	"path"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/fsio"
	"golang.org/x/sys/unix"
)

// target is the directory a restore writes below. Every change a restore makes to the
// file system by name goes through its methods, which take a path relative to it,
// slash-separated and checked by the plan ("." is the target itself). Each resolves the
// directory that holds the path through the fsio.Root (relative to the target's
// descriptor, never through a symlink, the descriptor kept for the next entry of the same
// directory) and makes one system call relative to that directory's descriptor, which
// does not follow a symlink at the last component either. So a directory swapped for a
// symlink while the restore runs fails the entries below it (fsio.ErrNotDir) instead of
// leading them outside. What is written through an open file's descriptor is not named
// again.
type target struct {
	root *fsio.Root
}

// syncFS is syncfs(2); a test makes it fail.
var syncFS = unix.Syncfs

// sync writes everything of the target's file system to disk: the data of the files the
// restore wrote and renamed to their names without syncing each, and the renames.
func (t target) sync() error {
	return t.root.At(".", func(dirfd int, name string) error {
		fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return syncFS(fd)
	})
}

func (t target) lstat(rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := t.root.At(rel, func(dirfd int, name string) (err error) {
		st, err = fsio.Lstatat(dirfd, name)
		return err
	})
	return st, err
}

// mkdir creates the directory rel with mode 0700; it gets its own mode last.
func (t target) mkdir(rel string) error {
	return t.root.At(rel, func(dirfd int, name string) error {
		return opErr("mkdir", fsio.IgnoringEINTR(func() error { return unix.Mkdirat(dirfd, name, 0o700) }))
	})
}

// remove removes rel, which is not a directory.
func (t target) remove(rel string) error {
	return t.root.At(rel, func(dirfd int, name string) error {
		return opErr("remove", unix.Unlinkat(dirfd, name, 0))
	})
}

func (t target) symlink(to, rel string) error {
	return t.root.At(rel, func(dirfd int, name string) error {
		return opErr("symlink", unix.Symlinkat(to, dirfd, name))
	})
}

func (t target) readlink(rel string, size int64) (string, error) {
	var to string
	err := t.root.At(rel, func(dirfd int, name string) (err error) {
		to, err = fsio.Readlinkat(dirfd, name, size)
		return err
	})
	return to, err
}

// link makes rel a hard link of oldRel, not of what oldRel links to if it is a symlink.
func (t target) link(oldRel, rel string) error {
	return t.root.At(oldRel, func(olddirfd int, oldname string) error {
		return t.root.At(rel, func(dirfd int, name string) error {
			return opErr("link", unix.Linkat(olddirfd, oldname, dirfd, name, 0))
		})
	})
}

func (t target) lchown(rel string, uid, gid int) error {
	return t.root.At(rel, func(dirfd int, name string) error {
		return unix.Fchownat(dirfd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW)
	})
}

// chmod sets the mode bits of rel, which is not a symlink (it fails if it is one).
func (t target) chmod(rel string, mode uint32) error {
	return t.root.At(rel, func(dirfd int, name string) error {
		return fsio.Chmodat(dirfd, name, mode)
	})
}

// setMtime sets the access and modification times of rel to mtime, without following a
// symlink at rel.
func (t target) setMtime(rel string, mtime time.Time) error {
	ts := unix.NsecToTimespec(mtime.UnixNano())
	return t.root.At(rel, func(dirfd int, name string) error {
		return unix.UtimesNanoAt(dirfd, name, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
	})
}

// create creates the file rel, which must not exist, not even as a symlink, and opens
// it to write. An error names rel's directory.
func (t target) create(rel string) (int, error) {
	var fd int
	err := t.root.At(rel, func(dirfd int, name string) (err error) {
		fd, err = openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("create a file in %s: %w", slash(path.Dir(rel)), err)
		}
		return nil
	})
	return fd, err
}

// open opens rel with flags, never through a symlink.
func (t target) open(rel string, flags int, perm uint32) (int, error) {
	var fd int
	err := t.root.At(rel, func(dirfd int, name string) (err error) {
		fd, err = openat(dirfd, name, flags, perm)
		return err
	})
	return fd, err
}

func openat(dirfd int, name string, flags int, perm uint32) (int, error) {
	var fd int
	err := fsio.IgnoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, name, flags|unix.O_NOFOLLOW|unix.O_CLOEXEC, perm)
		return err
	})
	return fd, err
}

// renameNoReplace moves from to rel unless something is at rel; the error is EEXIST when
// something is, EINVAL or ENOSYS when the file system cannot tell atomically.
func (t target) renameNoReplace(from, rel string) error {
	return t.root.At(from, func(fromfd int, fromName string) error {
		return t.root.At(rel, func(dirfd int, name string) error {
			return unix.Renameat2(fromfd, fromName, dirfd, name, unix.RENAME_NOREPLACE)
		})
	})
}

func (t target) rename(from, rel string) error {
	return t.root.At(from, func(fromfd int, fromName string) error {
		return t.root.At(rel, func(dirfd int, name string) error {
			return unix.Renameat(fromfd, fromName, dirfd, name)
		})
	})
}

// readDir lists the names in the directory rel.
func (t target) readDir(rel string) ([]string, error) { return t.root.ReadDir(rel) }

// slash shows rel as a path in the snapshot: "/a/b", "/" for the target itself.
func slash(rel string) string {
	if rel == "." {
		return "/"
	}
	return "/" + rel
}

// opErr says which call failed with the errno err, if any.
func opErr(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("%s: %w", op, err)
}

// PrepareTarget creates the target directory if needed and checks that it is one. No
// component of target is followed if it is a symlink: give a resolved path.
func PrepareTarget(target string) error {
	err := fsio.MkdirAll(target, 0o755)
	if err == nil {
		return nil
	}
	if fi, lerr := os.Lstat(target); lerr == nil && !fi.IsDir() {
		return brr.Permanent(fmt.Errorf("restore target %s is not a directory; restore into a directory", target))
	}
	if errors.Is(err, fsio.ErrNotDir) {
		return fmt.Errorf("create restore target %s: %w; give a path without symlinks", target, err)
	}
	return fmt.Errorf("create restore target %s: %w", target, err)
}
