package archiver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"slices"
	"time"

	"github.com/brr-dev/brr/internal/fsio"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
	"golang.org/x/sys/unix"
)

type fileJob struct {
	name    string // in dir
	rel     string
	node    *repo.Node
	dir     *dirState
	statted bool  // the lister lstat'ed the file: node and ctime are from it
	ctime   int64 // ns
	known   bool  // the file cache had an entry for rel (so it is changed, not new)
	old     state.CachedFile
}

// path is the file's full path, for messages (and opening it when its directory's
// descriptor was not kept).
func (j *fileJob) path() string { return filepath.Join(j.dir.path, j.name) }

// dirfd is what the file's name is relative to, and name that name: the directory's
// descriptor and the file's name in it, or AT_FDCWD and the full path.
func (j *fileJob) at() (dirfd int, name string) {
	if j.dir.fd >= 0 {
		return j.dir.fd, j.name
	}
	return unix.AT_FDCWD, j.path()
}

// archiveFile answers a file from the file cache or from a hardlink seen before, or
// reads, chunks and hashes it and queues its new chunks for saving. A file that cannot be
// read, or vanished, is left out with a warning; one that changed while read keeps what
// was read, with a warning.
func (a *Archiver) archiveFile(ctx context.Context, job *fileJob) error {
	defer a.dropDirFD(job.dir)
	select {
	case <-a.cacheReady:
	case <-ctx.Done():
		return ctx.Err()
	}
	if a.cacheErr != nil {
		return fmt.Errorf("load file cache: %w", a.cacheErr)
	}
	node := job.node
	a.mu.Lock()
	job.old, job.known = a.oldCache[job.rel]
	if job.known {
		delete(a.oldCache, job.rel)
	}
	a.mu.Unlock()

	// fd is the open file once it is opened: a file the lister did not stat, and the
	// cache does not know, is opened first and stat'ed through its descriptor.
	fd := -1
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	if !job.statted {
		var st unix.Stat_t
		var err error
		if job.known {
			err = a.statAt(job, &st)
		} else {
			fd, err = a.openStat(job, &st)
		}
		if err != nil {
			a.leaveOut(job, err)
			return a.release(ctx, job.dir)
		}
		a.setStat(job, &st)
	}

	var group *linkGroup
	if node.Links > 1 {
		key := devIno{node.DeviceID, node.Inode}
		a.mu.Lock()
		g, ok := a.hardlinks[key]
		if !ok {
			group = &linkGroup{}
			a.hardlinks[key] = group
		}
		a.mu.Unlock()
		if ok {
			return a.joinLink(ctx, g, job)
		}
	}

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

	if fd < 0 {
		var st unix.Stat_t
		var err error
		fd, err = a.openStat(job, &st)
		if err != nil {
			a.leaveOut(job, err)
			if group != nil {
				if err := a.linkDone(ctx, group, nil, 0, false, nil, nil); err != nil {
					return err
				}
			}
			return a.release(ctx, job.dir)
		}
		if st.Ino != node.Inode || uint64(st.Dev) != node.DeviceID || st.Size != node.Size ||
			st.Mtim.Nano() != node.ModTime.UnixNano() || st.Ctim.Nano() != job.ctime {
			// Changed, or replaced by another file, since it was stat'ed: what is read
			// is the open file, so the node and the cache entry describe that one.
			a.setStat(job, &st)
		}
	}
	content, size, ok, cache, err := a.readFile(ctx, job, fd)
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

// beforeOpen, when set (by tests), is called with a file's path from the root just
// before it is opened.
var beforeOpen func(rel string)

// errNotRegularNow is a file that is no longer a regular file when its worker gets to it.
var errNotRegularNow = errors.New("no longer a regular file")

// statAt lstats the file of job relative to its directory.
func (a *Archiver) statAt(job *fileJob, st *unix.Stat_t) error {
	dirfd, name := job.at()
	if err := fsio.IgnoringEINTR(func() error { return unix.Fstatat(dirfd, name, st, unix.AT_SYMLINK_NOFOLLOW) }); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return errNotRegularNow
	}
	return nil
}

// openStat opens the file of job (relative to its directory, never through a symlink,
// never waiting on a FIFO) and fstats it: the one stat a new file costs, of the very
// file that is read.
func (a *Archiver) openStat(job *fileJob, st *unix.Stat_t) (int, error) {
	if beforeOpen != nil {
		beforeOpen(job.rel)
	}
	dirfd, name := job.at()
	fd, err := fsio.OpenFileAt(dirfd, name)
	if errors.Is(err, unix.ELOOP) {
		return -1, errNotRegularNow // a symlink now
	}
	if err != nil {
		return -1, err
	}
	if err := unix.Fstat(fd, st); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("stat: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return -1, errNotRegularNow
	}
	return fd, nil
}

// setStat sets job's node (and ctime) from the stat of its file, which is a regular one.
func (a *Archiver) setStat(job *fileJob, st *unix.Stat_t) {
	was := job.node.Size
	fillNode(job.node, job.name, st)
	job.node.Type = repo.NodeFile
	a.bytes.Add(job.node.Size - was)
	job.ctime = st.Ctim.Nano()
}

// leaveOut leaves job's file out of the snapshot, with a warning that says why.
func (a *Archiver) leaveOut(job *fileJob, err error) {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		a.warn("%s vanished before it was read; not in the snapshot", job.path())
	case errors.Is(err, errNotRegularNow):
		a.warn("%s is no longer a regular file; not in the snapshot", job.path())
	default:
		a.warn("open %s: %v; not in the snapshot", job.path(), err)
	}
	a.dropFile(job.node)
	a.doneFiles.Add(1)
}

// unchanged reports whether the file of node n is as cache entry c describes it, so that
// its content may be taken from c without reading it: same size, times and inode, and
// every blob of c in the index (and reusable) with sizes that add up to the file's. The
// last check keeps a damaged entry from putting another file's content in the snapshot;
// a blob that another job has claimed but not indexed yet has no size to check, so its
// file is read.
func (a *Archiver) unchanged(c state.CachedFile, n *repo.Node, ctime int64) bool {
	if c.Size != n.Size || c.ModTimeNS != n.ModTime.UnixNano() || c.ChangeTimeNS != ctime || c.Inode != n.Inode {
		return false
	}
	var size int64
	for _, id := range c.Content {
		if !a.r.HasBlob(repo.DataBlob, repo.ID(id)) {
			return false
		}
		pb, ok := a.r.LookupBlob(repo.DataBlob, repo.ID(id))
		if !ok {
			return false
		}
		size += int64(pb.RawLength)
	}
	return size == n.Size
}

// dropFile leaves a file node out of its tree (it is skipped when the tree is saved).
func (a *Archiver) dropFile(n *repo.Node) {
	n.Name = ""
	a.files.Add(-1)
	a.bytes.Add(-n.Size)
}

func (a *Archiver) fileDone(size int64) {
	a.doneFiles.Add(1)
	a.doneBytes.Add(size)
}

// readFile reads and chunks the open file fd of job, whose node is from the fstat of fd,
// and queues its new chunks for saving. ok is false when the file is left out; cache is
// its file cache entry, nil when it changed while it was read.
//
// The cache entry holds the size, times and inode from before the read, so a file
// written to after that stat is read again next time, whatever this read got. A file
// that grew or shrank while read is told by the read itself (a small file is read into
// a buffer one byte larger than its size); a large file, read in many calls, is
// fstat'ed again after the last.
func (a *Archiver) readFile(ctx context.Context, job *fileJob, fd int) (content []repo.ID, size int64, ok bool, cache *state.CachedFile, err error) {
	whole := false
	small := job.node.Size <= repo.MinChunkSize
	if small {
		content, size, whole, err = a.readSmall(ctx, fd, job.node.Size)
	}
	if !whole && err == nil {
		content, size, err = a.readChunked(ctx, fd)
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, false, nil, ctx.Err()
		}
		a.warn("read %s: %v; not in the snapshot", job.path(), err)
		return nil, 0, false, nil, nil
	}
	changed := size != job.node.Size
	if !changed && !whole {
		var after unix.Stat_t
		if err := unix.Fstat(fd, &after); err != nil {
			a.warn("stat %s after reading: %v; not in the snapshot", job.path(), err)
			return nil, 0, false, nil, nil
		}
		mtime := time.Unix(after.Mtim.Unix())
		if after.Size != size || !mtime.Equal(job.node.ModTime) {
			changed = true
			job.node.ModTime = mtime
		}
	}
	if changed {
		a.warn("%s changed while it was read; the snapshot holds what was read", job.path())
	} else {
		c := cacheEntry(job.node, job.ctime, content)
		cache = &c
		a.putCache(job.rel, c)
	}
	if content == nil {
		content = []repo.ID{}
	}
	return content, size, true, cache, nil
}

// readSmall reads a file of at most MinChunkSize bytes (hint is its size when it was
// stat'ed), which is one chunk, or none when empty: exactly as the Chunker would cut it.
// It stops once it has hint bytes, without the read that would return the end of file:
// for a backup of many small files that is one system call in six.
// whole is false, with the file offset back at 0, when the file turns out to be larger.
func (a *Archiver) readSmall(ctx context.Context, fd int, hint int64) (content []repo.ID, size int64, whole bool, err error) {
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
		if int64(n) == hint {
			// The size it was stat'ed with: no read for the end of the file. A file
			// that grew since is told by the fstat after reading (see readFile), as one
			// that grows after the last read always was.
			break
		}
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
func (a *Archiver) readChunked(ctx context.Context, fd int) (content []repo.ID, size int64, err error) {
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

func sameCached(a, b state.CachedFile) bool {
	return a.Size == b.Size && a.ModTimeNS == b.ModTimeNS && a.ChangeTimeNS == b.ChangeTimeNS &&
		a.Inode == b.Inode && slices.Equal(a.Content, b.Content)
}
