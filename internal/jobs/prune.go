package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/retention"
)

// RepoLeaseKey is the lease key that gives one job at a time a repository to itself:
// prune holds it from its decisions to its last deletion.
func RepoLeaseKey(r *repo.Repository) string {
	return "repo-" + r.ID()
}

// Prune removes the snapshots the retention policy does not keep, then the data no
// snapshot needs: the job's policy, else the repo's in Retention, else none (every
// snapshot is kept and only unreferenced data goes). A snapshot pinned by a recovery
// point is always kept. Data is deleted in two phases: packs no snapshot needs are
// condemned now and deleted by a later prune once PruneGrace has passed, so that a
// backup running now never loses what it wrote (see repo.Repository.GC). It holds the
// repo's lease throughout. With DryRun it decides and reports, and changes nothing; it
// takes no lease, so that it answers while another prune runs. A prune delivered again
// decides again, from what the repository holds then.
//
// A repo opened append-only (repo.Options.AppendOnly) is not pruned: the job fails at
// once, before it takes the lease or reads anything, with a permanent error wrapping
// repo.ErrAppendOnly that says where to run it instead. A dry run works.
func (e *Engine) Prune(ctx context.Context, jobID string, a brr.PruneJob, progress func(brr.Progress)) (*brr.PruneResult, error) {
	start := time.Now()
	pr := newReporter(progress)
	defer pr.flush()
	r, repoName, err := e.Repo(a.Repo)
	if err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, brr.Permanent(err)
	}
	if r.AppendOnly() && !a.DryRun {
		return nil, brr.Permanent(fmt.Errorf("prune repo %s: %w: prune removes snapshots and deletes data, which this worker never does here; "+
			"run the prune from a worker whose config does not set append_only for repo %s and whose storage credential may delete (a dry run works here)",
			repoName, repo.ErrAppendOnly, repoName))
	}
	if !a.DryRun {
		leaseCtx, release, err := e.lease(ctx, RepoLeaseKey(r))
		if err != nil {
			return nil, fmt.Errorf("take lease on repo %s: %w", repoName, err)
		}
		defer release()
		ctx = leaseCtx
	}

	policy := e.Retention[repoName]
	if a.Policy != nil {
		policy = *a.Policy
	}
	sns, err := r.Snapshots(ctx)
	if err != nil {
		return nil, fmt.Errorf("list snapshots of repo %s: %w", repoName, err)
	}
	pins, err := r.Pins(ctx)
	if err != nil {
		return nil, fmt.Errorf("list recovery points of repo %s (prune does not go on without them, as it cannot tell what they pin): %w", repoName, err)
	}
	pinned := make(map[repo.ID][]string)
	for _, p := range pins {
		pinned[p.Snapshot] = append(pinned[p.Snapshot], p.Label)
	}
	in := make([]retention.Snapshot, len(sns))
	byID := make(map[string]*repo.Snapshot, len(sns))
	for i, sn := range sns {
		id := sn.ID.String()
		byID[id] = sn
		in[i] = retention.Snapshot{ID: id, Time: sn.Time, Host: sn.Host, Source: sn.Source, Tags: sn.Tags, Pins: pinned[sn.ID]}
	}
	now := e.now()
	res := &brr.PruneResult{Repo: repoName, DryRun: a.DryRun, Decisions: retention.Apply(in, policy, now), Removed: []string{}}
	for _, d := range res.Decisions {
		if d.Keep {
			res.Kept++
			continue
		}
		res.Removed = append(res.Removed, d.ID)
	}

	if !a.DryRun {
		for i, id := range res.Removed {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			if err := r.RemoveSnapshot(ctx, byID[id].ID); err != nil {
				return nil, fmt.Errorf("remove snapshot %s of repo %s: %w", byID[id].ID.Short(), repoName, err)
			}
			pr.report(brr.Progress{Phase: "remove snapshots", Files: int64(i + 1), TotalFiles: int64(len(res.Removed))})
		}
	}

	opts := repo.GCOptions{Grace: e.PruneGrace, DryRun: a.DryRun, Now: e.Now}
	if a.DryRun {
		// What the data side would free once the snapshots are gone.
		for _, id := range res.Removed {
			opts.Exclude = append(opts.Exclude, byID[id].ID)
		}
	}
	if pr != nil {
		opts.Progress = func(p repo.GCProgress) {
			pr.report(brr.Progress{Phase: p.Phase, Files: p.Done, TotalFiles: p.Total})
		}
	}
	rep, err := r.GC(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("collect unused data of repo %s: %w", repoName, err)
	}
	res.PacksDeleted = rep.PacksDeleted
	res.PacksRepacked = rep.PacksRepacked
	res.PacksCondemned = rep.PacksCondemned
	res.PacksResurrected = rep.PacksResurrected
	res.BlobsRemoved = rep.BlobsRemoved
	res.BytesFreed = rep.BytesFreed
	res.BytesRepacked = rep.BytesRepacked
	res.PendingPacks = rep.PendingPacks
	res.PendingBytes = rep.PendingBytes
	res.Postponed = rep.Postponed
	if !rep.PendingUntil.IsZero() {
		until := rep.PendingUntil.UTC()
		res.PendingUntil = &until
	}
	res.DurationMS = time.Since(start).Milliseconds()
	return res, nil
}

// runPrune runs a prune job; the outcome of one that removed snapshots (not a dry run)
// states a snapshot.removed for each, with what retention knew of it.
func (e *Engine) runPrune(ctx context.Context, job *brr.Job, a brr.PruneJob, rep brr.Reporter) (*brr.Outcome, error) {
	res, err := e.Prune(ctx, job.ID, a, progressOf(rep))
	if res == nil {
		return nil, err
	}
	out := &brr.Outcome{Result: &brr.Result{Prune: res}}
	if err != nil || res.DryRun {
		return out, err
	}
	removed := make(map[string]bool, len(res.Removed))
	for _, id := range res.Removed {
		removed[id] = true
	}
	for _, d := range res.Decisions {
		if removed[d.ID] {
			out.Events = append(out.Events, snapshotEvent(brr.StatusRemoved,
				brr.Snapshot{ID: d.ID, Repo: res.Repo, Time: d.Time, Host: d.Host, Source: d.Source, Tags: d.Tags}))
		}
	}
	return out, nil
}
