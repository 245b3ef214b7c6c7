package jobs

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/fsio"
	"github.com/brr-dev/brr/internal/repo"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// restorer writes a plan below target.
type restorer struct {
	r         *repo.Repository
	target    string
	overwrite bool
	workers   int
	chown     bool

	// Set by newRestorer: what a created file gets without chown (the worker's ids, and
	// the target's group when its set-group-id bit is set), and the prefix of temporary
	// names.
	euid, egid   int
	targetSetgid bool
	tempPrefix   string
	tempSeq      atomic.Uint64

	noReplaceUnsupported atomic.Bool // the target's file system has no RENAME_NOREPLACE

	mu        sync.Mutex
	failures  []string
	failedDir map[string]bool  // rel of directories that could not be created
	dirState  map[string]uint8 // rel of directories created by this restore → dirFresh|dirPlainGID
	restored  sync.Map         // rel of files, symlinks and hard links restored → struct{}
	// loadFailed is set when a blob could not be read from the repository: a replica may
	// have it.
	loadFailed atomic.Bool

	files, dirs, symlinks, bytes atomic.Int64
	doneBytes                    atomic.Int64
}

const (
	dirFresh    = 1 << iota // created by this restore: nothing else is in it
	dirPlainGID             // a file created in it gets the worker's group
)

func newRestorer(r *repo.Repository, target string, overwrite bool, workers int) *restorer {
	var b [6]byte
	_, _ = rand.Read(b[:])
	rs := &restorer{
		r:          r,
		target:     target,
		overwrite:  overwrite,
		workers:    workers,
		chown:      os.Geteuid() == 0,
		euid:       os.Geteuid(),
		egid:       os.Getegid(),
		tempPrefix: hex.EncodeToString(b[:]) + "-",
		failedDir:  make(map[string]bool),
		dirState:   make(map[string]uint8),
	}
	if fi, err := os.Lstat(target); err != nil || fi.Mode()&os.ModeSetgid != 0 {
		rs.targetSetgid = true
	}
	return rs
}

// dirFlags returns the dirFresh and dirPlainGID flags of the directory rel ("." is the
// target, never fresh).
func (rs *restorer) dirFlags(rel string) uint8 {
	if rel == "." {
		if rs.targetSetgid {
			return 0
		}
		return dirPlainGID
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.dirState[rel]
}

func (rs *restorer) fail(rel string, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.failures = append(rs.failures, fmt.Sprintf("%s: %v", "/"+rel, err))
}

func (rs *restorer) parentFailed(rel string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		if rs.failedDir[d] {
			return true
		}
	}
	return false
}

func (rs *restorer) abs(rel string) string { return filepath.Join(rs.target, filepath.FromSlash(rel)) }

func (rs *restorer) run(ctx context.Context, pl *restorePlan) error {
	for _, d := range pl.dirs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if rs.parentFailed(d.rel) {
			rs.markDirFailed(d.rel)
			continue
		}
		fresh, err := rs.mkdir(d.rel)
		if err != nil {
			rs.markDirFailed(d.rel)
			rs.fail(d.rel, err)
			continue
		}
		if fresh {
			// A new directory inherits the set-group-id bit of its parent.
			flags := uint8(dirFresh)
			if rs.dirFlags(path.Dir(d.rel))&dirPlainGID != 0 {
				flags |= dirPlainGID
			}
			rs.mu.Lock()
			rs.dirState[d.rel] = flags
			rs.mu.Unlock()
		}
		rs.dirs.Add(1)
	}
	for _, s := range pl.symlinks {
		if rs.parentFailed(s.rel) {
			rs.fail(s.rel, errors.New("its directory could not be created"))
			continue
		}
		if err := rs.symlink(s); err != nil {
			rs.fail(s.rel, err)
			continue
		}
		rs.restored.Store(s.rel, struct{}{})
		rs.symlinks.Add(1)
	}
	if err := rs.writeFiles(ctx, pl.files); err != nil {
		return err
	}
	for _, h := range pl.hardlinks {
		if err := rs.link(h); err != nil {
			rs.fail(h.rel, err)
			continue
		}
		rs.restored.Store(h.rel, struct{}{})
		rs.files.Add(1)
		rs.bytes.Add(h.node.Size)
	}
	// Children change their directory's mtime, so directories get theirs last, deepest first.
	for i := len(pl.dirs) - 1; i >= 0; i-- {
		d := pl.dirs[i]
		if rs.parentFailed(d.rel + "/x") {
			continue
		}
		if err := rs.setMeta(rs.abs(d.rel), d.node, false); err != nil {
			rs.fail(d.rel, err)
		}
	}
	return nil
}

func (rs *restorer) markDirFailed(rel string) {
	rs.mu.Lock()
	rs.failedDir[rel] = true
	rs.mu.Unlock()
}

// mkdir creates a directory of the plan; fresh says it did not exist. An existing
// directory is used as it is; anything else at its name (a symlink above all) is replaced
// only with Overwrite, never followed.
func (rs *restorer) mkdir(rel string) (fresh bool, err error) {
	p := rs.abs(rel)
	err = os.Mkdir(p, 0o700)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return err == nil, err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return false, err
	}
	if fi.IsDir() {
		return false, nil
	}
	if !rs.overwrite {
		return false, fmt.Errorf("exists in the target as a %s; remove it or restore with overwrite", fsio.Kind(fi.Mode()))
	}
	if err := os.Remove(p); err != nil {
		return false, err
	}
	return true, os.Mkdir(p, 0o700)
}

// clearFor makes room for a file or symlink at p: nothing there, or (with Overwrite) a
// non-directory that is removed.
func (rs *restorer) clearFor(p string) error {
	fi, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return errors.New("exists in the target as a directory; remove it first")
	}
	if !rs.overwrite {
		return fmt.Errorf("exists in the target as a %s; remove it or restore with overwrite", fsio.Kind(fi.Mode()))
	}
	return os.Remove(p)
}

func (rs *restorer) symlink(s entry) error {
	p := rs.abs(s.rel)
	if err := rs.clearFor(p); err != nil {
		return err
	}
	if err := os.Symlink(s.node.LinkTarget, p); err != nil {
		return err
	}
	return rs.setMeta(p, s.node, true)
}

func (rs *restorer) link(h hardlink) error {
	if rs.parentFailed(h.rel) {
		return errors.New("its directory could not be created")
	}
	if _, ok := rs.restored.Load(h.leader); !ok {
		return fmt.Errorf("it is a hardlink of %q, which was not restored", "/"+h.leader)
	}
	p := rs.abs(h.rel)
	if err := rs.clearFor(p); err != nil {
		return err
	}
	return os.Link(rs.abs(h.leader), p)
}

// setMeta sets owner (as root), mode and mtime of p, without following a symlink at p.
func (rs *restorer) setMeta(p string, n *repo.Node, isLink bool) error {
	if rs.chown {
		if err := os.Lchown(p, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if !isLink {
		if err := os.Chmod(p, fsio.Perm(n.Mode)); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	ts := unix.NsecToTimespec(n.ModTime.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return nil
}

// tempName returns a name for a file being restored in dir: hidden, unique, and short
// enough whatever the final name's length. The random prefix is per restore.
func (rs *restorer) tempName(dir string) string {
	return filepath.Join(dir, ".brr-restore-"+rs.tempPrefix+strconv.FormatUint(rs.tempSeq.Add(1), 36))
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
	remaining atomic.Int64
	truncate  atomic.Bool // the end was not written (a hole, or content shorter than Size)
	mu        sync.Mutex
	err       error // of loading the content: every output fails
}

// output is one file of a fileWrite: its temporary file until it is complete.
type output struct {
	e        entry
	fd       int // -1 until opened
	tmp      string
	fresh    bool // its directory was created by this restore, so nothing is in the way
	plainGID bool // created, it has the worker's owner and group
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

func (rs *restorer) writeFiles(ctx context.Context, files []entry) error {
	writes := rs.groupFiles(files)
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
	return g.Wait()
}

// groupFiles makes the fileWrites of files: files whose directory could not be created
// fail, files with the same content are written together, and the writes are ordered by
// where their first blob is in the packs, so that the packs are read front to back, as the
// read-ahead of the page cache expects.
func (rs *restorer) groupFiles(files []entry) []*fileWrite {
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
func (rs *restorer) chunkOffsets(w *fileWrite) ([]int64, bool) {
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
func (rs *restorer) openAll(w *fileWrite) bool {
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
func (rs *restorer) open(o *output) error {
	final := rs.abs(o.e.rel)
	if !o.fresh {
		if err := rs.clearFor(final); err != nil {
			return err
		}
	}
	o.tmp = rs.tempName(filepath.Dir(final))
	err := fsio.IgnoringEINTR(func() (err error) {
		o.fd, err = unix.Open(o.tmp, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		return err
	})
	if err != nil {
		o.fd, o.tmp = -1, ""
		return &fs.PathError{Op: "open", Path: filepath.Dir(final), Err: err}
	}
	return nil
}

func (rs *restorer) writeTask(ctx context.Context, t fileTask, buf []byte) ([]byte, error) {
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
	for i := t.first; i < t.last && w.failed() == nil; i++ {
		if err := ctx.Err(); err != nil {
			w.setErr(err)
			break
		}
		id := w.content[i]
		data, err := rs.r.LoadBlob(ctx, repo.DataBlob, id, buf[:0])
		if err != nil {
			if ctx.Err() == nil {
				rs.loadFailed.Store(true)
			}
			w.setErr(fmt.Errorf("load blob %s: %w", id.Short(), err))
			break
		}
		buf = data[:0]
		if isZero(data) {
			if i == len(w.content)-1 {
				w.truncate.Store(true)
			}
		} else if !rs.writeOuts(w, data, off) {
			w.setErr(errSkipped) // every file failed, each with its error: stop loading
			break
		}
		off += int64(len(data))
		rs.doneBytes.Add(int64(len(data)))
	}
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
func (rs *restorer) writeOuts(w *fileWrite, data []byte, off int64) bool {
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
func (rs *restorer) finish(w *fileWrite) {
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
func (rs *restorer) discard(o *output) {
	if o.fd >= 0 {
		unix.Close(o.fd)
		o.fd = -1
	}
	if o.tmp != "" {
		os.Remove(o.tmp)
		o.tmp = ""
	}
}

func (rs *restorer) complete(w *fileWrite, o *output) error {
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
	if err := rs.rename(o.tmp, rs.abs(o.e.rel)); err != nil {
		return err
	}
	o.tmp = ""
	return nil
}

// rename moves a restored file to its name. Without Overwrite an existing file is never
// replaced: renameat2's RENAME_NOREPLACE checks that atomically where the file system
// supports it, an lstat does elsewhere.
func (rs *restorer) rename(tmp, final string) error {
	if !rs.overwrite && !rs.noReplaceUnsupported.Load() {
		err := unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, final, unix.RENAME_NOREPLACE)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EEXIST):
			return errors.New("exists in the target; remove it or restore with overwrite")
		case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOSYS):
			rs.noReplaceUnsupported.Store(true)
		default:
			return fmt.Errorf("rename into place: %w", err)
		}
	}
	if !rs.overwrite {
		if _, err := os.Lstat(final); err == nil {
			return errors.New("exists in the target; remove it or restore with overwrite")
		}
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	return nil
}

func (rs *restorer) reportProgress(ctx context.Context, pl *restorePlan, progress func(brr.Progress), start time.Time) func() {
	if progress == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		tick(ctx, progress, func() brr.Progress {
			p := brr.Progress{
				Phase:      "restore",
				Files:      rs.files.Load(),
				Bytes:      rs.doneBytes.Load(),
				TotalFiles: int64(len(pl.files) + len(pl.hardlinks)),
				TotalBytes: pl.bytes,
			}
			fillRate(&p, start, true)
			return p
		})
	}()
	return func() {
		cancel()
		<-done
	}
}
