package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
	"golang.org/x/sync/errgroup"
)

// maxWarnings bounds the warnings a result carries; the rest are counted.
const maxWarnings = 1000

// archiver turns one directory tree into trees and blobs of a repository. It runs as a
// pipeline so that both cores stay busy: one walker lists directories and stats entries
// (and answers unchanged files from the file cache), Parallelism file workers read, chunk
// and hash, and as many savers compress, encrypt and store the chunks. A directory's tree
// is saved by whoever finishes its last entry, so the walker never waits for a directory
// to complete and small files do not serialize behind each other.
type archiver struct {
	r        *repo.Repository
	root     string // resolved source path
	workers  int
	oldCache map[string]state.CachedFile // read only by the walker, which deletes what it saw

	fileCh chan *fileJob
	saveCh chan saveJob
	bufs   sync.Pool
	seen   sync.Map // repo.ID → struct{}: data blobs this run already queued

	hardlinks map[devIno]*linkGroup // walker only

	// Counters, updated atomically.
	files, dirs, bytes     atomic.Int64
	filesNew, filesChanged atomic.Int64
	filesUnchanged         atomic.Int64
	bytesRead              atomic.Int64
	blobsAdded, bytesAdded atomic.Int64
	doneFiles, doneBytes   atomic.Int64 // progress: files finished, bytes read or skipped
	warnMu                 sync.Mutex
	warnings               []string
	moreWarnings           int
	cacheMu                sync.Mutex
	cachePut               map[string]state.CachedFile
	rootTree               repo.ID
	rootDone               atomic.Bool
}

type devIno struct{ dev, ino uint64 }

// linkGroup holds the nodes that share one inode, so that a hardlink seen again gets the
// content read for the first one, once that is known.
type linkGroup struct {
	mu      sync.Mutex
	done    bool
	failed  bool
	class   *atomic.Int64 // the counter the first link was counted in: new, changed, unchanged
	content []repo.ID
	waiting []linkWaiter
}

type linkWaiter struct {
	node *repo.Node
	dir  *dirState
}

// dirState is one directory in flight: its nodes, and how many of them (plus the walker's
// own hold while it lists the directory) are not final yet.
type dirState struct {
	rel     string // path relative to the source root, "" for the root
	nodes   []*repo.Node
	pending atomic.Int64
	parent  *dirState
	node    *repo.Node // this directory's node in parent.nodes
}

type fileJob struct {
	path  string
	rel   string
	node  *repo.Node
	dir   *dirState
	stat  *syscall.Stat_t
	link  *linkGroup
	known bool // the file cache had an entry for rel (so it is changed, not new)
}

type saveJob struct {
	buf  *[]byte
	data []byte
	id   repo.ID
}

func newArchiver(r *repo.Repository, root string, workers int, cache map[string]state.CachedFile) *archiver {
	a := &archiver{
		r:         r,
		root:      root,
		workers:   workers,
		oldCache:  cache,
		fileCh:    make(chan *fileJob, 256),
		saveCh:    make(chan saveJob, workers),
		hardlinks: make(map[devIno]*linkGroup),
		cachePut:  make(map[string]state.CachedFile),
	}
	a.bufs.New = func() any {
		b := make([]byte, repo.MaxChunkSize)
		return &b
	}
	return a
}

func (a *archiver) warn(format string, args ...any) {
	a.warnMu.Lock()
	defer a.warnMu.Unlock()
	if len(a.warnings) >= maxWarnings {
		a.moreWarnings++
		return
	}
	a.warnings = append(a.warnings, fmt.Sprintf(format, args...))
}

func (a *archiver) warningList() []string {
	a.warnMu.Lock()
	defer a.warnMu.Unlock()
	w := append([]string(nil), a.warnings...)
	if a.moreWarnings > 0 {
		w = append(w, fmt.Sprintf("and %d more warnings", a.moreWarnings))
	}
	return w
}

// run archives the tree and returns the id of its root tree. Every blob it references
// has been handed to SaveBlob when it returns; the caller flushes.
func (a *archiver) run(ctx context.Context) (repo.ID, error) {
	g, ctx := errgroup.WithContext(ctx)
	var chunkers sync.WaitGroup
	chunkers.Add(a.workers)
	for range a.workers {
		g.Go(func() error {
			defer chunkers.Done()
			for job := range a.fileCh {
				if err := a.archiveFile(ctx, job); err != nil {
					// Drain so that the walker is not stuck on a full channel.
					for range a.fileCh {
					}
					return err
				}
			}
			return nil
		})
	}
	for range a.workers {
		g.Go(func() error {
			for job := range a.saveCh {
				if err := a.save(ctx, job); err != nil {
					for j := range a.saveCh {
						a.bufs.Put(j.buf)
					}
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		chunkers.Wait()
		close(a.saveCh)
		return nil
	})
	g.Go(func() error {
		defer close(a.fileCh)
		root := &dirState{}
		root.pending.Store(1)
		if err := a.walkDir(ctx, a.root, root); err != nil {
			return err
		}
		return a.release(ctx, root)
	})
	if err := g.Wait(); err != nil {
		return repo.ID{}, err
	}
	if !a.rootDone.Load() {
		return repo.ID{}, errors.New("archive: root tree was not completed")
	}
	return a.rootTree, nil
}

// walkDir lists the directory at path (whose state is d), stats every entry and queues
// what needs reading. It recurses into subdirectories before returning.
func (a *archiver) walkDir(ctx context.Context, path string, d *dirState) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	entries, err := readDirNames(path)
	if err != nil {
		if d.parent == nil {
			return fmt.Errorf("read source directory %s: %w", path, err)
		}
		a.warn("read directory %s: %v (its entries are missing from the snapshot)", path, err)
	}
	d.nodes = make([]*repo.Node, 0, len(entries))
	for _, name := range entries {
		full := filepath.Join(path, name)
		rel := name
		if d.rel != "" {
			rel = d.rel + "/" + name
		}
		fi, err := os.Lstat(full)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				a.warn("%s vanished before it was read; not in the snapshot", full)
			} else {
				a.warn("stat %s: %v; not in the snapshot", full, err)
			}
			continue
		}
		st, _ := fi.Sys().(*syscall.Stat_t)
		node := nodeFromInfo(name, fi, st)
		switch {
		case fi.Mode().IsRegular():
			a.files.Add(1)
			a.bytes.Add(fi.Size())
			d.nodes = append(d.nodes, node)
			if err := a.queueFile(ctx, full, rel, node, d, st); err != nil {
				return err
			}
		case fi.IsDir():
			a.dirs.Add(1)
			node.Type = repo.NodeDir
			d.nodes = append(d.nodes, node)
			child := &dirState{rel: rel, parent: d, node: node}
			child.pending.Store(1)
			d.pending.Add(1)
			if err := a.walkDir(ctx, full, child); err != nil {
				return err
			}
			if err := a.release(ctx, child); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(full)
			if err != nil {
				a.warn("read symlink %s: %v; not in the snapshot", full, err)
				continue
			}
			node.Type = repo.NodeSymlink
			node.LinkTarget = target
			d.nodes = append(d.nodes, node)
		default:
			a.warn("%s is a %s; skipped (only files, directories and symlinks are backed up)", full, typeName(fi.Mode()))
		}
	}
	return nil
}

// queueFile answers a regular file from the file cache or a hardlink seen before, or
// queues it for reading.
func (a *archiver) queueFile(ctx context.Context, full, rel string, node *repo.Node, d *dirState, st *syscall.Stat_t) error {
	node.Type = repo.NodeFile
	var group *linkGroup
	if st != nil && st.Nlink > 1 {
		key := devIno{uint64(st.Dev), st.Ino}
		if g, ok := a.hardlinks[key]; ok {
			g.mu.Lock()
			defer g.mu.Unlock()
			switch {
			case g.done && !g.failed:
				node.Content = g.content
				a.fileDone(node.Size)
				g.class.Add(1)
			case g.done:
				a.dropFile(node) // the first link could not be read; drop this one too
				a.fileDone(0)
			default:
				d.pending.Add(1)
				g.waiting = append(g.waiting, linkWaiter{node: node, dir: d})
			}
			return nil
		}
		group = &linkGroup{}
		a.hardlinks[key] = group
	}
	cached, known := a.oldCache[rel]
	if known {
		delete(a.oldCache, rel)
		if st != nil && a.unchanged(cached, node, st) {
			node.Content = make([]repo.ID, len(cached.Content))
			for i, c := range cached.Content {
				node.Content[i] = repo.ID(c)
			}
			a.filesUnchanged.Add(1)
			a.fileDone(node.Size)
			if group != nil {
				group.mu.Lock()
				group.done, group.content, group.class = true, node.Content, &a.filesUnchanged
				group.mu.Unlock()
			}
			return nil
		}
	}
	d.pending.Add(1)
	select {
	case a.fileCh <- &fileJob{path: full, rel: rel, node: node, dir: d, stat: st, link: group, known: known}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (a *archiver) unchanged(c state.CachedFile, n *repo.Node, st *syscall.Stat_t) bool {
	if c.Size != n.Size || c.ModTimeNS != n.ModTime.UnixNano() || c.ChangeTimeNS != ctimeNS(st) || c.Inode != st.Ino {
		return false
	}
	for _, id := range c.Content {
		if !a.r.HasBlob(repo.DataBlob, repo.ID(id)) {
			return false
		}
	}
	return true
}

// dropFile leaves a file node out of its tree (it is skipped when the tree is saved).
func (a *archiver) dropFile(n *repo.Node) {
	n.Name = ""
	a.files.Add(-1)
	a.bytes.Add(-n.Size)
}

func (a *archiver) fileDone(size int64) {
	a.doneFiles.Add(1)
	a.doneBytes.Add(size)
}

// archiveFile reads, chunks and hashes one file and queues its new chunks for saving.
// A file that cannot be read, or vanished, is left out with a warning; one that changed
// while read keeps what was read, with a warning.
func (a *archiver) archiveFile(ctx context.Context, job *fileJob) error {
	content, size, ok, err := a.readFile(ctx, job)
	if err != nil {
		return err
	}
	class := &a.filesNew
	if job.known {
		class = &a.filesChanged
	}
	if ok {
		if size != job.node.Size {
			a.bytes.Add(size - job.node.Size)
		}
		job.node.Content = content
		job.node.Size = size
		class.Add(1)
	} else {
		a.dropFile(job.node)
	}
	a.doneFiles.Add(1)
	if g := job.link; g != nil {
		g.mu.Lock()
		g.done, g.failed, g.content, g.class = true, !ok, content, class
		waiting := g.waiting
		g.waiting = nil
		g.mu.Unlock()
		for _, w := range waiting {
			if ok {
				w.node.Content = content
				w.node.Size = size
				class.Add(1)
			} else {
				a.dropFile(w.node)
			}
			a.fileDone(w.node.Size)
			if err := a.release(ctx, w.dir); err != nil {
				return err
			}
		}
	}
	return a.release(ctx, job.dir)
}

func (a *archiver) readFile(ctx context.Context, job *fileJob) (content []repo.ID, size int64, ok bool, err error) {
	f, err := os.OpenFile(job.path, os.O_RDONLY|syscall.O_NOFOLLOW|syscall.O_NOATIME, 0)
	if err != nil && errors.Is(err, syscall.EPERM) {
		// O_NOATIME is only allowed to the file's owner.
		f, err = os.OpenFile(job.path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	}
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			a.warn("%s vanished before it was read; not in the snapshot", job.path)
		} else {
			a.warn("open %s: %v; not in the snapshot", job.path, err)
		}
		return nil, 0, false, nil
	}
	defer f.Close()
	ch := a.r.NewChunker(f)
	for {
		bp := a.bufs.Get().(*[]byte)
		chunk, err := ch.Next(*bp)
		if err == io.EOF {
			a.bufs.Put(bp)
			break
		}
		if err != nil {
			a.bufs.Put(bp)
			a.warn("read %s: %v; not in the snapshot", job.path, err)
			return nil, 0, false, nil
		}
		n := int64(len(chunk))
		size += n
		a.bytesRead.Add(n)
		a.doneBytes.Add(n)
		id := a.r.BlobID(chunk)
		content = append(content, id)
		if _, dup := a.seen.LoadOrStore(id, struct{}{}); dup || a.r.HasBlob(repo.DataBlob, id) {
			a.bufs.Put(bp)
			continue
		}
		select {
		case a.saveCh <- saveJob{buf: bp, data: chunk, id: id}:
		case <-ctx.Done():
			a.bufs.Put(bp)
			return nil, 0, false, ctx.Err()
		}
	}
	after, err := f.Stat()
	if err != nil {
		a.warn("stat %s after reading: %v; not in the snapshot", job.path, err)
		return nil, 0, false, nil
	}
	changed := after.Size() != job.node.Size || !after.ModTime().Equal(job.node.ModTime) || size != after.Size()
	if changed {
		a.warn("%s changed while it was read; the snapshot holds what was read", job.path)
		job.node.ModTime = after.ModTime()
	} else if job.stat != nil {
		a.cacheMu.Lock()
		a.cachePut[job.rel] = cacheEntry(job.node, job.stat, content)
		a.cacheMu.Unlock()
	}
	if content == nil {
		content = []repo.ID{}
	}
	return content, size, true, nil
}

func (a *archiver) save(ctx context.Context, job saveJob) error {
	defer a.bufs.Put(job.buf)
	added, stored, err := a.r.SaveBlob(ctx, repo.DataBlob, job.id, job.data)
	if err != nil {
		return fmt.Errorf("save blob %s: %w", job.id.Short(), err)
	}
	if added {
		a.blobsAdded.Add(1)
		a.bytesAdded.Add(int64(stored))
	}
	return nil
}

// release drops one hold on d; the last one saves d's tree and releases d's parent.
func (a *archiver) release(ctx context.Context, d *dirState) error {
	for d != nil {
		if d.pending.Add(-1) != 0 {
			return nil
		}
		nodes := d.nodes[:0]
		for _, n := range d.nodes {
			if n.Name != "" {
				nodes = append(nodes, n)
			}
		}
		id, err := a.r.SaveTree(ctx, &repo.Tree{Nodes: nodes})
		if err != nil {
			return fmt.Errorf("save tree of %s: %w", filepath.Join(a.root, d.rel), err)
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

func cacheEntry(n *repo.Node, st *syscall.Stat_t, content []repo.ID) state.CachedFile {
	c := state.CachedFile{
		Size:         n.Size,
		ModTimeNS:    n.ModTime.UnixNano(),
		ChangeTimeNS: ctimeNS(st),
		Inode:        st.Ino,
		Content:      make([][32]byte, len(content)),
	}
	for i, id := range content {
		c.Content[i] = id
	}
	return c
}

func ctimeNS(st *syscall.Stat_t) int64 {
	return st.Ctim.Sec*int64(time.Second) + st.Ctim.Nsec
}

func nodeFromInfo(name string, fi fs.FileInfo, st *syscall.Stat_t) *repo.Node {
	n := &repo.Node{
		Name:    name,
		Mode:    uint32(fi.Mode()),
		ModTime: fi.ModTime(),
		Size:    fi.Size(),
	}
	if st != nil {
		n.UID, n.GID = st.Uid, st.Gid
		n.Inode, n.DeviceID, n.Links = st.Ino, uint64(st.Dev), uint64(st.Nlink)
	}
	if !fi.Mode().IsRegular() {
		n.Size = 0
	}
	return n
}

func typeName(m fs.FileMode) string {
	switch {
	case m&fs.ModeNamedPipe != 0:
		return "fifo"
	case m&fs.ModeSocket != 0:
		return "socket"
	case m&fs.ModeCharDevice != 0:
		return "character device"
	case m&fs.ModeDevice != 0:
		return "device"
	}
	return "special file (" + m.String() + ")"
}

// readDirNames lists a directory's names, sorted.
func readDirNames(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	return names, nil
}
