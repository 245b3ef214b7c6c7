// Package archiver turns a directory tree into the trees and blobs of a repository: it
// walks the tree, leaves out what the excludes say (deciding from the listing and lstat
// alone, so that nothing excluded is opened), answers unchanged files from the file
// cache, reads, chunks and hashes the others (each inode once, whatever its hard links),
// and saves the new blobs. It leaves the snapshot to its caller: Run returns the root
// tree, the counts and the file cache's updates, and the caller flushes the repository,
// saves the snapshot and writes the cache. Progress is the caller's too: Progress gives
// the live counts to report. A dry run walks the tree the same way and reports the files
// it would read, without reading or saving anything.
package archiver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/brr-dev/brr/internal/excludes"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
	"golang.org/x/sync/errgroup"
)

// maxWarnings bounds the warnings a result carries; the rest are counted.
const maxWarnings = 1000

// Options are what an Archiver needs besides its repository and root.
type Options struct {
	// Workers is how many files are read at once, when more than fileWorkers (files
	// mostly wait for the disk), and what NewLimits is given when Limits is nil.
	Workers int
	// Limits bound what all the archivers that share them hold at once; nil means
	// NewLimits(Workers), for this archiver alone.
	Limits *Limits
	// LoadCache loads the file cache, path relative to the root → what the file was at
	// the last backup. It runs while the first directories are listed. The entries are
	// state.CachedFile, not a type of this package, because a cache of millions of files
	// is loaded and written as whole maps, which converting would copy. Nil means an
	// empty cache: every file is read.
	LoadCache func() (map[string]state.CachedFile, error)
	// PutCache, when set, is handed the file cache's new entries while the archive runs,
	// in batches of a few thousand, from one goroutine (a slow write does not stop the file
	// workers until the next batch is full), so that a backup of millions of files does
	// not hold an entry per file until it ends; Result.CachePut has only those not handed
	// to it. An entry may be written before the snapshot commits, or when the backup
	// fails: that is safe, because an entry is used only when every blob it names is in
	// the index (see unchanged). An error is a warning of the result: its batch is not
	// in the cache, and those files are read again next time.
	PutCache func(put map[string]state.CachedFile) error

	// Excludes are patterns in gitignore syntax relative to the root (a job's or a
	// source's), before the ignore files' in precedence; see internal/excludes.
	Excludes []string
	// IgnoreFile names the ignore files (gitignore syntax, relative to their directory)
	// read in the directories of the tree; "" reads none. A job passes
	// excludes.DefaultIgnoreFile; the archiver has no default, so that it reads no file
	// of the tree that its caller did not ask for.
	IgnoreFile string
	// ExcludeCaches leaves out every entry of a directory that holds a valid CACHEDIR.TAG
	// (https://bford.info/cachedir/) but the tag itself, as tar and restic do: the
	// directory stays, with its tag, so a restore shows what was left out.
	ExcludeCaches bool
	// OneFileSystem does not cross mount points: an entry whose st_dev is not the root's
	// is left out, except a directory, which is kept empty (its contents are not listed),
	// as rsync -x keeps mount points, so that a restore recreates them.
	OneFileSystem bool
	// ExcludeLargerThan leaves out regular files larger than this many bytes; 0 means no
	// limit.
	ExcludeLargerThan int64

	// DryRun walks the tree as a backup would, excludes and all, but reads no file and
	// saves nothing: New may be given a nil Writer, and Result has no Tree, no cache
	// updates, and counts of what a backup would store.
	DryRun bool
	// WouldRead, on a dry run, is called with every regular file that a backup would
	// store (its path relative to the root and its size), from several goroutines at once.
	WouldRead func(rel string, size int64)
}

// Archiver turns one directory tree into trees and blobs of a repository, once. It runs
// as a pipeline so that both cores stay busy: listers read directories and stat their
// entries, file workers answer unchanged files from the file cache or read, chunk and
// hash the others, and savers compress, encrypt and store the new blobs, trees included.
// A directory's tree is encoded by whoever finishes its last entry, so no goroutine waits
// for a directory to complete and small files do not serialize behind each other.
type Archiver struct {
	w       *repo.Writer // where blobs go: it refuses them once a write of the job failed
	r       *repo.Repository
	root    string // resolved source path
	workers int
	savers  int
	opts    Options
	rootDev uint64 // st_dev of the root, for OneFileSystem; set before its entries are listed

	// loadCache loads the file cache; file workers wait for it (cacheReady) before the
	// first lookup.
	loadCache  func() (map[string]state.CachedFile, error)
	cacheReady chan struct{}
	cacheErr   error

	// mu guards oldCache, from which file workers delete what they saw (what is left was
	// removed from the source), and hardlinks.
	mu        sync.Mutex
	oldCache  map[string]state.CachedFile
	hardlinks map[devIno]*linkGroup

	limits   *Limits
	dirCh    chan *dirState
	dirsLeft sync.WaitGroup // directories queued or being listed
	dirFDs   atomic.Int64   // directory descriptors held open for their files (maxDirFDs)
	fileCh   chan *fileJob
	saveCh   chan saveJob
	seen     sync.Map // blobKey → struct{}: blobs this run already queued

	// Counters, updated atomically.
	files, dirs, bytes     atomic.Int64
	filesNew, filesChanged atomic.Int64
	filesUnchanged         atomic.Int64
	bytesRead              atomic.Int64
	blobsAdded, bytesAdded atomic.Int64
	filesExcluded          atomic.Int64
	dirsExcluded           atomic.Int64
	bytesExcluded          atomic.Int64
	doneFiles, doneBytes   atomic.Int64 // progress: files finished, bytes read or skipped
	warnMu                 sync.Mutex
	warnings               []string
	moreWarnings           int
	cacheMu                sync.Mutex
	cachePut               map[string]state.CachedFile
	cacheCh                chan map[string]state.CachedFile // full batches for Options.PutCache
	rootTree               repo.ID
	rootDone               atomic.Bool
}

// New returns an archiver of the directory root (symlinks resolved) into the repository
// that w writes, through w: the archive stops at the first blob w refuses because a
// write it relied on failed. w may be nil for a dry run.
func New(w *repo.Writer, root string, opts Options) *Archiver {
	limits := opts.Limits
	if limits == nil {
		limits = NewLimits(opts.Workers)
	}
	savers := cap(limits.saves)
	var r *repo.Repository
	if w != nil {
		r = w.Repository()
	}
	return &Archiver{
		w:          w,
		r:          r,
		opts:       opts,
		root:       root,
		workers:    max(opts.Workers, fileWorkers),
		savers:     savers,
		limits:     limits,
		loadCache:  opts.LoadCache,
		cacheReady: make(chan struct{}),
		hardlinks:  make(map[devIno]*linkGroup),
		dirCh:      make(chan *dirState, 4096),
		fileCh:     make(chan *fileJob, 1024),
		saveCh:     make(chan saveJob, 2*savers),
		cachePut:   make(map[string]state.CachedFile),
		cacheCh:    make(chan map[string]state.CachedFile, 1),
	}
}

// cacheBatch is how many file cache entries Options.PutCache is given at once: a few MiB.
// A variable only so that tests can make it small.
var cacheBatch = 16384

// putCache records the file cache entry of rel; with Options.PutCache, a full batch goes
// to the goroutine that writes it.
func (a *Archiver) putCache(rel string, c state.CachedFile) {
	a.cacheMu.Lock()
	a.cachePut[rel] = c
	var batch map[string]state.CachedFile
	if a.opts.PutCache != nil && len(a.cachePut) >= cacheBatch {
		batch, a.cachePut = a.cachePut, make(map[string]state.CachedFile, cacheBatch)
	}
	a.cacheMu.Unlock()
	if batch != nil {
		a.cacheCh <- batch // the writer takes batches until every producer is done
	}
}

// writeCache hands the batches of putCache to Options.PutCache until the producers are
// done. It never stops early, so that putCache never blocks for good; once ctx is done it
// only drops what it is given.
func (a *Archiver) writeCache(ctx context.Context) {
	failed := false
	for batch := range a.cacheCh {
		if failed || ctx.Err() != nil {
			continue
		}
		if err := a.opts.PutCache(batch); err != nil {
			failed = true
			a.warn("update file cache: %v (the files of this backup are read again next time)", err)
		}
	}
}

// Stats are the counts of an archiver while it runs.
type Stats struct {
	// Files, Dirs and Bytes are what the walk has met so far: files (and their sizes)
	// and directories, less the files left out.
	Files, Dirs, Bytes int64
	// FilesDone are the files finished; BytesDone the bytes read, or skipped as unchanged.
	FilesDone, BytesDone int64
}

// Progress returns the counts so far; it may be called while Run runs.
func (a *Archiver) Progress() Stats {
	return Stats{
		Files:     a.files.Load(),
		Dirs:      a.dirs.Load(),
		Bytes:     a.bytes.Load(),
		FilesDone: a.doneFiles.Load(),
		BytesDone: a.doneBytes.Load(),
	}
}

// Result is what Run made of the tree.
type Result struct {
	// Tree is the id of the root tree.
	Tree repo.ID
	// Files, Dirs and Bytes are the tree's regular files, directories and file bytes.
	Files, Dirs, Bytes int64
	// FilesNew were not in the file cache; FilesChanged were, and were read again;
	// FilesUnchanged were answered from it.
	FilesNew, FilesChanged, FilesUnchanged int64
	// BytesRead were read from files.
	BytesRead int64
	// BlobsAdded and BytesAdded (as stored) are the data blobs that were new to the
	// repository.
	BlobsAdded, BytesAdded int64
	// FilesExcluded counts the entries other than directories that the excludes left
	// out (by pattern, cache tag, size or file system), BytesExcluded the sizes of those
	// that are regular files, from their lstat. DirsExcluded counts the directories whose
	// contents were not listed: those left out, and the mount points kept empty. Nothing
	// below them is counted.
	FilesExcluded, DirsExcluded, BytesExcluded int64
	// Warnings name what was left out of the snapshot, or changed while it was read.
	Warnings []string
	// CachePut are the file cache entries to write (with Options.PutCache, those it was
	// not handed) and CacheDelete those to delete (the files are gone from the source).
	CachePut    map[string]state.CachedFile
	CacheDelete []string
}

// Run archives the tree. Every blob the result references has been handed to SaveBlob
// when it returns; the caller flushes.
func (a *Archiver) Run(ctx context.Context) (*Result, error) {
	match, err := excludes.New(a.opts.Excludes)
	if err != nil {
		return nil, err
	}
	if f := a.opts.IgnoreFile; f != "" && (f == "." || f == ".." || strings.ContainsAny(f, "/\x00")) {
		return nil, fmt.Errorf("ignore file name %q: give a file name, like %s", f, excludes.DefaultIgnoreFile)
	}
	if !a.opts.DryRun && a.w == nil {
		return nil, errors.New("archive: no repository writer (only a dry run goes without one)")
	}
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
		a.writeCache(ctx)
		return nil
	})
	g.Go(func() error {
		listers.Wait()
		close(a.fileCh)
		producers.Wait()
		close(a.saveCh)
		close(a.cacheCh)
		return nil
	})
	root := &dirState{match: match}
	root.pending.Store(1)
	a.dirsLeft.Add(1)
	a.dirCh <- root
	g.Go(func() error {
		a.dirsLeft.Wait()
		close(a.dirCh)
		return nil
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if !a.rootDone.Load() {
		return nil, errors.New("archive: root tree was not completed")
	}
	if a.opts.DryRun {
		return a.dryResult(), nil
	}
	return a.result(), nil
}

func (a *Archiver) result() *Result {
	del := make([]string, 0, len(a.oldCache))
	for k := range a.oldCache {
		del = append(del, k)
	}
	return &Result{
		Tree:           a.rootTree,
		Files:          a.files.Load(),
		Dirs:           a.dirs.Load(),
		Bytes:          a.bytes.Load(),
		FilesNew:       a.filesNew.Load(),
		FilesChanged:   a.filesChanged.Load(),
		FilesUnchanged: a.filesUnchanged.Load(),
		BytesRead:      a.bytesRead.Load(),
		BlobsAdded:     a.blobsAdded.Load(),
		BytesAdded:     a.bytesAdded.Load(),
		FilesExcluded:  a.filesExcluded.Load(),
		DirsExcluded:   a.dirsExcluded.Load(),
		BytesExcluded:  a.bytesExcluded.Load(),
		Warnings:       a.warningList(),
		CachePut:       a.cachePut,
		CacheDelete:    del,
	}
}

// dryResult is the result of a dry run: the counts of what a backup would store and
// leave out, and the warnings.
func (a *Archiver) dryResult() *Result {
	return &Result{
		Files:         a.files.Load(),
		Dirs:          a.dirs.Load(),
		Bytes:         a.bytes.Load(),
		FilesExcluded: a.filesExcluded.Load(),
		DirsExcluded:  a.dirsExcluded.Load(),
		BytesExcluded: a.bytesExcluded.Load(),
		Warnings:      a.warningList(),
		CachePut:      map[string]state.CachedFile{},
	}
}

func (a *Archiver) warn(format string, args ...any) {
	a.warnMu.Lock()
	defer a.warnMu.Unlock()
	if len(a.warnings) >= maxWarnings {
		a.moreWarnings++
		return
	}
	a.warnings = append(a.warnings, fmt.Sprintf(format, args...))
}

func (a *Archiver) warningList() []string {
	a.warnMu.Lock()
	defer a.warnMu.Unlock()
	w := append([]string(nil), a.warnings...)
	if a.moreWarnings > 0 {
		w = append(w, fmt.Sprintf("and %d more warnings", a.moreWarnings))
	}
	return w
}
