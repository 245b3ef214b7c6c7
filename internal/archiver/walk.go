package archiver

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/brr-dev/brr/internal/excludes"
	"github.com/brr-dev/brr/internal/fsio"
	"github.com/brr-dev/brr/internal/repo"
	"golang.org/x/sys/unix"
)

// dirState is one directory in flight: its nodes, and how many of them (plus the lister's
// own hold while it lists the directory) are not final yet.
type dirState struct {
	rel     string // path relative to the source root, "" for the root
	path    string // rel under the root, set when the lister opens it
	nodes   []*repo.Node
	pending atomic.Int64
	parent  *dirState
	node    *repo.Node        // this directory's node in parent.nodes
	match   *excludes.Matcher // the excludes of the directories above, without this one's ignore file
	// fd is the open directory, -1 when it is not kept for its files (see maxDirFDs);
	// fdRefs counts its holders: the lister while it lists, and each file job not done.
	fd     int
	fdRefs atomic.Int64
}

// maxDirFDs bounds the directory descriptors that file jobs hold open at once, so that
// their files are opened relative to their directory (one path component for the kernel
// to look up, not the whole path) without running out of descriptors on a tree of many
// directories of one file each: past it, files are opened by their full path.
var maxDirFDs int64 = 256 // a variable only so that tests can make it small

// listDir lists the directory d, stats the entries it has to, leaves out the excluded
// ones, and queues the files for the file workers (on a dry run, reports them) and the
// subdirectories for the listers, then drops its hold on d. What is excluded is decided
// from the names and their lstat: an excluded entry is never opened, and an excluded
// directory never listed.
//
// A regular file (as the listing's d_type says) that no pattern excludes is not
// lstat'ed here when nothing else would need its lstat (no size limit, no
// one-file-system, not a dry run): its file worker stats it once, with an fstatat when
// the file cache knows it (an unchanged file is answered from that alone) or with an
// fstat of the file it opened, so that a new file costs openat, fstat, read and close.
func (a *Archiver) listDir(ctx context.Context, d *dirState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	path := filepath.Join(a.root, d.rel)
	d.path = path
	d.fd = -1
	fd, names, types, err := fsio.ReadDirTypes(path)
	if err != nil {
		if d.parent == nil {
			return fmt.Errorf("read source directory %s: %w", path, err)
		}
		a.warn("read directory %s: %v (its entries are missing from the snapshot)", path, err)
	}
	if fd >= 0 {
		if !a.opts.DryRun && a.dirFDs.Add(1) <= maxDirFDs {
			// Shared with the file jobs of d: the last one to finish closes it.
			d.fd = fd
			d.fdRefs.Store(1)
			defer a.dropDirFD(d)
		} else {
			if !a.opts.DryRun {
				a.dirFDs.Add(-1)
			}
			defer unix.Close(fd)
		}
	}
	if d.parent == nil && fd >= 0 && a.opts.OneFileSystem {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stat source directory %s: %w", path, err)
		}
		a.rootDev = uint64(st.Dev)
	}
	ex := a.dirExcludes(fd, path, d, names)
	deferStat := !a.opts.DryRun && a.opts.ExcludeLargerThan == 0 && !a.opts.OneFileSystem
	d.nodes = make([]*repo.Node, 0, len(names))
	var st unix.Stat_t
	for i, name := range names {
		rel := name
		if d.rel != "" {
			rel = d.rel + "/" + name
		}
		if deferStat && types[i] == fsio.TypeRegular && !(ex.cacheDir && name != cacheTag) && !ex.match.Excluded(rel, false) {
			node := &repo.Node{Name: name, Type: repo.NodeFile}
			a.files.Add(1)
			d.nodes = append(d.nodes, node)
			d.pending.Add(1)
			if d.fd >= 0 {
				d.fdRefs.Add(1)
			}
			select {
			case a.fileCh <- &fileJob{name: name, rel: rel, node: node, dir: d}:
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		if err := fsio.IgnoringEINTR(func() error { return unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				a.warn("%s vanished before it was read; not in the snapshot", filepath.Join(path, name))
			} else {
				a.warn("stat %s: %v; not in the snapshot", filepath.Join(path, name), err)
			}
			continue
		}
		mode := fsio.ModeOf(st.Mode)
		if a.excluded(ex, name, rel, mode, &st) {
			continue
		}
		node := nodeFromStat(name, &st)
		switch {
		case mode.IsRegular() && a.opts.DryRun:
			a.files.Add(1)
			a.bytes.Add(node.Size)
			if a.opts.WouldRead != nil {
				a.opts.WouldRead(rel, node.Size)
			}
		case mode.IsRegular():
			node.Type = repo.NodeFile
			a.files.Add(1)
			a.bytes.Add(node.Size)
			d.nodes = append(d.nodes, node)
			d.pending.Add(1)
			if d.fd >= 0 {
				d.fdRefs.Add(1)
			}
			select {
			case a.fileCh <- &fileJob{name: name, rel: rel, node: node, dir: d, statted: true, ctime: st.Ctim.Nano()}:
			case <-ctx.Done():
				return ctx.Err()
			}
		case mode.IsDir():
			a.dirs.Add(1)
			node.Type = repo.NodeDir
			d.nodes = append(d.nodes, node)
			child := &dirState{rel: rel, parent: d, node: node, match: ex.match}
			child.pending.Store(1)
			d.pending.Add(1)
			if a.opts.OneFileSystem && uint64(st.Dev) != a.rootDev {
				// A mount point: kept, empty.
				a.dirsExcluded.Add(1)
				if err := a.release(ctx, child); err != nil {
					return err
				}
				continue
			}
			a.dirsLeft.Add(1)
			select {
			case a.dirCh <- child:
			default:
				// The queue is full: list it here.
				err := a.listDir(ctx, child)
				a.dirsLeft.Done()
				if err != nil {
					return err
				}
			}
		case mode&fs.ModeSymlink != 0 && a.opts.DryRun:
		case mode&fs.ModeSymlink != 0:
			target, err := fsio.Readlinkat(fd, name, st.Size)
			if err != nil {
				a.warn("read symlink %s: %v; not in the snapshot", filepath.Join(path, name), err)
				continue
			}
			node.Type = repo.NodeSymlink
			node.LinkTarget = target
			d.nodes = append(d.nodes, node)
		default:
			a.warn("%s is a %s; skipped (only files, directories and symlinks are backed up)", filepath.Join(path, name), fsio.Kind(mode))
		}
	}
	return a.release(ctx, d)
}

// dropDirFD drops one hold on d's descriptor (the lister's, or a file job's); the last
// closes it.
func (a *Archiver) dropDirFD(d *dirState) {
	if d.fd >= 0 && d.fdRefs.Add(-1) == 0 {
		unix.Close(d.fd)
		a.dirFDs.Add(-1)
	}
}

// release drops one hold on d; the last one encodes d's tree, queues it for saving when
// it is new, and releases d's parent.
func (a *Archiver) release(ctx context.Context, d *dirState) error {
	for d != nil {
		if d.pending.Add(-1) != 0 {
			return nil
		}
		if a.opts.DryRun {
			// Nothing is saved: a directory is done when its entries are listed.
			if d.parent == nil {
				a.rootDone.Store(true)
				return nil
			}
			d = d.parent
			continue
		}
		nodes := d.nodes[:0]
		for _, n := range d.nodes {
			if n.Name != "" {
				nodes = append(nodes, n)
			}
		}
		data, err := repo.EncodeTree(&repo.Tree{Nodes: nodes})
		if err != nil {
			return fmt.Errorf("save tree of %s: %w", filepath.Join(a.root, d.rel), err)
		}
		id := a.r.BlobID(data)
		if a.queueBlob(repo.TreeBlob, id) {
			select {
			case a.saveCh <- saveJob{t: repo.TreeBlob, id: id, data: data}:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if d.parent == nil {
			a.rootTree = id
			a.rootDone.Store(true)
			return nil
		}
		d.node.Subtree = id
		d = d.parent
	}
	return nil
}

// nodeFromStat makes the node of a directory entry from its lstat; Mode holds the
// io/fs mode bits, as os.Lstat would give them.
func nodeFromStat(name string, st *unix.Stat_t) *repo.Node {
	n := &repo.Node{}
	fillNode(n, name, st)
	return n
}

// fillNode sets n to the node of a directory entry from its stat, as nodeFromStat makes
// it, without allocating another.
func fillNode(n *repo.Node, name string, st *unix.Stat_t) {
	mode := fsio.ModeOf(st.Mode)
	*n = repo.Node{
		Name:     name,
		Mode:     uint32(mode),
		ModTime:  time.Unix(st.Mtim.Unix()),
		Size:     st.Size,
		UID:      st.Uid,
		GID:      st.Gid,
		Inode:    st.Ino,
		DeviceID: uint64(st.Dev),
		Links:    uint64(st.Nlink),
	}
	if !mode.IsRegular() {
		n.Size = 0
	}
}
