// Package restorer writes a snapshot, or part of it, into a directory. NewPlan reads the
// snapshot's trees and checks every name before anything is written, so that no entry can
// land outside the target; a Restorer then creates the directories, writes the files in
// parallel (each to a temporary name in its directory, renamed when complete, with holes
// where the snapshot has zeros) and gives everything its owner, mode and mtime. A file
// that cannot be restored leaves nothing at its name and is listed in Failures; the others
// are restored. Every change it makes by name goes through the target type (target.go),
// relative to directory descriptors, never through a symlink. A restore run for a job
// leaves a marker in the target until it succeeds, by which a later attempt of the same
// job resumes what it wrote (resume.go).
package restorer

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"runtime/trace"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/brr-dev/brr/internal/fsio"
	"github.com/brr-dev/brr/internal/repo"
	"golang.org/x/sys/unix"
)

// Options are what a Restorer needs besides its repository and target.
type Options struct {
	// Overwrite replaces what is in the way of an entry (but never a directory);
	// without it, such an entry fails.
	Overwrite bool
	// Workers is how many files are written at once, when more than restoreWorkers.
	Workers int
	// Job is the id of the job the restore runs for, if any: the restore keeps a marker
	// named after it in the target while it runs, so that a later attempt of the same
	// job resumes it (see resume.go).
	Job string
}

// Restorer writes plans below one target directory.
type Restorer struct {
	r         *repo.Repository
	dir       string
	dst       target // set by Run, open while it runs
	overwrite bool
	workers   int
	chown     bool
	job       string
	resume    resumeState
	loader    *loader      // set by Run
	wb        chan wbReq   // ranges written, to the writeback goroutine (files.go)
	wbRanges  atomic.Int64 // ranges whose write-back it started
	// cacheLimit bounds the bytes of blobs the loader holds for the writers (cacheLimit).
	cacheLimit int64

	// What a created file gets without chown (the worker's ids, set by New, and the
	// target's group when its set-group-id bit is set, by Run), and the prefix of
	// temporary names.
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
	// rereads counts the blobs a first read did not give and a second did (loader.go);
	// rereadMsgs are the first maxRereadMsgs of them, with the first read's error.
	rereads    atomic.Int64
	rereadMsgs []string

	files, dirs, symlinks, bytes atomic.Int64
	doneBytes, kept              atomic.Int64
}

const (
	dirFresh    = 1 << iota // created by this restore: nothing else is in it
	dirPlainGID             // a file created in it gets the worker's group
)

// New returns a restorer into the directory targetDir, which exists (PrepareTarget) and
// is a resolved path: Run does not follow a symlink at any of its components.
func New(r *repo.Repository, targetDir string, opts Options) *Restorer {
	var b [6]byte
	_, _ = rand.Read(b[:])
	rs := &Restorer{
		r:          r,
		dir:        targetDir,
		overwrite:  opts.Overwrite,
		workers:    opts.Workers,
		chown:      os.Geteuid() == 0,
		job:        opts.Job,
		cacheLimit: cacheLimit,
		euid:       os.Geteuid(),
		egid:       os.Getegid(),
		tempPrefix: hex.EncodeToString(b[:]) + "-",
		failedDir:  make(map[string]bool),
		dirState:   make(map[string]uint8),
	}
	return rs
}

// Stats are the counts of a restorer: entries restored, and the bytes of content written
// so far (holes included), for progress.
type Stats struct {
	Files, Dirs, Symlinks int64
	// Bytes are the sizes of the files restored.
	Bytes int64
	// BytesDone are the bytes of file content loaded and written so far (or found
	// restored by an earlier attempt).
	BytesDone int64
	// Kept counts the files, symlinks and hard links an earlier attempt of the job had
	// restored, kept as they were (resume.go); they are counted above too.
	Kept int64
}

// Progress returns the counts so far; it may be called while Run runs.
func (rs *Restorer) Progress() Stats {
	return Stats{
		Files:     rs.files.Load(),
		Dirs:      rs.dirs.Load(),
		Symlinks:  rs.symlinks.Load(),
		Bytes:     rs.bytes.Load(),
		BytesDone: rs.doneBytes.Load(),
		Kept:      rs.kept.Load(),
	}
}

// Failures are the entries Run could not restore, each "/path: reason"; call it after Run.
func (rs *Restorer) Failures() []string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Clone(rs.failures)
}

// maxRereadMsgs bounds the rereads Rereads describes.
const maxRereadMsgs = 5

// noteReread records a blob that was read right the second time, after first.
func (rs *Restorer) noteReread(id repo.ID, first error) {
	if rs.rereads.Add(1) > maxRereadMsgs {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.rereadMsgs = append(rs.rereadMsgs, fmt.Sprintf("blob %s: %v", id.Short(), first))
}

// Rereads returns how many blobs a first read could not give (it failed, or what it
// read failed its check) and a second read, alone, gave, checked; and, for the first
// few of them, the blob and what was wrong with its first read. A blob damaged in
// storage fails both reads and fails its files instead. Call it after Run.
func (rs *Restorer) Rereads() (int64, []string) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return rs.rereads.Load(), slices.Clone(rs.rereadMsgs)
}

// LoadFailed reports whether a blob could not be read from the repository (rather than
// written to the target): a replica of the repository may restore what failed.
func (rs *Restorer) LoadFailed() bool { return rs.loadFailed.Load() }

// dirFlags returns the dirFresh and dirPlainGID flags of the directory rel ("." is the
// target, never fresh).
func (rs *Restorer) dirFlags(rel string) uint8 {
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

func (rs *Restorer) fail(rel string, err error) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.failures = append(rs.failures, fmt.Sprintf("%s: %v", "/"+rel, err))
}

func (rs *Restorer) parentFailed(rel string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for d := path.Dir(rel); d != "."; d = path.Dir(d) {
		if rs.failedDir[d] {
			return true
		}
	}
	return false
}

func (rs *Restorer) markDirFailed(rel string) {
	rs.mu.Lock()
	rs.failedDir[rel] = true
	rs.mu.Unlock()
}

// Run restores pl. It returns an error only when the restore could not go on (the
// context ended, the target could not be opened); an entry that could not be restored
// is in Failures. Call it once.
func (rs *Restorer) Run(ctx context.Context, pl *Plan) error {
	root, err := fsio.OpenRoot(rs.dir)
	if err != nil {
		return fmt.Errorf("open restore target: %w", err)
	}
	defer root.Close()
	rs.dst = target{root: root}
	if st, err := rs.dst.lstat("."); err != nil || st.Mode&unix.S_ISGID != 0 {
		rs.targetSetgid = true
	}
	if rs.job != "" {
		if err := rs.mark(); err != nil {
			return err
		}
		rs.removeTemps(".")
	}
	if err := rs.run(ctx, pl); err != nil {
		return err
	}
	defer trace.StartRegion(ctx, "restore: sync and unmark").End()
	done := len(rs.Failures()) == 0
	if done || rs.job == "" {
		// No file was synced before its rename: until the file system is, a crash of the
		// machine can leave a name without its data. A restore is reported done, and its
		// marker removed, only once it is on disk. (A failed attempt keeps its marker,
		// whose boot id makes the next attempt after a crash write such files again.)
		if err := rs.dst.sync(); err != nil {
			return fmt.Errorf("sync the restored files to disk: %w", err)
		}
	}
	if rs.job != "" && done {
		rs.unmark()
	}
	return nil
}

func (rs *Restorer) run(ctx context.Context, pl *Plan) error {
	reg := trace.StartRegion(ctx, "restore: directories")
	defer func() { reg.End() }()
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
		} else {
			rs.removeTemps(d.rel)
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
	reg.End()
	reg = trace.StartRegion(ctx, "restore: files")
	if err := rs.writeFiles(ctx, rs.skipRestored(pl.files)); err != nil {
		return err
	}
	reg.End()
	reg = trace.StartRegion(ctx, "restore: links and metadata")
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
		if err := rs.setMeta(d.rel, d.node, false); err != nil {
			rs.fail(d.rel, err)
		}
	}
	return nil
}

// mkdir creates a directory of the plan; fresh says it did not exist. An existing
// directory is used as it is; anything else at its name (a symlink above all) is replaced
// only with Overwrite, never followed.
func (rs *Restorer) mkdir(rel string) (fresh bool, err error) {
	err = rs.dst.mkdir(rel)
	if err == nil || !errors.Is(err, fs.ErrExist) {
		return err == nil, err
	}
	st, err := rs.dst.lstat(rel)
	if err != nil {
		return false, err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return false, nil
	}
	if !rs.overwrite {
		return false, fmt.Errorf("exists in the target as a %s; remove it, or restore with --overwrite", fsio.Kind(fsio.ModeOf(st.Mode)))
	}
	if err := rs.dst.remove(rel); err != nil {
		return false, err
	}
	return true, rs.dst.mkdir(rel)
}

// clearFor makes room for a file or symlink at rel: nothing there, or (with Overwrite) a
// non-directory that is removed.
func (rs *Restorer) clearFor(rel string) error {
	st, err := rs.dst.lstat(rel)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return errors.New("exists in the target as a directory; remove it first")
	}
	if !rs.overwrite {
		return fmt.Errorf("exists in the target as a %s; remove it, or restore with --overwrite", fsio.Kind(fsio.ModeOf(st.Mode)))
	}
	return rs.dst.remove(rel)
}

func (rs *Restorer) symlink(s entry) error {
	if rs.restoredBefore(s) {
		return rs.setMeta(s.rel, s.node, true)
	}
	if err := rs.clearFor(s.rel); err != nil {
		return err
	}
	if err := rs.dst.symlink(s.node.LinkTarget, s.rel); err != nil {
		return err
	}
	return rs.setMeta(s.rel, s.node, true)
}

func (rs *Restorer) link(h hardlink) error {
	if rs.parentFailed(h.rel) {
		return errors.New("its directory could not be created")
	}
	if _, ok := rs.restored.Load(h.leader); !ok {
		return fmt.Errorf("it is a hardlink of %q, which was not restored", "/"+h.leader)
	}
	if rs.linkedBefore(h) {
		return nil
	}
	if err := rs.clearFor(h.rel); err != nil {
		return err
	}
	return rs.dst.link(h.leader, h.rel)
}

// setMeta sets owner (as root), mode and mtime of rel, without following a symlink at rel.
func (rs *Restorer) setMeta(rel string, n *repo.Node, isLink bool) error {
	if rs.chown {
		if err := rs.dst.lchown(rel, int(n.UID), int(n.GID)); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if !isLink {
		if err := rs.dst.chmod(rel, fsio.UnixPerm(n.Mode)); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if err := rs.dst.setMtime(rel, n.ModTime); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return nil
}
