package jobs

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
)

// PointIndex indexes recovery points outside the repositories, by the names jobs use for
// the repos, so that a worker can answer for a repository it cannot read with what it
// last saw there. *state.DB implements it.
type PointIndex interface {
	PutPoint(p brr.RecoveryPoint) error
	DeletePoint(repo, label string) error
	// ReplacePoints makes points the whole index of repo.
	ReplacePoints(repo string, points []brr.RecoveryPoint) error
	Points(repo string) ([]brr.RecoveryPoint, error)
}

// Checkpoint creates a recovery point, a label that pins a snapshot so that retention
// never removes it, or with a.Remove deletes one. The point is stored in the repository,
// where every worker sees it, and indexed in Points. A job delivered again succeeds with
// the point it made, even when "latest" names another snapshot by then; a label that
// pins another snapshot is a permanent error.
func (e *Engine) Checkpoint(ctx context.Context, job *brr.Job, a brr.CheckpointJob) (*brr.CheckpointResult, error) {
	r, repoName, err := e.Repo(a.Repo)
	if err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, brr.Permanent(err)
	}
	var jobID, by string
	if job != nil {
		jobID, by = job.ID, job.By
	}
	if a.Remove {
		return e.removePoint(ctx, r, repoName, a.Label)
	}

	old, err := r.Pin(ctx, a.Label)
	switch {
	case err == nil && jobID != "" && old.JobID == jobID:
		return e.indexPoint(ctx, r, repoName, old)
	case err != nil && !errors.Is(err, brr.ErrNotFound):
		return nil, fmt.Errorf("read recovery point %q of repo %s: %w", a.Label, repoName, err)
	}
	sn, err := r.FindSnapshot(ctx, a.Snapshot, a.Source, nil)
	if err != nil {
		if errors.Is(err, brr.ErrNotFound) {
			return nil, brr.Permanent(fmt.Errorf("find snapshot %q in repo %s: %w; list the snapshots with `brr snapshots --repo %s`", a.Snapshot, repoName, err, repoName))
		}
		return nil, fmt.Errorf("find snapshot %q in repo %s: %w", a.Snapshot, repoName, err)
	}
	pin := repo.Pin{Label: a.Label, Snapshot: sn.ID, Reason: a.Reason, By: by, Time: e.now(), JobID: jobID}
	if err := r.SavePin(ctx, pin); err != nil {
		if errors.Is(err, brr.ErrNotFound) {
			// The snapshot was removed since it was found.
			return nil, brr.Permanent(fmt.Errorf("pin snapshot %s in repo %s: %w", sn.ID.Short(), repoName, err))
		}
		return nil, fmt.Errorf("pin snapshot %s in repo %s: %w", sn.ID.Short(), repoName, err)
	}
	// The pin stored: the first one, when this label pinned this snapshot already.
	stored, err := r.Pin(ctx, a.Label)
	if err != nil {
		return nil, fmt.Errorf("read back recovery point %q of repo %s: %w", a.Label, repoName, err)
	}
	return e.indexPoint(ctx, r, repoName, stored)
}

// runCheckpoint runs a checkpoint job; its outcome states recovery.point_created, or
// point_removed.
func (e *Engine) runCheckpoint(ctx context.Context, job *brr.Job, a brr.CheckpointJob, _ brr.Reporter) (*brr.Outcome, error) {
	res, err := e.Checkpoint(ctx, job, a)
	if res == nil {
		return nil, err
	}
	out := &brr.Outcome{Result: &brr.Result{Checkpoint: res}}
	if err == nil {
		status := brr.StatusPointCreated
		if res.Removed {
			status = brr.StatusPointRemoved
		}
		out.Events = []*brr.Event{{Type: brr.EventRecovery, Status: status,
			Repo: res.Point.Repo, Snapshot: res.Point.Snapshot, Source: res.Point.Source, Result: &brr.Result{Checkpoint: res}}}
	}
	return out, err
}

// indexPoint puts the point p into the index and returns it as a result.
func (e *Engine) indexPoint(ctx context.Context, r *repo.Repository, repoName string, p *repo.Pin) (*brr.CheckpointResult, error) {
	pt := recoveryPoint(repoName, *p, snapshotOf(ctx, r, p.Snapshot))
	if e.Points != nil {
		if err := e.Points.PutPoint(pt); err != nil {
			return nil, fmt.Errorf("index recovery point %q of repo %s: %w", p.Label, repoName, err)
		}
	}
	return &brr.CheckpointResult{Point: pt}, nil
}

// removePoint deletes the point label from r and from the index. A point that is in
// the index but no longer in the repository was removed by an earlier delivery of the
// same job, which did not get to the end: that succeeds.
func (e *Engine) removePoint(ctx context.Context, r *repo.Repository, repoName, label string) (*brr.CheckpointResult, error) {
	if r.AppendOnly() {
		return nil, brr.Permanent(fmt.Errorf("remove recovery point %q of repo %s: %w: removing a recovery point is the first step of deleting its snapshot, which this worker never does here; "+
			"remove it from a worker whose config does not set append_only for repo %s and whose storage credential may delete",
			label, repoName, repo.ErrAppendOnly, repoName))
	}
	p, err := r.Pin(ctx, label)
	if errors.Is(err, brr.ErrNotFound) {
		if pt, ok := e.indexedPoint(repoName, label); ok {
			if err := e.Points.DeletePoint(repoName, label); err != nil {
				return nil, fmt.Errorf("unindex recovery point %q of repo %s: %w", label, repoName, err)
			}
			return &brr.CheckpointResult{Point: pt, Removed: true}, nil
		}
		return nil, brr.Permanent(fmt.Errorf("recovery point %q is not in repo %s; list the points with `brr checkpoints --repo %s`", label, repoName, repoName))
	}
	if err != nil {
		return nil, fmt.Errorf("read recovery point %q of repo %s: %w", label, repoName, err)
	}
	pt := recoveryPoint(repoName, *p, snapshotOf(ctx, r, p.Snapshot))
	if e.Points != nil {
		// Indexed again first, so that a delivery after a crash between the two steps
		// finds it in the index and succeeds.
		if err := e.Points.PutPoint(pt); err != nil {
			return nil, fmt.Errorf("index recovery point %q of repo %s: %w", label, repoName, err)
		}
	}
	if err := r.RemovePin(ctx, label); err != nil && !errors.Is(err, brr.ErrNotFound) {
		return nil, fmt.Errorf("remove recovery point %q of repo %s: %w", label, repoName, err)
	}
	if e.Points != nil {
		if err := e.Points.DeletePoint(repoName, label); err != nil {
			return nil, fmt.Errorf("unindex recovery point %q of repo %s: %w", label, repoName, err)
		}
	}
	return &brr.CheckpointResult{Point: pt, Removed: true}, nil
}

// indexedPoint returns the point label of repoName from the index, if there is one.
func (e *Engine) indexedPoint(repoName, label string) (brr.RecoveryPoint, bool) {
	if e.Points == nil {
		return brr.RecoveryPoint{}, false
	}
	pts, err := e.Points.Points(repoName)
	if err != nil {
		return brr.RecoveryPoint{}, false
	}
	for _, pt := range pts {
		if pt.Label == label {
			return pt, true
		}
	}
	return brr.RecoveryPoint{}, false
}

// snapshotOf loads snapshot id for what a recovery point shows of it; nil when it cannot.
func snapshotOf(ctx context.Context, r *repo.Repository, id repo.ID) *repo.Snapshot {
	sn, err := r.LoadSnapshot(ctx, id)
	if err != nil {
		return nil
	}
	return sn
}

// recoveryPoint is the public form of pin p of repo repoName; sn, when known, is the
// snapshot it pins.
func recoveryPoint(repoName string, p repo.Pin, sn *repo.Snapshot) brr.RecoveryPoint {
	pt := brr.RecoveryPoint{
		Repo:     repoName,
		Label:    p.Label,
		Snapshot: p.Snapshot.String(),
		Reason:   p.Reason,
		By:       p.By,
		Time:     p.Time,
	}
	if sn != nil {
		pt.Source = sn.Source
		pt.SnapshotTime = sn.Time
	}
	return pt
}

// Checkpoints lists the recovery points of the repo named repoName, or of every repo
// when it is empty, sorted by repo and label, each joined with its snapshot's time and
// source. A repo that cannot be read is answered from the index, with what this worker
// last saw there; unread names those repos and says why. A repo that was read refreshes
// the index.
func (e *Engine) Checkpoints(ctx context.Context, repoName string) (points []brr.RecoveryPoint, unread map[string]string, err error) {
	var names []string
	if repoName != "" {
		_, name, err := e.Repo(repoName)
		if err != nil {
			return nil, nil, err
		}
		names = []string{name}
	} else {
		names = e.RepoNames()
	}
	points = []brr.RecoveryPoint{}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		r := e.served(name)
		if r == nil {
			continue // dropped since listed
		}
		pts, err := e.readPoints(ctx, r, name)
		if err == nil {
			if e.Points != nil {
				// The index is a copy kept for when the repository cannot be read; failing
				// to refresh it now leaves the older copy, which is what the next
				// successful read replaces.
				_ = e.Points.ReplacePoints(name, pts)
			}
			points = append(points, pts...)
			continue
		}
		if unread == nil {
			unread = make(map[string]string)
		}
		if e.Points == nil {
			unread[name] = err.Error() + " (this worker keeps no index of recovery points)"
			continue
		}
		indexed, ierr := e.Points.Points(name)
		if ierr != nil {
			unread[name] = fmt.Sprintf("%v; and the index: %v", err, ierr)
			continue
		}
		unread[name] = err.Error() + " (points shown from this worker's index, as last seen)"
		points = append(points, indexed...)
	}
	sort.SliceStable(points, func(i, j int) bool {
		if points[i].Repo != points[j].Repo {
			return points[i].Repo < points[j].Repo
		}
		return points[i].Label < points[j].Label
	})
	return points, unread, nil
}

// readPoints reads the recovery points of r, each joined with its snapshot.
func (e *Engine) readPoints(ctx context.Context, r *repo.Repository, repoName string) ([]brr.RecoveryPoint, error) {
	pins, err := r.Pins(ctx)
	if err != nil {
		return nil, fmt.Errorf("read recovery points of repo %s: %w", repoName, err)
	}
	out := make([]brr.RecoveryPoint, 0, len(pins))
	for _, p := range pins {
		sn, err := r.LoadSnapshot(ctx, p.Snapshot)
		if err != nil && !errors.Is(err, brr.ErrNotFound) {
			return nil, fmt.Errorf("read snapshot %s of recovery point %q in repo %s: %w", p.Snapshot.Short(), p.Label, repoName, err)
		}
		out = append(out, recoveryPoint(repoName, p, sn))
	}
	return out, nil
}
