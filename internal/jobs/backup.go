package jobs

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/archiver"
	"github.com/brr-dev/brr/internal/excludes"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
)

// SourceLeaseKey is the lease key that serializes backups of one source of one host; KV
// keys allow only [-_=.a-zA-Z0-9], so the path is hashed.
func SourceLeaseKey(host, path string) string {
	sum := sha256.Sum256([]byte(host + "\x00" + path))
	return "source-" + hex.EncodeToString(sum[:16])
}

// CacheScope is the file cache scope of a source backed up into a repository.
func CacheScope(r *repo.Repository, source string) string {
	return r.ID() + "\x00" + source
}

// Backup backs up the directory tree at a.Path into the job's repository and commits a
// snapshot whose id derives from jobID. When that snapshot already exists (the job was
// delivered again after it committed) it returns its result without backing up again.
func (e *Engine) Backup(ctx context.Context, jobID string, a brr.BackupJob, progress func(brr.Progress)) (*brr.BackupResult, error) {
	res, _, err := e.backup(ctx, jobID, a, progress)
	return res, err
}

// runBackup runs a backup job. Its outcome states the snapshot committed, as the
// repository stores it (so the event and `brr snapshots` agree), and the replicate jobs
// the replication policy sets off. A job delivered again after its snapshot committed
// states them again: a subscriber may see the event twice, and the jobs, whose ids
// derive from the snapshot, are dropped as duplicates within the duplicate window.
func (e *Engine) runBackup(ctx context.Context, job *brr.Job, a brr.BackupJob, rep brr.Reporter) (*brr.Outcome, error) {
	res, sn, err := e.backup(ctx, job.ID, a, progressOf(rep))
	if err != nil {
		if res == nil {
			return nil, err
		}
		// A failed backup that has something to say (how a source's command or hooks
		// ended) says it in the failed job's result; it committed nothing.
		return &brr.Outcome{Result: &brr.Result{Backup: res}, Repo: res.Repo, Source: res.Source}, err
	}
	if res.DryRun {
		// Nothing committed: no snapshot event, nothing to replicate.
		return &brr.Outcome{Result: &brr.Result{Backup: res}, Repo: res.Repo, Source: res.Source}, nil
	}
	return &brr.Outcome{
		Result:   &brr.Result{Backup: res},
		Repo:     res.Repo,
		Source:   res.Source,
		Snapshot: res.Snapshot,
		Events:   []*brr.Event{snapshotEvent(brr.StatusCommitted, publicSnapshot(res.Repo, sn))},
		Jobs:     e.policyJobs(job.Pool, res.Repo, []string{res.Snapshot}),
	}, nil
}

// backup is Backup, which also returns the snapshot committed (nil for a dry run). A job
// that names a source runs its hooks around the backup: a failing before hook fails the
// job before anything is read; the after hook runs whatever the outcome, and its failure
// after a snapshot committed is a warning, not a failure.
func (e *Engine) backup(ctx context.Context, jobID string, a brr.BackupJob, progress func(brr.Progress)) (*brr.BackupResult, *repo.Snapshot, error) {
	if err := a.Validate(); err != nil {
		return nil, nil, brr.Permanent(err)
	}
	a, src, err := e.resolveSource(a)
	if err != nil {
		return nil, nil, err
	}
	if src == nil || a.DryRun || src.Before == "" && src.After == "" {
		res, sn, err := e.backupSource(ctx, jobID, a, src, progress)
		if res != nil && src != nil {
			res.SourceName = src.Name
		}
		return res, sn, err
	}
	env := hookEnv{jobID: jobID, source: sourcePath(a, src)}
	var hooks []brr.HookRun
	var res *brr.BackupResult
	var sn *repo.Snapshot
	if src.Before != "" {
		var run brr.HookRun
		run, err = e.runHook(ctx, src, "before", src.Before, env)
		hooks = append(hooks, run)
	}
	if err == nil {
		res, sn, err = e.backupSource(ctx, jobID, a, src, progress)
	}
	if src.After != "" {
		env.status = string(brr.StatusSucceeded)
		if err != nil {
			env.status, env.errMsg = string(brr.StatusFailed), err.Error()
		}
		if sn != nil {
			env.snapshot = sn.ID.String()
		}
		// It runs even when the job was cancelled: it may undo what before did.
		run, herr := e.runHook(context.WithoutCancel(ctx), src, "after", src.After, env)
		hooks = append(hooks, run)
		if herr != nil && res != nil {
			res.Warnings = append(res.Warnings, herr.Error())
		}
	}
	if res == nil && err != nil && len(hooks) > 0 {
		// The backup failed before it had a result (a failed before hook): the hooks'
		// runs are the result of the failed job.
		res = &brr.BackupResult{Source: sourcePath(a, src)}
		if _, name, rerr := e.Repo(a.Repo); rerr == nil {
			res.Repo = name
		}
	}
	if res != nil {
		res.SourceName, res.Hooks = src.Name, hooks
	}
	return res, sn, err
}

// sourcePath is what the snapshots of a job's source are of: its path, or "source:NAME"
// for a source with none (a command, a database).
func sourcePath(a brr.BackupJob, src *Source) string {
	if a.Path == "" && src != nil {
		return SourceKey(src.Name)
	}
	return a.Path
}

// backupSource backs up what a (resolved, see resolveSource) says: a tree, or the
// command or the database of src.
func (e *Engine) backupSource(ctx context.Context, jobID string, a brr.BackupJob, src *Source, progress func(brr.Progress)) (_ *brr.BackupResult, _ *repo.Snapshot, err error) {
	start := time.Now()
	pr := newReporter(progress)
	defer pr.flush()
	r, repoName, err := e.Repo(a.Repo)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case src != nil && src.Command != "":
		return e.backupCommand(ctx, jobID, a, src, r, repoName, pr, start)
	case src != nil && src.SQLite != "":
		return e.backupSQLite(ctx, jobID, a, src, r, repoName, pr, start)
	}
	source, err := e.checkSource(a.Path)
	if err != nil {
		return nil, nil, err
	}
	if a.DryRun {
		res, err := e.dryRun(ctx, source, a, pr, start)
		if err != nil {
			return nil, nil, err
		}
		res.Repo = repoName
		return res, nil, nil
	}

	ctx, st, err := e.startBackup(ctx, jobID, r, repoName, a.Path, a.Path)
	if err != nil {
		return nil, nil, err
	}
	defer st.release()
	if st.committed != nil {
		return committedResult(repoName, st.committed, time.Since(start)), st.committed, nil
	}
	w := st.w

	scope := CacheScope(r, a.Path)
	var loadCache func() (map[string]state.CachedFile, error)
	if e.Cache != nil {
		loadCache = func() (map[string]state.CachedFile, error) { return e.Cache.LoadFileCache(scope) }
	}
	opts := archiveOptions(a)
	opts.Workers, opts.Limits, opts.LoadCache = e.parallelism(), e.backupLimits(), loadCache
	if e.Cache != nil {
		opts.PutCache = func(put map[string]state.CachedFile) error { return e.Cache.UpdateFileCache(scope, put, nil) }
	}
	arch := archiver.New(w, source, opts)

	stopProgress := e.reportBackupProgress(ctx, source, arch, pr, start)
	ar, err := arch.Run(ctx)
	stopProgress()
	if err != nil {
		return nil, nil, fmt.Errorf("back up %s: %w", a.Path, err)
	}
	sn := &repo.Snapshot{
		Time:       e.now().UTC(),
		Source:     a.Path,
		Tags:       a.Tags,
		Tree:       ar.Tree,
		Files:      ar.Files,
		Dirs:       ar.Dirs,
		Bytes:      ar.Bytes,
		BlobsAdded: ar.BlobsAdded,
		BytesAdded: ar.BytesAdded,
	}
	if err := st.commit(ctx, sn); err != nil {
		return nil, nil, err
	}

	res := committedResult(repoName, sn, time.Since(start))
	res.FilesNew = ar.FilesNew
	res.FilesChanged = ar.FilesChanged
	res.FilesUnchanged = ar.FilesUnchanged
	res.BytesRead = ar.BytesRead
	res.FilesExcluded = ar.FilesExcluded
	res.DirsExcluded = ar.DirsExcluded
	res.BytesExcluded = ar.BytesExcluded
	res.Warnings = ar.Warnings

	if e.Cache != nil {
		if err := e.Cache.UpdateFileCache(scope, ar.CachePut, ar.CacheDelete); err != nil {
			// The snapshot is committed; a stale cache only costs reading files again.
			res.Warnings = append(res.Warnings, fmt.Sprintf("update file cache: %v (the next backup reads every file again)", err))
		}
	}
	return res, sn, nil
}

// archiveOptions are the archiver's options for what the job leaves out. Every backup
// reads the .brrignore files of its tree.
func archiveOptions(a brr.BackupJob) archiver.Options {
	return archiver.Options{
		Excludes:          a.Excludes,
		IgnoreFile:        excludes.DefaultIgnoreFile,
		ExcludeCaches:     a.ExcludeCaches,
		OneFileSystem:     a.OneFileSystem,
		ExcludeLargerThan: a.ExcludeLargerThan,
	}
}

func committedResult(repoName string, sn *repo.Snapshot, took time.Duration) *brr.BackupResult {
	res := &brr.BackupResult{
		Snapshot:   sn.ID.String(),
		Repo:       repoName,
		Source:     sn.Source,
		Files:      sn.Files,
		Dirs:       sn.Dirs,
		Bytes:      sn.Bytes,
		BlobsAdded: sn.BlobsAdded,
		BytesAdded: sn.BytesAdded,
		DurationMS: took.Milliseconds(),
	}
	if sn.Parent != nil {
		res.Parent = sn.Parent.String()
	}
	return res
}

// checkSource checks that the source is inside the allowed roots and is a directory, and
// returns it with its symlinks resolved.
func (e *Engine) checkSource(p string) (string, error) {
	resolved, err := e.resolveAllowed("backup source", p)
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(resolved)
	switch {
	case err != nil && os.IsNotExist(err):
		return "", brr.Permanent(fmt.Errorf("backup source %q does not exist on host %s; check the path", p, e.Host))
	case err != nil:
		return "", fmt.Errorf("stat backup source %s: %w", p, err)
	case !fi.IsDir():
		return "", brr.Permanent(fmt.Errorf("backup source %q is not a directory; back up the directory that holds it", p))
	}
	return resolved, nil
}

// scanAfter is how long a backup runs before a scanner that only stats the tree counts
// its totals: a short backup is over before it would be useful, and on a cold cache its
// stats would compete with the backup's own.
const scanAfter = time.Second

// reportBackupProgress reports the backup's progress every progressEvery until the
// returned function is called. The totals are what the backup has listed so far until a
// scanner, started after scanAfter, has counted the whole tree.
func (e *Engine) reportBackupProgress(ctx context.Context, root string, arch *archiver.Archiver, pr *reporter, start time.Time) func() {
	if pr == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var totalFiles, totalBytes atomic.Int64
	var scanned atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTimer(scanAfter)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var files, bytes int64
		_ = filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if d.Type().IsRegular() {
				if fi, err := d.Info(); err == nil {
					files++
					bytes += fi.Size()
				}
			}
			return nil
		})
		if ctx.Err() == nil {
			totalFiles.Store(files)
			totalBytes.Store(bytes)
			scanned.Store(true)
		}
	}()
	stopTick := pr.tick(ctx, func() brr.Progress {
		s := arch.Progress()
		p := brr.Progress{
			Phase:      "backup",
			Files:      s.FilesDone,
			Bytes:      s.BytesDone,
			TotalFiles: s.Files,
			TotalBytes: s.Bytes,
		}
		final := scanned.Load()
		if final {
			p.TotalFiles, p.TotalBytes = totalFiles.Load(), totalBytes.Load()
		}
		fillRate(&p, start, final)
		return p
	})
	return func() {
		stopTick()
		cancel()
		wg.Wait()
	}
}
