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
	nodes   []*repo.Node
	pending atomic.Int64
	parent  *dirState
	node    *repo.Node        // this directory's node in parent.nodes
	match   *excludes.Matcher // the excludes of the directories above, without this one's ignore file
}

// listDir lists the directory d, stats every entry, leaves out the excluded ones, and
// queues the files for the file workers (on a dry run, reports them) and the
// subdirectories for the listers, then drops its hold on d. What is excluded is decided
// from the names and their lstat: an excluded entry is never opened, and an excluded
// directory never listed.
func (a *Archiver) listDir(ctx context.Context, d *dirState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	path := filepath.Join(a.root, d.rel)
	fd, names, err := fsio.ReadDir(path)
	if err != nil {
		if d.parent == nil {
			return fmt.Errorf("read source directory %s: %w", path, err)
		}
		a.warn("read directory %s: %v (its entries are missing from the snapshot)", path, err)
	}
	if fd >= 0 {
		defer unix.Close(fd)
	}
	if d.parent == nil && fd >= 0 && a.opts.OneFileSystem {
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return fmt.Errorf("stat source directory %s: %w", path, err)
		}
		a.rootDev = uint64(st.Dev)
	}
	ex := a.dirExcludes(fd, path, d, names)
	d.nodes = make([]*repo.Node, 0, len(names))
	var st unix.Stat_t
	for _, name := range names {
		full := filepath.Join(path, name)
		rel := name
		if d.rel != "" {
			rel = d.rel + "/" + name
		}
		if err := fsio.IgnoringEINTR(func() error { return unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				a.warn("%s vanished before it was read; not in the snapshot", full)
			} else {
				a.warn("stat %s: %v; not in the snapshot", full, err)
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
			select {
			case a.fileCh <- &fileJob{path: full, rel: rel, node: node, dir: d, ctime: st.Ctim.Nano()}:
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
				a.warn("read symlink %s: %v; not in the snapshot", full, err)
				continue
			}
			node.Type = repo.NodeSymlink
			node.LinkTarget = target
			d.nodes = append(d.nodes, node)
		default:
			a.warn("%s is a %s; skipped (only files, directories and symlinks are backed up)", full, fsio.Kind(mode))
		}
	}
	return a.release(ctx, d)
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
	mode := fsio.ModeOf(st.Mode)
	n := &repo.Node{
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
	return n
}
