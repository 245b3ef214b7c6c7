package events

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/brr-dev/brr"
)

// PointQueries answers the checkpoints query. ServeAPI serves it when its Queries
// implement it too; *jobs.Engine does.
type PointQueries interface {
	// Checkpoints lists the recovery points of repo, or of every repo when it is empty;
	// unread names the repos that could not be read, with why (their points come from
	// an index).
	Checkpoints(ctx context.Context, repo string) (points []brr.RecoveryPoint, unread map[string]string, err error)
}

// checkpoints answers one checkpoints request.
func checkpoints(ctx context.Context, q PointQueries, data []byte) brr.CheckpointsReply {
	reply := brr.CheckpointsReply{V: brr.Version, Points: []brr.RecoveryPoint{}}
	var req brr.CheckpointsRequest
	if err := json.Unmarshal(data, &req); err != nil {
		reply.Error = fmt.Sprintf("checkpoints request is not valid JSON (%v): send {\"v\":%d,\"repo\":\"NAME\"}", err, brr.Version)
		return reply
	}
	if req.V != brr.Version {
		reply.Error = fmt.Sprintf("checkpoints request has version %d, this worker reads version %d: upgrade the client or the worker", req.V, brr.Version)
		return reply
	}
	points, unread, err := q.Checkpoints(ctx, req.Repo)
	if err != nil {
		reply.Error = err.Error()
		return reply
	}
	if points != nil {
		reply.Points = points
	}
	reply.Unread = unread
	return reply
}

// recoveryEvents are the brr.events.recovery.* and snapshot.removed events of a finished
// checkpoint, drill, verify-with-drill, restore or prune job:
//
//   - a checkpoint that succeeded: recovery.point_created, or point_removed;
//   - a drill, or a verify that ran one, whatever its status: recovery.drill_passed or
//     drill_failed, with the drill's report;
//   - a restore that succeeded: recovery.restored;
//   - a prune that succeeded and was not a dry run: one snapshot.removed per snapshot it
//     removed.
func (c *Consumer) recoveryEvents(d *delivery, status brr.Status, res *brr.Result, cause error) []*brr.Event {
	if res == nil || d.job == nil {
		return nil
	}
	ok := status == brr.StatusSucceeded
	var out []*brr.Event
	if cp := res.Checkpoint; cp != nil && ok {
		st := brr.StatusPointCreated
		if cp.Removed {
			st = brr.StatusPointRemoved
		}
		e := c.jobFact(d, brr.EventRecovery, st)
		e.Repo, e.Snapshot, e.Source = cp.Point.Repo, cp.Point.Snapshot, cp.Point.Source
		e.Result = &brr.Result{Checkpoint: cp}
		out = append(out, e)
	}
	dr := res.Drill
	if dr == nil && res.Verify != nil {
		dr = res.Verify.Drill
	}
	if dr != nil {
		st := brr.StatusDrillPassed
		if !dr.Passed {
			st = brr.StatusDrillFailed
		}
		e := c.jobFact(d, brr.EventRecovery, st)
		e.Repo, e.Snapshot, e.Source = dr.Repo, dr.Snapshot, dr.Source
		e.Result = &brr.Result{Drill: dr}
		if !dr.Passed && cause != nil {
			e.Error = cause.Error()
		}
		out = append(out, e)
	}
	if rr := res.Restore; rr != nil && ok {
		e := c.jobFact(d, brr.EventRecovery, brr.StatusRestored)
		e.Repo, e.Snapshot = rr.Repo, rr.Snapshot
		if a, isRestore := d.job.Args.(*brr.RestoreJob); isRestore {
			e.Source = a.Source
		}
		e.Result = &brr.Result{Restore: rr}
		out = append(out, e)
	}
	if pr := res.Prune; pr != nil && ok && !pr.DryRun {
		removed := make(map[string]bool, len(pr.Removed))
		for _, id := range pr.Removed {
			removed[id] = true
		}
		for _, dec := range pr.Decisions {
			if !removed[dec.ID] {
				continue
			}
			e := c.jobFact(d, brr.EventSnapshot, brr.StatusRemoved)
			e.Repo, e.Snapshot, e.Source = pr.Repo, dec.ID, dec.Source
			e.SnapshotInfo = &brr.Snapshot{ID: dec.ID, Repo: pr.Repo, Time: dec.Time, Host: dec.Host, Source: dec.Source, Tags: dec.Tags}
			out = append(out, e)
		}
	}
	return out
}

// jobFact is a new event of typ and status about what job d did.
func (c *Consumer) jobFact(d *delivery, typ brr.EventType, status brr.Status) *brr.Event {
	e := c.cfg.newEvent(typ, status)
	e.JobID, e.Kind, e.Pool = d.job.ID, d.job.Kind, d.job.Pool
	return e
}
