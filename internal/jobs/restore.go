package jobs

import (
	"context"
	"errors"
	"fmt"
	"runtime/trace"
	"slices"
	"strings"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/restorer"
)

// Restore writes a snapshot, or the parts of it named in a.Paths, into a.Target. It
// checks every name in the snapshot before writing anything, so a snapshot with an entry
// that would land outside the target is refused as a whole. Files are written in
// parallel, each to a temporary name in its directory and renamed when complete; a file
// that cannot be restored (a damaged blob, an existing file without Overwrite) leaves
// nothing at its name, the others are restored, and the error names every failed file.
//
// When the repository cannot give the snapshot (it cannot be read, it does not have the
// snapshot, or a blob of it is missing or damaged), the restore falls back to each
// replica of the repository (ReplicateTo) in turn, and says so in the result: FellBackFrom,
// FallbackReason and a warning. The replica is asked for the snapshot by the id the
// repository resolved, or, when it could resolve nothing, by the job's reference. What
// the failed attempt restored stays: each of its files was checked against its blob ids
// as it was read, so only the rest comes from the replica, and nothing the failed attempt
// wrote is in the way. Entries that were in the target before the restore are kept unless
// Overwrite, as without a fallback.
//
// A restore stopped midway (its worker drained or died) resumes when its job runs again:
// the restorer keeps a marker named after jobID in the target until it succeeds, and an
// attempt that finds it keeps what the earlier ones restored (see package restorer), and
// says so in a warning.
//
// A job that names a source (SourceName) runs as restoreSource says: it may pipe the
// file of a command source's snapshot into the source's restore_command instead.
func (e *Engine) Restore(ctx context.Context, jobID string, a brr.RestoreJob, progress func(brr.Progress)) (*brr.RestoreResult, error) {
	if a.SourceName != "" {
		return e.restoreSource(ctx, jobID, a, progress)
	}
	start := time.Now()
	ctx, task := trace.NewTask(ctx, "restore")
	defer task.End()
	pr := newReporter(progress)
	defer pr.flush()
	r, repoName, err := e.Repo(a.Repo)
	if err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, brr.Permanent(err)
	}
	target, err := e.resolveAllowed("restore target", a.Target)
	if err != nil {
		return nil, err
	}

	first := e.restoreFrom(ctx, r, repoName, jobID, a, a.Snapshot, target, nil, pr, start)
	replicas := e.replicasOf(repoName)
	if first.unreadable == "" || len(replicas) == 0 || ctx.Err() != nil {
		return first.result(a, start)
	}
	ref := a.Snapshot
	if first.sn != nil {
		ref = first.sn.ID.String()
	}
	var tried []string
	last := first
	for _, name := range replicas {
		r := e.served(name)
		if r == nil {
			continue // dropped since
		}
		att := e.restoreFrom(ctx, r, name, jobID, a, ref, target, last.rs, pr, start)
		if att.unreadable == "" {
			res, err := att.result(a, start)
			if res != nil {
				note := fmt.Sprintf("repo %s could not give snapshot %s (%s); restored from its replica %s", repoName, res.Snapshot, first.unreadable, name)
				if len(tried) > 0 {
					note += " after " + strings.Join(tried, "; ")
				}
				res.FellBackFrom = repoName
				res.FallbackReason = first.unreadable
				res.Warnings = append([]string{note}, res.Warnings...)
			}
			return res, err
		}
		tried = append(tried, fmt.Sprintf("replica %s: %s", name, att.unreadable))
		if att.rs != nil {
			last = att
		}
		if ctx.Err() != nil {
			break
		}
	}
	// Every attempt failed, each with an error: the last one that wrote says what the
	// target holds now.
	// Its error is permanent when entries failed; a cancelled one is not: the job's next
	// attempt resumes what this one wrote.
	res, err := last.result(a, start)
	return res, fmt.Errorf("%w; no replica could give it instead: %s", err, strings.Join(tried, "; "))
}

// runRestore runs a restore job; its outcome states recovery.restored when it succeeded.
func (e *Engine) runRestore(ctx context.Context, job *brr.Job, a brr.RestoreJob, rep brr.Reporter) (*brr.Outcome, error) {
	res, err := e.Restore(ctx, job.ID, a, progressOf(rep))
	if res == nil {
		return nil, err
	}
	source := a.Source
	if a.SourceName != "" {
		// What the named source's snapshots are of: its path, or source:NAME.
		if resolved, src, rerr := e.resolveSource(brr.BackupJob{SourceName: a.SourceName}); rerr == nil {
			source = sourcePath(resolved, src)
		}
	}
	out := &brr.Outcome{Result: &brr.Result{Restore: res}, Source: source}
	if err == nil {
		out.Events = []*brr.Event{{Type: brr.EventRecovery, Status: brr.StatusRestored,
			Repo: res.Repo, Snapshot: res.Snapshot, Source: source, Result: &brr.Result{Restore: res}}}
	}
	return out, err
}

// replicasOf returns the configured replicas of repo name.
func (e *Engine) replicasOf(name string) []string {
	var out []string
	for _, to := range e.replicateTo(name) {
		if e.served(to) != nil && to != name {
			out = append(out, to)
		}
	}
	return out
}

// restoreAttempt is one restore of the snapshot from one repository.
type restoreAttempt struct {
	repoName string
	sn       *repo.Snapshot // nil when the repository could not give it
	pl       *restorer.Plan
	rs       *restorer.Restorer // nil when nothing was written
	err      error
	// unreadable says why the repository could not give the snapshot, when that is why
	// the attempt failed: a replica may give it whole.
	unreadable string
}

// restoreFrom restores the snapshot ref from repository r. With prev, the restorer of an
// attempt that failed, it restores only what prev did not.
func (e *Engine) restoreFrom(ctx context.Context, r *repo.Repository, repoName, jobID string, a brr.RestoreJob, ref, target string,
	prev *restorer.Restorer, pr *reporter, start time.Time) *restoreAttempt {
	att := &restoreAttempt{repoName: repoName}
	// Read the index files other workers wrote, and forget packs a prune deleted, since
	// this worker loaded it.
	// Each phase is a region of the worker's execution trace (BRR_TRACE): the timeline of
	// a restore in docs/performance.md is read from them.
	reg := trace.StartRegion(ctx, "restore: reload index")
	err := r.ReloadIndex(ctx)
	reg.End()
	if err != nil {
		att.err = fmt.Errorf("read the index of repo %s: %w", repoName, err)
		if ctx.Err() == nil {
			att.unreadable = err.Error()
		}
		return att
	}
	reg = trace.StartRegion(ctx, "restore: find snapshot")
	sn, err := r.FindSnapshot(ctx, ref, a.Source, a.AsOf)
	reg.End()
	switch {
	case errors.Is(err, brr.ErrNotFound):
		att.err = brr.Permanent(fmt.Errorf("find snapshot %q in repo %s: %w; list the snapshots with `brr snapshots --repo %s`", ref, repoName, err, repoName))
		att.unreadable = err.Error()
		return att
	case err != nil && ambiguous(ctx, r, ref):
		att.err = brr.Permanent(fmt.Errorf("find snapshot %q in repo %s: %w", ref, repoName, err))
		return att
	case err != nil:
		att.err = fmt.Errorf("find snapshot %q in repo %s: %w", ref, repoName, err)
		if ctx.Err() == nil {
			att.unreadable = err.Error()
		}
		return att
	}
	att.sn = sn
	reg = trace.StartRegion(ctx, "restore: plan")
	pl, err := restorer.NewPlan(ctx, r, sn, a.Paths)
	reg.End()
	if err != nil {
		att.err = err
		if ctx.Err() == nil && (errors.Is(err, repo.ErrDamaged) || errors.Is(err, repo.ErrNotInIndex) || !brr.IsPermanent(err)) {
			att.unreadable = err.Error()
		}
		return att
	}
	if err := restorer.PrepareTarget(target); err != nil {
		att.err = err
		return att
	}

	rs := restorer.New(r, target, restorer.Options{Overwrite: a.Overwrite, Workers: e.parallelism(), Job: jobID})
	if prev != nil {
		pl = rs.Resume(prev, pl)
	}
	att.pl, att.rs = pl, rs
	stop := reportRestoreProgress(ctx, rs, pl, pr, start)
	att.err = rs.Run(ctx, pl)
	stop()
	if n, msgs := rs.Rereads(); n > 0 {
		e.Log.Warn().Str("job_id", jobID).Str("repo", repoName).Int64("blobs", n).Strs("first_reads", msgs).
			Msg("restore: blobs read right only the second time")
	}
	if failures := rs.Failures(); att.err == nil && len(failures) > 0 && rs.LoadFailed() {
		att.unreadable = fmt.Sprintf("%d of %d entries could not be restored from it, first %s", len(failures), pl.Entries(), failures[0])
	}
	return att
}

// ambiguous reports whether ref is an id prefix that matches several snapshots of r: no
// replica should resolve it to one of them instead.
func ambiguous(ctx context.Context, r *repo.Repository, ref string) bool {
	if ref == "latest" || len(ref) == 64 {
		return false
	}
	ids, err := r.MatchSnapshots(ctx, ref)
	return err == nil && len(ids) > 1
}

// result is the job's result and error after this attempt.
func (att *restoreAttempt) result(a brr.RestoreJob, start time.Time) (*brr.RestoreResult, error) {
	rs := att.rs
	if rs == nil {
		return nil, att.err
	}
	st := rs.Progress()
	res := &brr.RestoreResult{
		Snapshot:   att.sn.ID.String(),
		Repo:       att.repoName,
		Target:     a.Target,
		Files:      st.Files,
		Dirs:       st.Dirs,
		Symlinks:   st.Symlinks,
		Bytes:      st.Bytes,
		DurationMS: time.Since(start).Milliseconds(),
	}
	if st.Kept > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("resumed an earlier attempt of this job: %d entries it had restored were kept", st.Kept))
	}
	if n, msgs := rs.Rereads(); n > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d blobs of repo %s were read right only the second time (%s); if that recurs, run brr verify on the repo and check the storage",
			n, att.repoName, strings.Join(msgs, "; ")))
	}
	if att.err != nil {
		return res, att.err
	}
	if failures := rs.Failures(); len(failures) > 0 {
		summary := summarizeFailures(failures)
		msg := strings.Join(summary, "; ")
		if m := rs.Marker(); m != "" {
			msg += fmt.Sprintf("; once that is fixed, a retry of this job (brr dlq retry) resumes it, by the marker %s left in the target (remove it if you give up on this job)", m)
		}
		res.Warnings = append(res.Warnings, summary...)
		// Running the same job again at once would fail the same entries for the same
		// reasons: the failure is permanent, and the message says what to look at.
		return res, brr.Permanent(fmt.Errorf("restore of snapshot %s from repo %s into %s: %d of %d entries failed, the others were restored: %s",
			att.sn.ID.Short(), att.repoName, a.Target, len(failures), att.pl.Entries(), msg))
	}
	return res, nil
}

// summarizeFailures turns the restorer's failures ("/path: reason", one per entry) into a
// few lines a person reads: the entries that exist in the target (a restore into a
// non-empty directory meets thousands) as one line with their count, the first few paths
// and the flag that replaces them; the others one line each, up to shownFailures.
func summarizeFailures(failures []string) []string {
	const shownFailures, shownPaths = 20, 5
	var exist, others []string
	for _, f := range failures {
		if path, _, ok := strings.Cut(f, ": exists in the target"); ok {
			exist = append(exist, path)
			continue
		}
		others = append(others, f)
	}
	var out []string
	if len(exist) > 0 {
		slices.Sort(exist) // restored in parallel, failed in any order
		paths := strings.Join(firstN(exist, shownPaths), ", ")
		if len(exist) > shownPaths {
			paths += fmt.Sprintf(" and %d more", len(exist)-shownPaths)
		}
		out = append(out, fmt.Sprintf("%d entries exist in the target and were left as they are (%s): restore into an empty directory, or with --overwrite (job args: \"overwrite\": true) to replace them", len(exist), paths))
	}
	out = append(out, firstN(others, shownFailures)...)
	if len(others) > shownFailures {
		out = append(out, fmt.Sprintf("and %d more entries failed", len(others)-shownFailures))
	}
	return out
}

// reportRestoreProgress reports the progress of rs restoring pl until the returned func
// is called.
func reportRestoreProgress(ctx context.Context, rs *restorer.Restorer, pl *restorer.Plan, pr *reporter, start time.Time) func() {
	return pr.tick(ctx, func() brr.Progress {
		st := rs.Progress()
		p := brr.Progress{
			Phase:      "restore",
			Files:      st.Files,
			Bytes:      st.BytesDone,
			TotalFiles: int64(pl.Files()),
			TotalBytes: pl.Bytes(),
		}
		fillRate(&p, start, true)
		return p
	})
}
