package fsio

import (
	"container/list"
	"errors"
	"fmt"
	"path"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// Root is a directory below which a restore or a drill names its entries by paths
// relative to it, and reaches them without ever following a symlink: each directory is
// opened relative to the root's descriptor, with openat2 and RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS where the kernel has it, else one component at a time with
// O_NOFOLLOW; every change is then made relative to the directory's descriptor (mkdirat,
// openat, renameat2…) on its last component alone. So no directory swapped for a symlink
// while the work runs, at any depth, can lead it outside: the open fails instead, and
// that entry with it. (A directory moved out of the root by someone who may write there
// takes what is written into it along: that is theirs to do.)
//
// The descriptors of the directories used last are kept open (dirCacheSize of them), so
// that writing many files in one directory does not open it again for each. A Root is
// safe for concurrent use.
type Root struct {
	fd   int // O_PATH
	path string
	// walk is set when the kernel has no openat2: directories are opened one component
	// at a time.
	walk atomic.Bool

	mu   sync.Mutex
	dirs map[string]*dir
	lru  list.List // of *dir, used last first
}

// dirCacheSize is how many directory descriptors a Root keeps open.
const dirCacheSize = 64

// dir is an open directory below a Root, counted while in use: one evicted from the
// cache is closed when its last user is done.
type dir struct {
	fd      int
	rel     string
	refs    int
	evicted bool
	elem    *list.Element
}

// OpenRoot opens the directory at the absolute path p, whose components must all be
// directories, not symlinks (resolve it first): it is walked from "/" with O_NOFOLLOW,
// so that no component swapped meanwhile is followed either.
func OpenRoot(p string) (*Root, error) {
	fd, err := walkPath(p, false, 0)
	if err != nil {
		return nil, err
	}
	return &Root{fd: fd, path: p, dirs: make(map[string]*dir)}, nil
}

// MkdirAll creates the directory at the absolute path p and its missing parents with
// mode perm, without following a symlink at any component.
func MkdirAll(p string, perm uint32) error {
	fd, err := walkPath(p, true, perm)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// walkPath opens the directory at the absolute path p one component at a time with
// O_NOFOLLOW, creating the missing ones with create. A component that is not a
// directory fails with a *fs.PathError that names it.
func walkPath(p string, create bool, perm uint32) (int, error) {
	if !path.IsAbs(p) {
		return -1, fmt.Errorf("open directory %s: not an absolute path", p)
	}
	fd, err := openDir(unix.AT_FDCWD, "/")
	if err != nil {
		return -1, pathErr("open", "/", err)
	}
	cur := "/"
	for _, name := range strings.Split(path.Clean(p), "/") {
		if name == "" {
			continue
		}
		cur = path.Join(cur, name)
		next, err := openDir(fd, name)
		if create && errors.Is(err, unix.ENOENT) {
			if err = IgnoringEINTR(func() error { return unix.Mkdirat(fd, name, perm) }); err == nil || errors.Is(err, unix.EEXIST) {
				next, err = openDir(fd, name)
			}
		}
		unix.Close(fd)
		if err != nil {
			return -1, pathErr("open", cur, err)
		}
		fd = next
	}
	return fd, nil
}

// openDir opens the directory name in dirfd, never through a symlink.
func openDir(dirfd int, name string) (int, error) {
	var fd int
	err := IgnoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, name, unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	return fd, err
}

// ErrNotDir is the error of a path below a Root with a component that is not a
// directory: a symlink, above all, which is never followed.
var ErrNotDir = errors.New("a component is a symlink or not a directory (a symlink is never followed)")

// pathErr is the error of op on p: ENOTDIR and ELOOP, which an open with O_NOFOLLOW and
// O_DIRECTORY or RESOLVE_NO_SYMLINKS return for a symlink, say ErrNotDir.
func pathErr(op, p string, err error) error {
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		err = fmt.Errorf("%w: %w", ErrNotDir, err)
	}
	return fmt.Errorf("%s %s: %w", op, p, err)
}

// Path is the path the root was opened at.
func (r *Root) Path() string { return r.path }

// Close closes the root's descriptors. Call it once every At has returned.
func (r *Root) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.dirs {
		unix.Close(d.fd)
	}
	r.dirs = nil
	r.lru.Init()
	return unix.Close(r.fd)
}

// At calls fn with the descriptor of the directory that holds rel (a clean,
// slash-separated path relative to the root, "." for the root itself) and rel's last
// component: fn names rel by them, relative to the descriptor, with a call that does not
// follow a symlink at the last component. At returns fn's error, or why rel's directory
// could not be opened (ErrNotDir for a symlink on the way).
func (r *Root) At(rel string, fn func(dirfd int, name string) error) error {
	parent, name := path.Split(rel)
	if parent == "" {
		return fn(r.fd, name)
	}
	d, err := r.dir(parent[:len(parent)-1])
	if err != nil {
		return err
	}
	defer r.release(d)
	return fn(d.fd, name)
}

// ReadDir lists the names in the directory rel, sorted.
func (r *Root) ReadDir(rel string) ([]string, error) {
	var names []string
	err := r.At(rel, func(dirfd int, name string) error {
		var fd int
		err := IgnoringEINTR(func() (err error) {
			fd, err = unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			return err
		})
		if err != nil {
			return pathErr("open", rel, err)
		}
		defer unix.Close(fd)
		names, _, err = readEntries(fd, false)
		return err
	})
	return names, err
}

// dir returns the open directory rel (not "."), counted as in use until release.
func (r *Root) dir(rel string) (*dir, error) {
	r.mu.Lock()
	if d := r.dirs[rel]; d != nil {
		d.refs++
		r.lru.MoveToFront(d.elem)
		r.mu.Unlock()
		return d, nil
	}
	r.mu.Unlock()

	fd, err := r.open(rel)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if d := r.dirs[rel]; d != nil { // opened meanwhile by another
		unix.Close(fd)
		d.refs++
		r.lru.MoveToFront(d.elem)
		return d, nil
	}
	d := &dir{fd: fd, rel: rel, refs: 1}
	d.elem = r.lru.PushFront(d)
	r.dirs[rel] = d
	for r.lru.Len() > dirCacheSize {
		old := r.lru.Remove(r.lru.Back()).(*dir)
		delete(r.dirs, old.rel)
		old.evicted = true
		if old.refs == 0 {
			unix.Close(old.fd)
		}
	}
	return d, nil
}

func (r *Root) release(d *dir) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d.refs--
	if d.evicted && d.refs == 0 {
		unix.Close(d.fd)
	}
}

// open opens the directory rel below the root: with openat2 where the kernel has it,
// else through its parent, itself opened (and kept) the same way.
func (r *Root) open(rel string) (int, error) {
	if !r.walk.Load() {
		fd, err := r.openBeneath(rel)
		if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
			return fd, err
		}
		// No openat2 (or a seccomp filter that refuses it): walk instead.
		r.walk.Store(true)
	}
	var fd int
	err := r.At(rel, func(dirfd int, name string) (err error) {
		fd, err = openDir(dirfd, name)
		if err != nil {
			return pathErr("open directory", rel, err)
		}
		return nil
	})
	return fd, err
}

// openBeneath opens the directory rel with openat2, which fails rather than leave the
// root or follow a symlink; ENOSYS or EPERM, unwrapped, when it cannot be used.
func (r *Root) openBeneath(rel string) (int, error) {
	how := unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	}
	for {
		fd, err := unix.Openat2(r.fd, rel, &how)
		switch err {
		case nil:
			return fd, nil
		case unix.EINTR, unix.EAGAIN: // EAGAIN: a rename raced the lookup
			continue
		case unix.ENOSYS, unix.EPERM:
			return -1, err
		}
		return -1, pathErr("open directory", rel, err)
	}
}

// Lstatat stats name in dirfd without following a symlink.
func Lstatat(dirfd int, name string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := IgnoringEINTR(func() error { return unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW) })
	return st, err
}

// Chmodat sets the mode bits (as chmod(2) takes them) of name in dirfd without following
// a symlink: with fchmodat2 where the kernel has it (Linux 6.6), else through an O_PATH
// descriptor of name and its /proc/self/fd link, as the C library does. A symlink fails
// with EOPNOTSUPP: Linux has no mode for one.
func Chmodat(dirfd int, name string, mode uint32) error {
	err := IgnoringEINTR(func() error { return unix.Fchmodat(dirfd, name, mode, unix.AT_SYMLINK_NOFOLLOW) })
	if err != unix.EOPNOTSUPP && err != unix.ENOSYS {
		return err
	}
	var fd int
	err = IgnoringEINTR(func() (err error) {
		fd, err = unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		return err
	})
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFLNK {
		return unix.EOPNOTSUPP
	}
	return IgnoringEINTR(func() error { return unix.Chmod(fmt.Sprintf("/proc/self/fd/%d", fd), mode) })
}
