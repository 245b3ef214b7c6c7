package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/brr-dev/brr"
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

	mu        sync.Mutex
	failures  []string
	failedDir map[string]bool // rel of directories that could not be created
	restored  sync.Map        // rel of files restored → struct{}

	files, dirs, symlinks, bytes atomic.Int64
	doneBytes                    atomic.Int64
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
		if err := rs.mkdir(d.rel); err != nil {
			rs.markDirFailed(d.rel)
			rs.fail(d.rel, err)
			continue
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

// mkdir creates a directory of the plan. An existing directory is used as it is; anything
// else at its name (a symlink above all) is replaced only with Overwrite, never followed.
func (rs *restorer) mkdir(rel string) error {
	p := rs.abs(rel)
	err := os.Mkdir(p, 0o700)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return err
	}
	fi, err := os.Lstat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return nil
	}
	if !rs.overwrite {
		return fmt.Errorf("exists in the target as a %s; remove it or restore with overwrite", kindOf(fi.Mode()))
	}
	if err := os.Remove(p); err != nil {
		return err
	}
	return os.Mkdir(p, 0o700)
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
		return fmt.Errorf("exists in the target as a %s; remove it or restore with overwrite", kindOf(fi.Mode()))
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
		if err := os.Chmod(p, fileMode(n.Mode)); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	ts := unix.NsecToTimespec(n.ModTime.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return nil
}

// fileMode keeps the permission and setuid/setgid/sticky bits of a node's mode.
func fileMode(m uint32) os.FileMode {
	return os.FileMode(m) & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
}

func kindOf(m fs.FileMode) string {
	switch {
	case m&fs.ModeSymlink != 0:
		return "symlink"
	case m.IsRegular():
		return "file"
	case m.IsDir():
		return "directory"
	}
	return typeName(m)
}

// tempName returns a name for a file being restored in dir: hidden, unique, and short
// enough whatever the final name's length.
func tempName(dir string) string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return filepath.Join(dir, ".brr-restore-"+hex.EncodeToString(b[:]))
}

// fileTask is a run of chunks of one file that one worker writes.
type fileTask struct {
	file        *fileWrite
	first, last int   // content indexes [first, last)
	offset      int64 // where content[first] starts
}

// fileWrite is a file being restored: its temporary file, and how many of its tasks are
// still running. The last one to finish completes or removes it.
type fileWrite struct {
	e         entry
	f         *os.File
	tmp       string
	remaining atomic.Int64
	mu        sync.Mutex
	err       error
}

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

func (rs *restorer) writeFiles(ctx context.Context, files []entry) error {
	g, ctx := errgroup.WithContext(ctx)
	tasks := make(chan fileTask, rs.workers*2)
	for range rs.workers {
		g.Go(func() error {
			buf := make([]byte, 0, repo.MaxChunkSize)
			for t := range tasks {
				var err error
				buf, err = rs.writeTask(ctx, t, buf)
				if err != nil {
					for range tasks {
					}
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(tasks)
		for _, fe := range files {
			if rs.parentFailed(fe.rel) {
				rs.fail(fe.rel, errors.New("its directory could not be created"))
				continue
			}
			w := &fileWrite{e: fe}
			offsets, ok := rs.chunkOffsets(fe.node)
			if !ok || len(fe.node.Content) <= chunksPerTask {
				w.remaining.Store(1)
				select {
				case tasks <- fileTask{file: w, first: 0, last: len(fe.node.Content)}:
				case <-ctx.Done():
					return ctx.Err()
				}
				continue
			}
			// Open before the tasks are queued, so that they can write in any order.
			if err := rs.open(w); err != nil {
				rs.fail(fe.rel, err)
				continue
			}
			n := (len(fe.node.Content) + chunksPerTask - 1) / chunksPerTask
			w.remaining.Store(int64(n))
			for i := 0; i < len(fe.node.Content); i += chunksPerTask {
				t := fileTask{file: w, first: i, last: min(i+chunksPerTask, len(fe.node.Content)), offset: offsets[i]}
				select {
				case tasks <- t:
				case <-ctx.Done():
					w.f.Close()
					os.Remove(w.tmp)
					return ctx.Err()
				}
			}
		}
		return nil
	})
	return g.Wait()
}

// chunkOffsets returns where each chunk of n starts, when the index knows every size.
func (rs *restorer) chunkOffsets(n *repo.Node) ([]int64, bool) {
	offsets := make([]int64, len(n.Content))
	var off int64
	for i, id := range n.Content {
		pb, ok := rs.r.LookupBlob(repo.DataBlob, id)
		if !ok {
			return nil, false
		}
		offsets[i] = off
		off += int64(pb.RawLength)
	}
	return offsets, off == n.Size
}

// open checks that nothing is in the way of w's final name and creates its temporary file.
func (rs *restorer) open(w *fileWrite) error {
	final := rs.abs(w.e.rel)
	if err := rs.clearFor(final); err != nil {
		return err
	}
	w.tmp = tempName(filepath.Dir(final))
	f, err := os.OpenFile(w.tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	w.f = f
	return nil
}

var zeroChunk = make([]byte, repo.MaxChunkSize)

func (rs *restorer) writeTask(ctx context.Context, t fileTask, buf []byte) ([]byte, error) {
	w := t.file
	if w.f == nil && w.failed() == nil {
		if err := rs.open(w); err != nil {
			w.setErr(err)
		}
	}
	off := t.offset
	for i := t.first; i < t.last && w.failed() == nil; i++ {
		if err := ctx.Err(); err != nil {
			w.setErr(err)
			break
		}
		id := w.e.node.Content[i]
		data, err := rs.r.LoadBlob(ctx, repo.DataBlob, id, buf[:0])
		if err != nil {
			w.setErr(fmt.Errorf("load blob %s: %w", id.Short(), err))
			break
		}
		buf = data[:0]
		if len(data) > len(zeroChunk) || string(data) != string(zeroChunk[:len(data)]) {
			if _, err := w.f.WriteAt(data, off); err != nil {
				w.setErr(err)
				break
			}
		}
		off += int64(len(data))
		rs.doneBytes.Add(int64(len(data)))
	}
	if w.remaining.Add(-1) == 0 {
		rs.finish(w)
	}
	return buf, ctx.Err()
}

// finish completes a file whose tasks are done: size, mode, owner, mtime, then the rename
// to its name; or, after an error, removes the temporary file.
func (rs *restorer) finish(w *fileWrite) {
	err := w.failed()
	if err == nil {
		err = rs.complete(w)
	}
	if err != nil {
		if w.f != nil {
			w.f.Close()
		}
		if w.tmp != "" {
			os.Remove(w.tmp)
		}
		rs.fail(w.e.rel, err)
		return
	}
	rs.restored.Store(w.e.rel, struct{}{})
	rs.files.Add(1)
	rs.bytes.Add(w.e.node.Size)
}

func (rs *restorer) complete(w *fileWrite) error {
	n := w.e.node
	if err := w.f.Truncate(n.Size); err != nil {
		return fmt.Errorf("truncate: %w", err)
	}
	if rs.chown {
		if err := w.f.Chown(int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if err := w.f.Chmod(fileMode(n.Mode)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	if err := w.f.Close(); err != nil {
		return fmt.Errorf("close: %w", err)
	}
	w.f = nil
	ts := unix.NsecToTimespec(n.ModTime.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, w.tmp, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	final := rs.abs(w.e.rel)
	if !rs.overwrite {
		if _, err := os.Lstat(final); err == nil {
			return errors.New("exists in the target; remove it or restore with overwrite")
		}
	}
	if err := os.Rename(w.tmp, final); err != nil {
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
		t := time.NewTicker(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			p := brr.Progress{
				Phase:      "restore",
				Files:      rs.files.Load(),
				Bytes:      rs.doneBytes.Load(),
				TotalFiles: int64(len(pl.files) + len(pl.hardlinks)),
				TotalBytes: pl.bytes,
			}
			fillRate(&p, start, true)
			progress(p)
		}
	}()
	return func() {
		cancel()
		<-done
	}
}
