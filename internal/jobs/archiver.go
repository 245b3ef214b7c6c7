package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/bits"
	"path/filepath"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brr-dev/brr/internal/fsio"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// maxWarnings bounds the warnings a result carries; the rest are counted.
const maxWarnings = 1000

// Bounds of the backup pipeline. Directories are listed by dirListers goroutines and files
// read by at least fileWorkers, because on a cold cache every stat and every small file
// waits for the disk, and the disk serves many at once. Files up to repo.MinChunkSize are
// one chunk: they are read whole into a buffer of their size, so the Chunker's window
// (2×MaxChunkSize) is needed only for larger files, and at most bigFiles of those are
// chunked at once. Their chunks travel to the savers in at most bigChunkBufs buffers of
// MaxChunkSize, and at most GOMAXPROCS blobs are compressed and encrypted at once (each
// SaveBlob holds two more buffers of up to MaxChunkSize). These bounds hold for all the
// backups of an Engine together: that, not the number of jobs or workers, bounds what
// backups hold in memory, about 40 MiB here.
const (
	fileWorkers  = 8
	dirListers   = 8
	bigFiles     = 2
	bigChunkBufs = 4
)

// backupLimits are the bounds that the backups of one Engine share.
type backupLimits struct {
	bigFiles chan struct{} // a token per file being chunked
	bigBufs  chan struct{} // a token per chunk buffer in use
	saves    chan struct{} // a token per SaveBlob running
}

func newBackupLimits(workers int) *backupLimits {
	return &backupLimits{
		bigFiles: make(chan struct{}, max(1, min(workers, bigFiles))),
		bigBufs:  make(chan struct{}, bigChunkBufs),
		saves:    make(chan struct{}, max(1, min(workers, runtime.GOMAXPROCS(0)))),
	}
}

// chunkBufs are the buffers of MaxChunkSize that chunks of large files are copied to;
// backupLimits.bigBufs bounds how many are in use, and idle ones go at the next GCs.
var chunkBufs = sync.Pool{New: func() any { b := make([]byte, repo.MaxChunkSize); return &b }}

// archiver turns one directory tree into trees and blobs of a repository. It runs as a
// pipeline so that both cores stay busy: listers read directories and stat their entries,
// file workers answer unchanged files from the file cache or read, chunk and hash the
// others, and savers compress, encrypt and store the new blobs, trees included. A
// directory's tree is encoded by whoever finishes its last entry, so no goroutine waits for
// a directory to complete and small files do not serialize behind each other.
type archiver struct {
	r       *repo.Repository
	root    string // resolved source path
	workers int
	savers  int

	// loadCache loads the file cache; it runs while the first directories are listed, and
	// file workers wait for it (cacheReady) before the first lookup.
	loadCache  func() (map[string]state.CachedFile, error)
	cacheReady chan struct{}
	cacheErr   error

	// mu guards oldCache, from which file workers delete what they saw (what is left was
	// removed from the source), and hardlinks.
	mu        sync.Mutex
	oldCache  map[string]state.CachedFile
	hardlinks map[devIno]*linkGroup

	limits   *backupLimits
	dirCh    chan *dirState
	dirsLeft sync.WaitGroup // directories queued or being listed
	fileCh   chan *fileJob
	saveCh   chan saveJob
	seen     sync.Map // blobKey → struct{}: blobs this run already queued

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

type blobKey struct {
	t  repo.BlobType
	id repo.ID
}

// linkGroup holds the nodes that share one inode, so that a hardlink seen again gets the
// content read for the first one, once that is known.
type linkGroup struct {
	mu      sync.Mutex
	done    bool
	failed  bool
	class   *atomic.Int64 // the counter the first link was counted in: new, changed, unchanged
	content []repo.ID
	size    int64
	cache   *state.CachedFile // what the file cache may remember for every link; nil: nothing
	waiting []*fileJob
}

// dirState is one directory in flight: its nodes, and how many of them (plus the lister's
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
	ctime int64 // ns
	known bool  // the file cache had an entry for rel (so it is changed, not new)
	old   state.CachedFile
}

// saveJob is a blob for a saver. buf, when set, goes back to chunkBufs, small to its pool.
type saveJob struct {
	t     repo.BlobType
	id    repo.ID
	data  []byte
	buf   *[]byte
	small *[]byte
}

func newArchiver(r *repo.Repository, root string, workers int, limits *backupLimits, loadCache func() (map[string]state.CachedFile, error)) *archiver {
	savers := cap(limits.saves)
	return &archiver{
		r:          r,
		root:       root,
		workers:    max(workers, fileWorkers),
		savers:     savers,
		limits:     limits,
		loadCache:  loadCache,
		cacheReady: make(chan struct{}),
		hardlinks:  make(map[devIno]*linkGroup),
		dirCh:      make(chan *dirState, 4096),
		fileCh:     make(chan *fileJob, 1024),
		saveCh:     make(chan saveJob, 2*savers),
		cachePut:   make(map[string]state.CachedFile),
	}
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
	g.Go(func() error {
		defer close(a.cacheReady)
		if a.loadCache == nil {
			a.oldCache = map[string]state.CachedFile{}
			return nil
		}
		a.oldCache, a.cacheErr = a.loadCache()
		if a.cacheErr != nil {
			return fmt.Errorf("load file cache: %w", a.cacheErr)
		}
		return nil
	})

	var listers, producers sync.WaitGroup
	listers.Add(dirListers)
	producers.Add(dirListers + a.workers)
	for range dirListers {
		g.Go(func() error {
			defer producers.Done()
			defer listers.Done()
			for d := range a.dirCh {
				err := a.listDir(ctx, d)
				a.dirsLeft.Done()
				if err != nil {
					// Keep taking directories so that the others are not stuck.
					for range a.dirCh {
						a.dirsLeft.Done()
					}
					return err
				}
			}
			return nil
		})
	}
	for range a.workers {
		g.Go(func() error {
			defer producers.Done()
			for job := range a.fileCh {
				if err := a.archiveFile(ctx, job); err != nil {
					for range a.fileCh {
					}
					return err
				}
			}
			return nil
		})
	}
	for range a.savers {
		g.Go(func() error {
			for job := range a.saveCh {
				if err := a.save(ctx, job); err != nil {
					for j := range a.saveCh {
						a.putBuf(j)
					}
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		listers.Wait()
		close(a.fileCh)
		producers.Wait()
		close(a.saveCh)
		return nil
	})
	root := &dirState{}
	root.pending.Store(1)
	a.dirsLeft.Add(1)
	a.dirCh <- root
	g.Go(func() error {
		a.dirsLeft.Wait()
		close(a.dirCh)
		return nil
	})
	if err := g.Wait(); err != nil {
		return repo.ID{}, err
	}
	if !a.rootDone.Load() {
		return repo.ID{}, errors.New("archive: root tree was not completed")
	}
	return a.rootTree, nil
}

// listDir lists the directory d, stats every entry and queues the files for the file
// workers and the subdirectories for the listers, then drops its hold on d.
func (a *archiver) listDir(ctx context.Context, d *dirState) error {
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
		node := nodeFromStat(name, &st)
		mode := fs.FileMode(node.Mode)
		switch {
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
			child := &dirState{rel: rel, parent: d, node: node}
			child.pending.Store(1)
			d.pending.Add(1)
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

// archiveFile answers a file from the file cache or from a hardlink seen before, or
// reads, chunks and hashes it and queues its new chunks for saving. A file that cannot be
// read, or vanished, is left out with a warning; one that changed while read keeps what
// was read, with a warning.
func (a *archiver) archiveFile(ctx context.Context, job *fileJob) error {
	select {
	case <-a.cacheReady:
	case <-ctx.Done():
		return ctx.Err()
	}
	if a.cacheErr != nil {
		return fmt.Errorf("load file cache: %w", a.cacheErr)
	}
	node := job.node
	var group *linkGroup
	a.mu.Lock()
	job.old, job.known = a.oldCache[job.rel]
	if job.known {
		delete(a.oldCache, job.rel)
	}
	if node.Links > 1 {
		key := devIno{node.DeviceID, node.Inode}
		g, ok := a.hardlinks[key]
		if !ok {
			group = &linkGroup{}
			a.hardlinks[key] = group
		} else {
			a.mu.Unlock()
			return a.joinLink(ctx, g, job)
		}
	}
	a.mu.Unlock()

	if job.known && a.unchanged(job.old, node, job.ctime) {
		node.Content = make([]repo.ID, len(job.old.Content))
		for i, c := range job.old.Content {
			node.Content[i] = repo.ID(c)
		}
		a.filesUnchanged.Add(1)
		a.fileDone(node.Size)
		if group != nil {
			if err := a.linkDone(ctx, group, node.Content, node.Size, true, &a.filesUnchanged, &job.old); err != nil {
				return err
			}
		}
		return a.release(ctx, job.dir)
	}

	content, size, ok, cache, err := a.readFile(ctx, job)
	if err != nil {
		return err
	}
	class := &a.filesNew
	if job.known {
		class = &a.filesChanged
	}
	if ok {
		if size != node.Size {
			a.bytes.Add(size - node.Size)
		}
		node.Content = content
		node.Size = size
		class.Add(1)
	} else {
		a.dropFile(node)
	}
	a.doneFiles.Add(1)
	if group != nil {
		if err := a.linkDone(ctx, group, content, size, ok, class, cache); err != nil {
			return err
		}
	}
	return a.release(ctx, job.dir)
}

// joinLink gives job the content of the first link of its inode, now or when it is known.
func (a *archiver) joinLink(ctx context.Context, g *linkGroup, job *fileJob) error {
	g.mu.Lock()
	if !g.done {
		g.waiting = append(g.waiting, job)
		g.mu.Unlock()
		return nil
	}
	g.mu.Unlock()
	a.resolveLink(g, job)
	return a.release(ctx, job.dir)
}

// linkDone records the outcome of the first link of g and resolves the links that wait.
func (a *archiver) linkDone(ctx context.Context, g *linkGroup, content []repo.ID, size int64, ok bool, class *atomic.Int64, cache *state.CachedFile) error {
	g.mu.Lock()
	g.done, g.failed, g.content, g.size, g.class, g.cache = true, !ok, content, size, class, cache
	waiting := g.waiting
	g.waiting = nil
	g.mu.Unlock()
	for _, w := range waiting {
		a.resolveLink(g, w)
		if err := a.release(ctx, w.dir); err != nil {
			return err
		}
	}
	return nil
}

// resolveLink sets a later link's node from its group, which is done. Every link gets a
// file cache entry, so that whichever is met first next time is answered from the cache.
func (a *archiver) resolveLink(g *linkGroup, job *fileJob) {
	if g.failed {
		a.dropFile(job.node) // the first link could not be read; drop this one too
		a.fileDone(0)
		return
	}
	job.node.Content = g.content
	if job.node.Size != g.size {
		a.bytes.Add(g.size - job.node.Size)
		job.node.Size = g.size
	}
	g.class.Add(1)
	a.fileDone(g.size)
	if g.cache != nil && !(job.known && sameCached(job.old, *g.cache)) {
		a.cacheMu.Lock()
		a.cachePut[job.rel] = *g.cache
		a.cacheMu.Unlock()
	}
}

func sameCached(a, b state.CachedFile) bool {
	return a.Size == b.Size && a.ModTimeNS == b.ModTimeNS && a.ChangeTimeNS == b.ChangeTimeNS &&
		a.Inode == b.Inode && slices.Equal(a.Content, b.Content)
}

func (a *archiver) unchanged(c state.CachedFile, n *repo.Node, ctime int64) bool {
	if c.Size != n.Size || c.ModTimeNS != n.ModTime.UnixNano() || c.ChangeTimeNS != ctime || c.Inode != n.Inode {
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

// readFile reads and chunks the file of job, and queues its new chunks for saving. ok is
// false when the file is left out; cache is its file cache entry, nil when it changed
// while it was read.
func (a *archiver) readFile(ctx context.Context, job *fileJob) (content []repo.ID, size int64, ok bool, cache *state.CachedFile, err error) {
	fd, err := fsio.OpenFile(job.path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			a.warn("%s vanished before it was read; not in the snapshot", job.path)
		} else {
			a.warn("open %s: %v; not in the snapshot", job.path, err)
		}
		return nil, 0, false, nil, nil
	}
	defer unix.Close(fd)
	whole := false
	if job.node.Size <= repo.MinChunkSize {
		content, size, whole, err = a.readSmall(ctx, fd, job.node.Size)
	}
	if !whole && err == nil {
		content, size, err = a.readChunked(ctx, fd)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, false, nil, ctx.Err()
		}
		a.warn("read %s: %v; not in the snapshot", job.path, err)
		return nil, 0, false, nil, nil
	}
	var after unix.Stat_t
	if err := unix.Fstat(fd, &after); err != nil {
		a.warn("stat %s after reading: %v; not in the snapshot", job.path, err)
		return nil, 0, false, nil, nil
	}
	mtime := time.Unix(after.Mtim.Unix())
	changed := after.Size != job.node.Size || !mtime.Equal(job.node.ModTime) || size != after.Size
	if changed {
		a.warn("%s changed while it was read; the snapshot holds what was read", job.path)
		job.node.ModTime = mtime
	} else {
		c := cacheEntry(job.node, job.ctime, content)
		cache = &c
		a.cacheMu.Lock()
		a.cachePut[job.rel] = c
		a.cacheMu.Unlock()
	}
	if content == nil {
		content = []repo.ID{}
	}
	return content, size, true, cache, nil
}

// readSmall reads a file of at most MinChunkSize bytes (hint is its size when it was
// stat'ed), which is one chunk, or none when empty: exactly as the Chunker would cut it.
// whole is false, with the file offset back at 0, when the file turns out to be larger.
func (a *archiver) readSmall(ctx context.Context, fd int, hint int64) (content []repo.ID, size int64, whole bool, err error) {
	bp := getSmall(int(hint) + 1)
	b := (*bp)[:cap(*bp)]
	n := 0
	for {
		if n == len(b) {
			if n > repo.MinChunkSize {
				break
			}
			bigger := getSmall(n + 1)
			nb := (*bigger)[:cap(*bigger)]
			copy(nb, b[:n])
			putSmall(bp)
			bp, b = bigger, nb
		}
		m, err := fsio.Read(fd, b[n:])
		if err != nil {
			putSmall(bp)
			return nil, 0, false, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	if n > repo.MinChunkSize {
		putSmall(bp)
		if _, err := unix.Seek(fd, 0, io.SeekStart); err != nil {
			return nil, 0, false, err
		}
		return nil, 0, false, nil
	}
	if n == 0 {
		putSmall(bp)
		return nil, 0, true, nil
	}
	data := b[:n]
	a.bytesRead.Add(int64(n))
	a.doneBytes.Add(int64(n))
	id := a.r.BlobID(data)
	if !a.queueBlob(repo.DataBlob, id) {
		putSmall(bp)
		return []repo.ID{id}, int64(n), true, nil
	}
	select {
	case a.saveCh <- saveJob{t: repo.DataBlob, id: id, data: data, small: bp}:
	case <-ctx.Done():
		putSmall(bp)
		return nil, 0, false, ctx.Err()
	}
	return []repo.ID{id}, int64(n), true, nil
}

// readChunked cuts a file into content-defined chunks.
func (a *archiver) readChunked(ctx context.Context, fd int) (content []repo.ID, size int64, err error) {
	select {
	case a.limits.bigFiles <- struct{}{}:
	case <-ctx.Done():
		return nil, 0, ctx.Err()
	}
	defer func() { <-a.limits.bigFiles }()
	ch := a.r.NewChunker(fsio.Reader(fd))
	for {
		select {
		case a.limits.bigBufs <- struct{}{}:
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		}
		bp := chunkBufs.Get().(*[]byte)
		chunk, err := ch.Next((*bp)[:0])
		if err != nil {
			a.putChunkBuf(bp)
			if err == io.EOF {
				break
			}
			return nil, 0, err
		}
		n := int64(len(chunk))
		size += n
		a.bytesRead.Add(n)
		a.doneBytes.Add(n)
		id := a.r.BlobID(chunk)
		content = append(content, id)
		if !a.queueBlob(repo.DataBlob, id) {
			a.putChunkBuf(bp)
			continue
		}
		select {
		case a.saveCh <- saveJob{t: repo.DataBlob, id: id, data: chunk, buf: bp}:
		case <-ctx.Done():
			a.putChunkBuf(bp)
			return nil, 0, ctx.Err()
		}
	}
	return content, size, nil
}

func (a *archiver) putChunkBuf(bp *[]byte) {
	chunkBufs.Put(bp)
	<-a.limits.bigBufs
}

// queueBlob reports whether the blob is new: not in the repository and not queued by
// this run yet.
func (a *archiver) queueBlob(t repo.BlobType, id repo.ID) bool {
	if a.r.HasBlob(t, id) {
		return false
	}
	_, dup := a.seen.LoadOrStore(blobKey{t, id}, struct{}{})
	return !dup
}

func (a *archiver) save(ctx context.Context, job saveJob) error {
	defer a.putBuf(job)
	select {
	case a.limits.saves <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	added, stored, err := a.r.SaveBlob(ctx, job.t, job.id, job.data)
	<-a.limits.saves
	if err != nil {
		return fmt.Errorf("save %s blob %s: %w", job.t, job.id.Short(), err)
	}
	if added && job.t == repo.DataBlob {
		a.blobsAdded.Add(1)
		a.bytesAdded.Add(int64(stored))
	}
	return nil
}

func (a *archiver) putBuf(job saveJob) {
	switch {
	case job.buf != nil:
		a.putChunkBuf(job.buf)
	case job.small != nil:
		putSmall(job.small)
	}
}

// release drops one hold on d; the last one encodes d's tree, queues it for saving when
// it is new, and releases d's parent.
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

func cacheEntry(n *repo.Node, ctime int64, content []repo.ID) state.CachedFile {
	c := state.CachedFile{
		Size:         n.Size,
		ModTimeNS:    n.ModTime.UnixNano(),
		ChangeTimeNS: ctime,
		Inode:        n.Inode,
		Content:      make([][32]byte, len(content)),
	}
	for i, id := range content {
		c.Content[i] = id
	}
	return c
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

// Buffers for whole small files, by power-of-two size class from 1 KiB up to the first
// class above MinChunkSize, so that a file of exactly MinChunkSize bytes can be told from
// a larger one in one buffer.
const minSmallShift = 10

var smallPools [20]sync.Pool

func smallClass(n int) int {
	if n <= 1<<minSmallShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minSmallShift
}

func getSmall(n int) *[]byte {
	c := smallClass(n)
	if bp, ok := smallPools[c].Get().(*[]byte); ok {
		return bp
	}
	b := make([]byte, 1<<(c+minSmallShift))
	return &b
}

func putSmall(bp *[]byte) {
	smallPools[smallClass(cap(*bp))].Put(bp)
}
