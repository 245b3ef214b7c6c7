package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
)

// BlobMap remembers, per pair of repositories, which target blob holds the content of a
// source blob, so that a replication neither reads nor sends again what it copied before;
// and where each replication target stands after a replicate job. *state.DB implements it.
type BlobMap interface {
	// LookupBlobMap returns the target ids of those of ids the map of scope knows.
	LookupBlobMap(scope string, ids [][32]byte) (map[[32]byte][32]byte, error)
	// UpdateBlobMap records pairs of source and target ids whose target blob is durable.
	UpdateBlobMap(scope string, pairs map[[32]byte][32]byte) error
	// PutReplicationCursor records where a target stands after a replicate job.
	PutReplicationCursor(c state.ReplicationCursor) error
}

// ReplicaLeaseKey is the lease key that serializes replications into one repository:
// two at once would each send the blobs the other is sending.
func ReplicaLeaseKey(to *repo.Repository) string { return "replica-" + to.ID() }

// BlobMapScope is the blob map scope of replication from one repository to another.
func BlobMapScope(from, to *repo.Repository) string { return from.ID() + "\x00" + to.ID() }

// Replicate copies snapshots from repository a.From to a.To: the one a.Snapshot names, or
// with "all" every snapshot of the source (of a.Source when set) that the target lacks,
// oldest first. Only blobs the target lacks are sent: each is read from the source (which
// checks it against its id), named and stored with the target's key, so that the target's
// dedup holds. Trees are rewritten with the target's ids. A copied snapshot keeps its id,
// and is saved last, after a Flush of the target: its commit point. The result says what
// was sent and how far the target is behind the source afterwards.
func (e *Engine) Replicate(ctx context.Context, jobID string, a brr.ReplicateJob, progress func(brr.Progress)) (*brr.ReplicateResult, error) {
	start := time.Now()
	pr := newReporter(progress)
	defer pr.flush()
	if err := a.Validate(); err != nil {
		return nil, brr.Permanent(err)
	}
	src, fromName, err := e.Repo(a.From)
	if err != nil {
		return nil, err
	}
	dst, toName, err := e.Repo(a.To)
	if err != nil {
		return nil, err
	}
	if fromName == toName || src.Backend().Location() == dst.Backend().Location() {
		return nil, brr.Permanent(fmt.Errorf("replicate from repo %s to repo %s: both are %s; replicate to another repository",
			fromName, toName, dst.Backend().Location()))
	}

	// Read the index files other workers wrote since this one loaded the source's index:
	// the snapshot to copy was most likely backed up by another worker.
	if err := src.ReloadIndex(ctx); err != nil {
		return nil, fmt.Errorf("read the index of repo %s: %w", fromName, err)
	}
	all, err := src.Snapshots(ctx)
	if err != nil {
		return nil, damagedIsPermanent(fmt.Errorf("list snapshots of repo %s: %w", fromName, err))
	}
	todo, err := pickSnapshots(all, fromName, a)
	if err != nil {
		return nil, err
	}
	ctx, release, err := e.lease(ctx, ReplicaLeaseKey(dst))
	if err != nil {
		return nil, fmt.Errorf("take lease on repo %s: %w", toName, err)
	}
	defer release()
	ids, err := dst.SnapshotIDs(ctx)
	if err != nil {
		return nil, fmt.Errorf("list snapshots of repo %s: %w", toName, err)
	}
	has := make(map[repo.ID]bool, len(ids))
	for _, id := range ids {
		has[id] = true
	}

	res := &brr.ReplicateResult{From: fromName, To: toName, Snapshots: []string{}}
	var missing []*repo.Snapshot
	for _, sn := range todo {
		if has[sn.ID] {
			res.Present++
		} else {
			missing = append(missing, sn)
		}
	}
	if len(missing) > 0 {
		rp := e.newReplicator(src, dst, pr)
		err := rp.copyAll(ctx, jobID, toName, missing, func(sn *repo.Snapshot) {
			has[sn.ID] = true
			res.Snapshots = append(res.Snapshots, sn.ID.String())
			res.Copied = append(res.Copied, publicSnapshot(toName, sn))
		})
		res.BlobsSent, res.BytesSent, res.BlobsPresent = rp.sent, rp.sentBytes, rp.present
		res.Warnings = rp.warnings
		if err != nil {
			res.DurationMS = time.Since(start).Milliseconds()
			return res, damagedIsPermanent(fmt.Errorf("replicate from repo %s to repo %s: %w", fromName, toName, err))
		}
	}

	now := e.now().UTC()
	res.Lag = measureLag(all, has, now)
	res.DurationMS = time.Since(start).Milliseconds()
	if e.BlobMap != nil {
		err := e.BlobMap.PutReplicationCursor(state.ReplicationCursor{
			From: fromName, To: toName, LastRun: now, Copied: res.Snapshots, Present: res.Present,
			BlobsSent: res.BlobsSent, BytesSent: res.BytesSent, Lag: res.Lag,
		})
		if err != nil {
			res.Warnings = append(res.Warnings, fmt.Sprintf("record the lag of repo %s: %v", toName, err))
		}
	}
	return res, nil
}

// runReplicate runs a replicate job. It announces replication.started at once and a
// replication.progress with each progress report; its outcome states
// replication.completed, a snapshot.committed for each snapshot copied (as the target
// lists it) and the replicate jobs the replication policy sets off from the target, or
// replication.failed with what was sent before the error.
func (e *Engine) runReplicate(ctx context.Context, job *brr.Job, a brr.ReplicateJob, rep brr.Reporter) (*brr.Outcome, error) {
	var progress func(brr.Progress)
	if rep != nil {
		rep.Announce(replicationEvent(a, brr.StatusStarted, nil))
		progress = func(p brr.Progress) {
			rep.Progress(p)
			ev := replicationEvent(a, brr.StatusProgress, nil)
			ev.Progress = &p
			rep.Announce(ev)
		}
	}
	res, err := e.Replicate(ctx, job.ID, a, progress)
	out := &brr.Outcome{}
	if res != nil {
		out.Result = &brr.Result{Replicate: res}
	}
	if err != nil {
		ev := replicationEvent(a, brr.StatusFailed, res)
		ev.Error = err.Error()
		out.Events = []*brr.Event{ev}
		return out, err
	}
	out.Events = []*brr.Event{replicationEvent(a, brr.StatusCompleted, res)}
	for _, sn := range res.Copied {
		out.Events = append(out.Events, snapshotEvent(brr.StatusCommitted, sn))
	}
	out.Jobs = e.policyJobs(job.Pool, res.To, res.Snapshots)
	return out, nil
}

// replicationEvent is a replication event of status about the replicate job a; r, when
// not nil, says what the job did. The target is the event's repo; its snapshot is the one
// the job names, or copied when it copied one.
func replicationEvent(a brr.ReplicateJob, status brr.Status, r *brr.ReplicateResult) *brr.Event {
	e := &brr.Event{Type: brr.EventReplication, Status: status, Source: a.Source}
	if a.Snapshot != "latest" && a.Snapshot != "all" {
		e.Snapshot = a.Snapshot
	}
	info := &brr.ReplicationInfo{From: a.From, To: a.To}
	if r != nil {
		info.From, info.To = r.From, r.To
		info.Snapshots = r.Snapshots
		info.BlobsSent, info.BytesSent = r.BlobsSent, r.BytesSent
		info.DurationMS = r.DurationMS
		if status == brr.StatusCompleted {
			lag := r.Lag
			info.Lag = &lag
		}
		if len(r.Snapshots) == 1 {
			e.Snapshot = r.Snapshots[0]
		}
	}
	e.Repo = info.To
	e.Replication = info
	return e
}

// damagedIsPermanent marks err permanent when it is about damaged data, which reading
// again will not mend, and says how to find the rest of the damage.
func damagedIsPermanent(err error) error {
	if !errors.Is(err, repo.ErrDamaged) {
		return err
	}
	return brr.Permanent(fmt.Errorf("%w; `brr verify --read-data --repo NAME` lists all the damage of the repo named here", err))
}

// pickSnapshots returns the snapshots of the source (all, oldest first) that a asks for.
func pickSnapshots(all []*repo.Snapshot, fromName string, a brr.ReplicateJob) ([]*repo.Snapshot, error) {
	var out []*repo.Snapshot
	switch a.Snapshot {
	case "all", "latest":
		for _, sn := range all {
			if a.Source == "" || sn.Source == a.Source {
				out = append(out, sn)
			}
		}
		if a.Snapshot == "latest" && len(out) > 0 {
			out = out[len(out)-1:]
		}
	default:
		ref := strings.ToLower(a.Snapshot)
		for _, sn := range all {
			if strings.HasPrefix(sn.ID.String(), ref) {
				out = append(out, sn)
			}
		}
		if len(out) > 1 {
			return nil, brr.Permanent(fmt.Errorf("snapshot prefix %s matches %d snapshots in repo %s; give more characters", ref, len(out), fromName))
		}
	}
	if len(out) == 0 && a.Snapshot != "all" {
		what := fmt.Sprintf("snapshot %q", a.Snapshot)
		if a.Source != "" {
			what += fmt.Sprintf(" of %q", a.Source)
		}
		return nil, brr.Permanent(fmt.Errorf("no %s in repo %s: %w; list the snapshots with `brr snapshots --repo %s`", what, fromName, brr.ErrNotFound, fromName))
	}
	return out, nil
}

// measureLag says how far a target that has the snapshots in has is behind a source
// with the snapshots all.
func measureLag(all []*repo.Snapshot, has map[repo.ID]bool, now time.Time) brr.ReplicationLag {
	lag := brr.ReplicationLag{Measured: now}
	for _, sn := range all {
		if has[sn.ID] {
			continue
		}
		lag.Behind++
		if lag.Oldest == nil || sn.Time.Before(*lag.Oldest) {
			t := sn.Time
			lag.Oldest = &t
		}
	}
	if lag.Oldest != nil {
		lag.AgeSeconds = max(now.Sub(*lag.Oldest).Seconds(), 0)
	}
	return lag
}
