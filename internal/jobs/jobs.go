// Package jobs is what each job does once a worker has taken it: back a directory tree up
// into a repository, restore a snapshot into a directory, verify a repository, answer a
// ping. It knows files and repositories but no NATS: the consume loop (internal/events)
// decodes a job and calls Engine.Handle, which runs it and states its outcome (the result,
// the events it caused, the jobs it sets off); the loop records, publishes and settles
// that, so the same code runs under the queue, in tests and in benchmarks.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/archiver"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
	"github.com/rs/zerolog"
)

// FileCache remembers, per scope (a repository and a source), what each file looked like
// when it was last backed up and which blobs hold its content, so that an unchanged file is
// not read again. *state.DB implements it.
type FileCache interface {
	LoadFileCache(scope string) (map[string]state.CachedFile, error)
	UpdateFileCache(scope string, put map[string]state.CachedFile, del []string) error
}

// Leaser hands out leases that keep two workers from backing up one source at once.
type Leaser interface {
	// Acquire takes the lease on key and renews it until release is called. The returned
	// context is cancelled if the lease is lost. A lease held elsewhere → an error marked
	// brr.Snooze(err, d) (try later; not a failure).
	Acquire(ctx context.Context, key string) (context.Context, func(), error)
}

// Engine runs jobs against the repositories of one worker. Its fields are set once, by
// cmd/worker or a test, before the first call; its methods are safe for concurrent use.
type Engine struct {
	// Repos are the open repositories, by the name jobs use for them. Once the engine
	// runs, they change only through SetRepo and DropRepo (repos.go).
	Repos map[string]*repo.Repository
	// DefaultRepo is used when a job names no repo.
	DefaultRepo string
	// Cache is the file cache; nil means every file is read on every backup.
	Cache FileCache
	// Leases keeps one backup per source at a time; nil means no leases.
	Leases Leaser
	// AllowedRoots limits sources and restore targets to these directories; empty allows
	// any absolute path.
	AllowedRoots []string
	// Host names this machine in snapshots; Worker names this worker in results.
	Host   string
	Worker string
	// Parallelism bounds the work of a job that is bound by the CPU: files chunked and
	// blobs compressed at once; 0 means runtime.GOMAXPROCS(0)+1. Files are read and
	// written by more goroutines than that, since on a cold cache they mostly wait for the
	// disk.
	Parallelism int
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	// ReplicateTo is the replication policy: repo name → the repos each snapshot committed
	// to it is replicated to, by a replicate job that the committing job sets off. A
	// restore whose repo cannot be read falls back to these.
	ReplicateTo map[string][]string
	// BlobMap remembers which blob of a target repository holds the content of a blob of
	// a source repository, so that a replication does not read again what it sent before;
	// nil means every blob the target may lack is read from the source.
	BlobMap BlobMap
	// Retention is the retention policy of each repo, by name; a prune job may override it.
	Retention map[string]brr.RetentionPolicy
	// PruneGrace is how long prune waits before deleting data it condemned; 0 means
	// repo.DefaultGrace.
	PruneGrace time.Duration
	// ScratchDir is where restore drills restore to (a fresh directory per drill, removed
	// after); empty means the system's temporary directory.
	ScratchDir string
	// KeyDir is where key jobs write the passwords they generate and read the password
	// files they name (key.go); empty means this worker adds no keys.
	KeyDir string
	// KeyUsers, when set, returns for repo the workers of the pool that opened it with
	// each key, by key id, as their heartbeats say: a key job's result marks each key
	// with them (brr.KeyInfo.UsedBy), not only with the key of the worker that ran it.
	KeyUsers func(repo string) map[string][]string
	// Points indexes recovery points; nil means they are only in the repositories.
	Points PointIndex
	// Sources are the named sources of the worker's config, by name (source.go).
	Sources map[string]Source
	// Log hears what the engine does beside jobs' results: the hooks it runs. The zero
	// Logger logs nothing.
	Log zerolog.Logger

	// Refused are the repos of the worker's config that it does not serve, each with why
	// and what to do: a pool of the worker registered the name for another repository. A
	// job on one (named, or its default repo) is snoozed, since another worker of the pool
	// may serve it, until it is RefusedFor old; then it fails. Refused repos are not in
	// Repos.
	Refused map[string]string

	// What all backups running at once share, so that the memory they hold does not grow
	// with the number of jobs: see archiver.Limits.
	limitsOnce sync.Once
	limits     *archiver.Limits

	// reposMu guards Repos, Refused and ReplicateTo once the engine runs (repos.go), and
	// the jobs running and the repositories dropped while they ran.
	reposMu sync.RWMutex
	running int
	retired []*repo.Repository
}

func (e *Engine) now() time.Time {
	if e.Now != nil {
		return e.Now()
	}
	return time.Now()
}

func (e *Engine) backupLimits() *archiver.Limits {
	e.limitsOnce.Do(func() { e.limits = archiver.NewLimits(e.parallelism()) })
	return e.limits
}

func (e *Engine) parallelism() int {
	if e.Parallelism > 0 {
		return e.Parallelism
	}
	return runtime.GOMAXPROCS(0) + 1
}

// Handle runs job and states its outcome: the result, the events it caused and the jobs
// it sets off (see brr.Outcome). rep, when not nil, hears its progress and what it
// announces while it runs. An error marked brr.Permanent will not get better by
// retrying; a job that fails may still return an outcome: a verify that found damage
// returns its report with such an error, a failed replication its replication.failed
// event.
func (e *Engine) Handle(ctx context.Context, job *brr.Job, rep brr.Reporter) (*brr.Outcome, error) {
	if job == nil || job.Args == nil {
		return nil, brr.Permanent(fmt.Errorf("%w: job has no args", brr.ErrInvalid))
	}
	run, ok := kinds[job.Args.Kind()]
	if !ok {
		return nil, brr.Permanent(fmt.Errorf("%w: %q jobs are not run by this worker", brr.ErrUnknownKind, job.Args.Kind()))
	}
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	ctx = context.WithValue(ctx, jobStopKey{}, stop)
	e.jobStarted()
	out, err := run(e, ctx, job, rep)
	e.jobEnded()
	err = stoppedBy(ctx, err)
	var refused *refusedError
	if errors.As(err, &refused) {
		return out, e.refusal(job, refused)
	}
	return out, err
}

// jobStopKey is the context key of the function that stops the job a context is of, with
// a cause (Handle sets it, Engine.lease uses it).
type jobStopKey struct{}

// stoppedBy adds to err, when ctx, the job's, was stopped, what stopped it: a lease lost
// (its key deleted, expired or taken, or renewals failed for its TTL), a cancel request,
// a drain. Without it a job's error would often say only "context canceled". Every cause
// comes from where the job's context is cancelled: the consume loop for a cancel request
// or a drain, the lease itself for a lost lease (see Engine.lease).
func stoppedBy(ctx context.Context, err error) error {
	if err == nil || ctx.Err() == nil {
		return err
	}
	cause := context.Cause(ctx)
	if cause == nil || cause == context.Canceled || strings.Contains(err.Error(), cause.Error()) {
		return err
	}
	return fmt.Errorf("%w (%w)", err, cause)
}

// lease takes the lease on key for the rest of the job ctx is of, and returns the lease's
// context and its release. A lease lost while the job runs stops the whole job, with the
// lease's cause (which names the lease and why it was lost), not only the work under the
// lease's context. Without Leases there is nothing to take.
func (e *Engine) lease(ctx context.Context, key string) (context.Context, func(), error) {
	if e.Leases == nil {
		return ctx, func() {}, nil
	}
	lctx, release, err := e.Leases.Acquire(ctx, key)
	if err != nil {
		return ctx, nil, err
	}
	stopJob, ok := ctx.Value(jobStopKey{}).(context.CancelCauseFunc)
	if !ok {
		return lctx, release, nil
	}
	// Also when ctx itself ends (the lease's context ends with it): stopping a stopped
	// job does nothing. The job may end on the lease's context before the AfterFunc runs:
	// release stops the job first, before its own cancel of the lease's context.
	unhook := context.AfterFunc(lctx, func() { stopJob(context.Cause(lctx)) })
	return lctx, func() {
		unhook()
		if lctx.Err() != nil {
			stopJob(context.Cause(lctx))
		}
		release()
	}, nil
}

// RefusedFor is how long a job on a repo that this worker refuses is snoozed, waiting for
// a worker of its pool that serves the repo, before it fails.
const RefusedFor = time.Hour

// refusedError says that this worker refuses the repo or the source a job needs.
type refusedError struct {
	what string // "repo NAME" or "source NAME"
	why  string
}

func (e *refusedError) Error() string { return e.why }

// refusal is the error of job, which needs a repo this worker refuses: a snooze, longer as
// the job ages (1 s, up to a minute), until the job is RefusedFor old; then, or when its
// age is not known, a permanent failure that says no worker of the pool serves the repo.
func (e *Engine) refusal(job *brr.Job, refused *refusedError) error {
	age := e.now().Sub(job.Created)
	if job.Created.IsZero() || age >= RefusedFor {
		waited := fmt.Sprintf("created %s, waited %s", job.Created.UTC().Format(time.RFC3339), RefusedFor)
		if job.Created.IsZero() {
			waited = "the job has no creation time, so it cannot wait for one"
		}
		what := refused.what
		if strings.HasPrefix(what, "repo ") {
			what += " with the pool's id"
		}
		return brr.Permanent(fmt.Errorf("no worker of pool %s serves %s (%s); worker %s refuses it: %w",
			job.Pool, what, waited, e.Worker, refused))
	}
	return brr.Snooze(fmt.Errorf("worker %s refuses %s; another worker of pool %s may serve it: %w", e.Worker, refused.what, job.Pool, refused),
		min(max(age/10, time.Second), time.Minute))
}

// run runs one job and states its outcome.
type run func(e *Engine, ctx context.Context, job *brr.Job, rep brr.Reporter) (*brr.Outcome, error)

// kinds is what runs each kind of job: each kind's run function is in the kind's file.
// A new kind adds its line here.
var kinds = map[brr.Kind]run{
	brr.KindBackup:     runArgs((*Engine).runBackup),
	brr.KindRestore:    runArgs((*Engine).runRestore),
	brr.KindVerify:     runArgs((*Engine).runVerify),
	brr.KindReplicate:  runArgs((*Engine).runReplicate),
	brr.KindPrune:      runArgs((*Engine).runPrune),
	brr.KindCheckpoint: runArgs((*Engine).runCheckpoint),
	brr.KindDrill:      runArgs((*Engine).runDrill),
	brr.KindKey:        runArgs((*Engine).runKey),
	brr.KindPing:       runArgs((*Engine).runPing),
}

// runArgs adapts the run function of a kind whose arguments are A: DecodeJob gives
// pointers, values are accepted too.
func runArgs[A brr.JobArgs](f func(e *Engine, ctx context.Context, job *brr.Job, a A, rep brr.Reporter) (*brr.Outcome, error)) run {
	return func(e *Engine, ctx context.Context, job *brr.Job, rep brr.Reporter) (*brr.Outcome, error) {
		switch a := any(job.Args).(type) {
		case A:
			return f(e, ctx, job, a, rep)
		case *A:
			return f(e, ctx, job, *a, rep)
		}
		return nil, brr.Permanent(fmt.Errorf("%w: %s job %s has %T args", brr.ErrInvalid, job.Args.Kind(), job.ID, job.Args))
	}
}

// progressOf is the function a job reports its progress to: nil without a reporter, so
// that the job does not work out progress nobody hears.
func progressOf(rep brr.Reporter) func(brr.Progress) {
	if rep == nil {
		return nil
	}
	return rep.Progress
}

// runPing runs a ping job.
func (e *Engine) runPing(ctx context.Context, _ *brr.Job, a brr.PingJob, _ brr.Reporter) (*brr.Outcome, error) {
	res, err := e.Ping(ctx, a)
	if err != nil {
		return nil, err
	}
	return &brr.Outcome{Result: &brr.Result{Ping: res}}, nil
}

// Ping waits DelayMS (or until ctx is done) and names the worker that answered.
func (e *Engine) Ping(ctx context.Context, a brr.PingJob) (*brr.PingResult, error) {
	if a.DelayMS > 0 {
		t := time.NewTimer(time.Duration(a.DelayMS) * time.Millisecond)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	return &brr.PingResult{Worker: e.Worker}, nil
}

// Snapshots lists the snapshots of a repository, oldest first; with source set, only
// those of that source path.
func (e *Engine) Snapshots(ctx context.Context, repoName, source string) ([]brr.Snapshot, error) {
	r, name, err := e.Repo(repoName)
	if err != nil {
		return nil, err
	}
	sns, err := r.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("list snapshots of repo %s: %w", name, err)
	}
	out := make([]brr.Snapshot, 0, len(sns))
	for _, sn := range sns {
		if source != "" && sn.Source != source {
			continue
		}
		out = append(out, publicSnapshot(name, sn))
	}
	return out, nil
}

// publicSnapshot is sn as `brr snapshots` lists it.
func publicSnapshot(repoName string, sn *repo.Snapshot) brr.Snapshot {
	s := brr.Snapshot{
		ID:         sn.ID.String(),
		Repo:       repoName,
		Time:       sn.Time,
		Host:       sn.Host,
		Source:     sn.Source,
		Tags:       sn.Tags,
		JobID:      sn.JobID,
		Files:      sn.Files,
		Bytes:      sn.Bytes,
		BytesAdded: sn.BytesAdded,
	}
	if sn.Parent != nil {
		s.Parent = sn.Parent.String()
	}
	return s
}

// snapshotEvent is the snapshot.<status> event (committed, removed) about s.
func snapshotEvent(status brr.Status, s brr.Snapshot) *brr.Event {
	return &brr.Event{Type: brr.EventSnapshot, Status: status, Repo: s.Repo, Source: s.Source, Snapshot: s.ID, SnapshotInfo: &s}
}

// resolveAllowed returns p with the symlinks of its existing part resolved, and an error
// marked Permanent when the result lies outside AllowedRoots. what names p in the message.
func (e *Engine) resolveAllowed(what, p string) (string, error) {
	if !filepath.IsAbs(p) {
		return "", brr.Permanent(fmt.Errorf("%s %q is not an absolute path; give the full path", what, p))
	}
	resolved, err := resolveExisting(filepath.Clean(p))
	if err != nil {
		return "", fmt.Errorf("resolve %s %q: %w", what, p, err)
	}
	if len(e.AllowedRoots) == 0 {
		return resolved, nil
	}
	for _, root := range e.AllowedRoots {
		rr, err := resolveExisting(filepath.Clean(root))
		if err != nil {
			continue
		}
		if within(rr, resolved) {
			return resolved, nil
		}
	}
	return "", brr.Permanent(fmt.Errorf("%s %q (resolved to %q) is outside the allowed roots (%s); use a path inside them or add a root to allowed_roots in the worker's config",
		what, p, resolved, strings.Join(e.AllowedRoots, ", ")))
}

// resolveExisting resolves the symlinks of the longest existing prefix of the clean,
// absolute path p and appends the rest unchanged.
func resolveExisting(p string) (string, error) {
	rest := ""
	cur := p
	for {
		r, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(r, rest), nil
		}
		if !os.IsNotExist(err) {
			return "", err
		}
		if _, lerr := os.Lstat(cur); lerr == nil {
			return "", fmt.Errorf("%s is a symlink to a path that does not exist", cur)
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p, nil
		}
		rest = filepath.Join(filepath.Base(cur), rest)
		cur = parent
	}
}

func within(root, p string) bool {
	return root == "/" || p == root || strings.HasPrefix(p, root+"/")
}
