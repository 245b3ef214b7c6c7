package restorer

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"path"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/brr-dev/brr/internal/fsio"
	"github.com/brr-dev/brr/internal/repo"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// tempBase begins the names of temporary files and of markers (resume.go).
const tempBase = ".brr-restore-"

// tempName returns a name for a file being restored in dir: hidden, unique, and short
// enough whatever the final name's length. The random prefix is per restore.
func (rs *Restorer) tempName(dir string) string {
	return path.Join(dir, tempBase+rs.tempPrefix+strconv.FormatUint(rs.tempSeq.Add(1), 36))
}

// fileTask is a run of chunks of one file that one worker writes.
type fileTask struct {
	file        *fileWrite
	first, last int   // content indexes [first, last)
	offset      int64 // where content[first] starts
}

// fileWrite is the content of one or more files being restored: files with the same
// content (copies, as often as not) are written together, each chunk loaded once. It
// counts how many of its tasks are still running; the last one to finish completes or
// removes the files.
type fileWrite struct {
	outs      []*output
	content   []repo.ID
	size      int64
	seq, base int // its place among the writes, and the position of content[0] (loader.go)
	remaining atomic.Int64
	truncate  atomic.Bool // the end was not written (a hole, or content shorter than Size)
	mu        sync.Mutex
	err       error // of loading the content: every output fails
}

// output is one file of a fileWrite: its temporary file until it is complete.
type output struct {
	e        entry
	fd       int    // -1 until opened
	tmp      string // its temporary name, relative to the target
	fresh    bool   // its directory was created by this restore, so nothing is in the way
	plainGID bool   // created, it has the worker's owner and group
	err      error
}

// maxCopies bounds the files one fileWrite writes, each an open file.
const maxCopies = 16

func (w *fileWrite) setErr(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *fileWrite) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// chunksPerTask splits a large file into tasks so that one big file keeps every worker busy.
const chunksPerTask = 4

// restoreWorkers is the least number of file writers: on a cold cache each small file
// waits for the disk, and creating files is mostly work in the kernel.
const restoreWorkers = 4

func (rs *Restorer) writeFiles(ctx context.Context, files []entry) error {
	writes := rs.groupFiles(files)
	rs.wb = make(chan wbReq, 64) // when full, a range is left to the final sync
	rs.loader = newLoader(rs.r, writes, rs.cacheLimit, rs.noteReread)
	g, ctx := errgroup.WithContext(ctx)
	workers := max(rs.workers, restoreWorkers)
	tasks := make(chan fileTask, workers*2)
	for range workers {
		g.Go(func() error {
			// Every task runs, even after an error (it then only counts itself done), so
			// that the last task of each file closes and removes its temporary files.
			var buf []byte
			var first error
			for t := range tasks {
				var err error
				buf, err = rs.writeTask(ctx, t, buf)
				if first == nil {
					first = err
				}
			}
			return first
		})
	}
	g.Go(func() error {
		defer close(tasks)
		for _, w := range writes {
			offsets, ok := rs.chunkOffsets(w)
			if !ok {
				w.remaining.Store(1)
				select {
				case tasks <- fileTask{file: w, first: 0, last: len(w.content)}:
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			// Open before the tasks are queued, so that they can write in any order.
			if !rs.openAll(w) {
				rs.loader.skip(w, 0, len(w.content))
				rs.finish(w)
				continue
			}
			n := (len(w.content) + chunksPerTask - 1) / chunksPerTask
			w.remaining.Store(int64(n))
			for i, queued := 0, 0; i < len(w.content); i, queued = i+chunksPerTask, queued+1 {
				t := fileTask{file: w, first: i, last: min(i+chunksPerTask, len(w.content)), offset: offsets[i]}
				select {
				case tasks <- t:
				case <-ctx.Done():
					// The tasks queued may be running: the last of them removes the files.
					w.setErr(ctx.Err())
					if w.remaining.Add(-int64(n-queued)) == 0 {
						rs.finish(w)
					}
					return ctx.Err()
				}
			}
		}
		return nil
	})
	wbDone := make(chan struct{})
	go rs.writeback(wbDone)
	err := g.Wait()
	close(rs.wb)
	<-wbDone
	rs.loader.wait() // the reads ahead, cancelled with g's context
	return err
}

// A restore does not sync each file (the final syncfs does, Run), and with the page
// cache of a large machine the kernel starts writing dirty pages back only after 30 s:
// the disk would idle while the files are written and then write them all while the
// restore waits in syncfs (0.7 s of a 2.9 s restore of bench-backup's corpus). So the
// ranges of writebackMin bytes or more that a task wrote are named to the kernel with
// sync_file_range(SYNC_FILE_RANGE_WRITE), which starts their write-back and does not
// wait for it; from a goroutine of its own, since the call blocks while the device's
// queue is full (issued by the writers themselves, it made the restore slower). It is
// only a hint: the syncfs at the end is what makes the restore durable.
const writebackMin = 256 << 10

// wbReq is a range that a task wrote to the files of w.
type wbReq struct {
	w      *fileWrite
	off, n int64
}

// writeback starts the write-back of the ranges sent to rs.wb until it is closed, then
// closes done. Each request holds its files open (a count in w.remaining).
func (rs *Restorer) writeback(done chan<- struct{}) {
	defer close(done)
	for r := range rs.wb {
		for _, o := range r.w.outs {
			r.w.mu.Lock()
			ok := o.fd >= 0 && o.err == nil
			r.w.mu.Unlock()
			if ok {
				_ = startWriteback(o.fd, r.off, r.n)
				rs.wbRanges.Add(1)
			}
		}
		if r.w.remaining.Add(-1) == 0 {
			rs.finish(r.w)
		}
	}
}

// startWriteback is sync_file_range(2) with SYNC_FILE_RANGE_WRITE.
func startWriteback(fd int, off, n int64) error {
	return unix.SyncFileRange(fd, off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// groupFiles makes the fileWrites of files: files whose directory could not be created
// fail, files with the same content are written together, and the writes are ordered by
// where their first blob is in the packs, so that the packs are read front to back, as the
// read-ahead of the page cache expects.
func (rs *Restorer) groupFiles(files []entry) []*fileWrite {
	type placed struct {
		w    *fileWrite
		pack repo.ID
		off  uint32
	}
	var order []placed
	same := make(map[string]*fileWrite)
	var key []byte
	for _, fe := range files {
		if rs.parentFailed(fe.rel) {
			rs.fail(fe.rel, errors.New("its directory could not be created"))
			continue
		}
		flags := rs.dirFlags(path.Dir(fe.rel))
		o := &output{e: fe, fd: -1, fresh: flags&dirFresh != 0, plainGID: flags&dirPlainGID != 0}
		content := fe.node.Content
		key = key[:0]
		if len(content) > 0 {
			key = binary.AppendVarint(key, fe.node.Size)
			for _, id := range content {
				key = append(key, id[:]...)
			}
			if w := same[string(key)]; w != nil && len(w.outs) < maxCopies {
				w.outs = append(w.outs, o)
				continue
			}
		}
		w := &fileWrite{outs: []*output{o}, content: content, size: fe.node.Size}
		if len(content) > 0 {
			same[string(key)] = w
		}
		p := placed{w: w}
		if len(content) > 0 {
			if pb, ok := rs.r.LookupBlob(repo.DataBlob, content[0]); ok {
				p.pack, p.off = pb.Pack, pb.Offset
			}
		}
		order = append(order, p)
	}
	slices.SortStableFunc(order, func(a, b placed) int {
		if c := bytes.Compare(a.pack[:], b.pack[:]); c != 0 {
			return c
		}
		return cmp.Compare(a.off, b.off)
	})
	writes := make([]*fileWrite, len(order))
	for i, p := range order {
		writes[i] = p.w
	}
	return writes
}

// chunkOffsets returns where each chunk of a large file starts, when the index knows
// every size; false for a file written by one task.
func (rs *Restorer) chunkOffsets(w *fileWrite) ([]int64, bool) {
	if len(w.content) <= chunksPerTask {
		return nil, false
	}
	offsets := make([]int64, len(w.content))
	var off int64
	for i, id := range w.content {
		pb, ok := rs.r.LookupBlob(repo.DataBlob, id)
		if !ok {
			return nil, false
		}
		offsets[i] = off
		off += int64(pb.RawLength)
	}
	return offsets, off == w.size
}

// openAll opens the outputs of w that are not open yet; a file that cannot be opened
// fails alone. It reports whether any output is open.
func (rs *Restorer) openAll(w *fileWrite) bool {
	open := false
	for _, o := range w.outs {
		if o.fd < 0 && o.err == nil {
			if err := rs.open(o); err != nil {
				o.err = err
			}
		}
		open = open || o.fd >= 0
	}
	return open
}

// open checks that nothing is in the way of o's final name and creates its temporary
// file. In a directory this restore created, nothing can be.
func (rs *Restorer) open(o *output) error {
	if !o.fresh {
		if err := rs.clearFor(o.e.rel); err != nil {
			return err
		}
	}
	tmp := rs.tempName(path.Dir(o.e.rel))
	fd, err := rs.dst.create(tmp)
	if err != nil {
		return err
	}
	o.fd, o.tmp = fd, tmp
	return nil
}

func (rs *Restorer) writeTask(ctx context.Context, t fileTask, buf []byte) ([]byte, error) {
	w := t.file
	if t.first == 0 && t.last == len(w.content) {
		// A file written by one task is opened here, when its data is about to come.
		if err := ctx.Err(); err != nil {
			w.setErr(err)
		} else if !rs.openAll(w) {
			w.setErr(errSkipped)
		}
	}
	off := t.offset
	i := t.first
	for ; i < t.last && w.failed() == nil; i++ {
		if err := ctx.Err(); err != nil {
			w.setErr(err)
			break
		}
		data, held, err := rs.loader.blob(ctx, w, i, buf)
		if err != nil {
			if ctx.Err() == nil {
				rs.loadFailed.Store(true)
			}
			w.setErr(fmt.Errorf("load blob %s: %w", w.content[i].Short(), err))
			break
		}
		if held == nil {
			buf = data[:0]
		}
		written := true
		if isZero(data) {
			if i == len(w.content)-1 {
				w.truncate.Store(true)
			}
		} else {
			written = rs.writeOuts(w, data, off)
		}
		n := int64(len(data))
		rs.loader.release(held)
		if !written {
			w.setErr(errSkipped) // every file failed, each with its error: stop loading
			break
		}
		off += n
		rs.doneBytes.Add(n)
	}
	if n := off - t.offset; n >= writebackMin && w.failed() == nil {
		// The write-back goroutine holds the files open too, until it has named the
		// range to the kernel: it finishes them if it is the last.
		w.remaining.Add(1)
		select {
		case rs.wb <- wbReq{w, t.offset, n}:
		default:
			w.remaining.Add(-1)
		}
	}
	rs.loader.skip(w, i, t.last) // what is left of a task that stopped
	if t.first == 0 && t.last == len(w.content) && off != w.size {
		w.truncate.Store(true)
	}
	if w.remaining.Add(-1) == 0 {
		rs.finish(w)
	}
	return buf, ctx.Err()
}

// writeOuts writes data at off to every output of w that has not failed, and reports
// whether any is left.
func (rs *Restorer) writeOuts(w *fileWrite, data []byte, off int64) bool {
	live := false
	for _, o := range w.outs {
		w.mu.Lock()
		ok := o.fd >= 0 && o.err == nil
		w.mu.Unlock()
		if !ok {
			continue
		}
		if err := fsio.PwriteAll(o.fd, data, off); err != nil {
			w.mu.Lock()
			o.err = err
			w.mu.Unlock()
			continue
		}
		live = true
	}
	return live
}

// errSkipped marks a fileWrite none of whose files can be written; each has its error.
var errSkipped = errors.New("no file left to write")

// isZero reports whether b holds only zero bytes: such a chunk is left as a hole.
func isZero(b []byte) bool {
	for len(b) >= 8 {
		if binary.NativeEndian.Uint64(b) != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// finish completes the files of w, whose tasks are done: size, owner, mode, mtime, then
// the rename to its name; or, after an error, removes the temporary file.
func (rs *Restorer) finish(w *fileWrite) {
	shared := w.failed()
	for _, o := range w.outs {
		err := o.err
		if err == nil {
			err = shared
		}
		if err == nil {
			err = rs.complete(w, o)
		}
		if err != nil {
			rs.discard(o)
			rs.fail(o.e.rel, err)
			continue
		}
		rs.restored.Store(o.e.rel, struct{}{})
		rs.files.Add(1)
		rs.bytes.Add(w.size)
	}
}

// discard closes and removes the temporary file of o, if any.
func (rs *Restorer) discard(o *output) {
	if o.fd >= 0 {
		unix.Close(o.fd)
		o.fd = -1
	}
	if o.tmp != "" {
		rs.dst.remove(o.tmp)
		o.tmp = ""
	}
}

func (rs *Restorer) complete(w *fileWrite, o *output) error {
	n := o.e.node
	if w.truncate.Load() {
		if err := unix.Ftruncate(o.fd, n.Size); err != nil {
			return fmt.Errorf("truncate: %w", err)
		}
	}
	// A created file has the worker's owner, and its group unless its directory's
	// set-group-id bit gave it the directory's.
	if rs.chown && (!o.plainGID || int(n.UID) != rs.euid || int(n.GID) != rs.egid) {
		if err := unix.Fchown(o.fd, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := unix.Fchmod(o.fd, fsio.UnixPerm(n.Mode)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	ts := unix.NsecToTimespec(n.ModTime.UnixNano())
	if err := fsio.Futimens(o.fd, &[2]unix.Timespec{ts, ts}); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	err := unix.Close(o.fd)
	o.fd = -1
	if err != nil {
		return fmt.Errorf("close: %w", err)
	}
	if err := rs.rename(o.tmp, o.e.rel); err != nil {
		return err
	}
	o.tmp = ""
	return nil
}

// rename moves a restored file from tmp to its name rel. Without Overwrite an existing
// file is never replaced: renameat2's RENAME_NOREPLACE checks that atomically where the
// file system supports it, an lstat does elsewhere.
func (rs *Restorer) rename(tmp, rel string) error {
	if !rs.overwrite && !rs.noReplaceUnsupported.Load() {
		err := rs.dst.renameNoReplace(tmp, rel)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EEXIST):
			return errors.New("exists in the target; remove it, or restore with --overwrite")
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS):
			rs.noReplaceUnsupported.Store(true)
		default:
			return fmt.Errorf("rename into place: %w", err)
		}
	}
	if !rs.overwrite {
		if _, err := rs.dst.lstat(rel); err == nil {
			return errors.New("exists in the target; remove it, or restore with --overwrite")
		}
	}
	if err := rs.dst.rename(tmp, rel); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	return nil
}
