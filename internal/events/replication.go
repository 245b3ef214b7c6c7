package events

import (
	"encoding/json"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

// policyBy is the By of the replicate jobs the replication policy publishes.
const policyBy = "policy"

// replicationEvents are the events of a finished replicate job: replication.completed
// and a snapshot.committed for each snapshot it copied when it succeeded, and
// replication.failed when it failed or is dead. A replicate job that will be retried
// has none: its job.replicate.retrying event says so.
func (c *Consumer) replicationEvents(d *delivery, status brr.Status, res *brr.Result, cause error) []*brr.Event {
	a, ok := d.job.Args.(*brr.ReplicateJob)
	if !ok {
		return nil
	}
	var r *brr.ReplicateResult
	if res != nil {
		r = res.Replicate
	}
	if status != brr.StatusSucceeded {
		e := c.replicationEvent(d, a, brr.StatusFailed, r)
		if cause != nil {
			e.Error = cause.Error()
		}
		return []*brr.Event{e}
	}
	if r == nil {
		return nil
	}
	out := []*brr.Event{c.replicationEvent(d, a, brr.StatusCompleted, r)}
	for i := range r.Copied {
		sn := r.Copied[i]
		e := c.cfg.newEvent(brr.EventSnapshot, brr.StatusCommitted)
		e.JobID = d.job.ID
		e.Kind = d.job.Kind
		e.Pool = d.job.Pool
		e.Repo = sn.Repo
		e.Source = sn.Source
		e.Snapshot = sn.ID
		e.SnapshotInfo = &sn
		out = append(out, e)
	}
	return out
}

// replicationEvent is a replication event of status about the replicate job of d; r,
// when not nil, says what the job did.
func (c *Consumer) replicationEvent(d *delivery, a *brr.ReplicateJob, status brr.Status, r *brr.ReplicateResult) *brr.Event {
	e := c.cfg.newEvent(brr.EventReplication, status)
	e.JobID = d.job.ID
	e.Kind = d.job.Kind
	e.Pool = d.job.Pool
	e.Attempt = d.delivered
	e.Source = a.Source
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

// replicationNow returns the replication.started or replication.progress event of a
// replicate job, published at once like the job's own started and progress events;
// nothing for other jobs.
func (c *Consumer) replicationNow(d *delivery, status brr.Status, p *brr.Progress) []state.OutboxMsg {
	a, ok := d.job.Args.(*brr.ReplicateJob)
	if !ok {
		return nil
	}
	e := c.replicationEvent(d, a, status, nil)
	e.Progress = p
	return c.cfg.outboxMsgs(e)
}

// policyJobs are the replicate jobs the replication policy (Config.Replicate) sets off
// when a job committed snapshots in a repo: a backup its snapshot, a replicate job each
// snapshot it copied into its target. Each goes to the job's pool, with the id
// "repl-<first 16 hex digits of the snapshot>-<target>", which is also its Nats-Msg-Id:
// the same snapshot committed twice in the server's duplicate window makes one job. A
// cycle (a → b → a) ends, since a target that has the snapshot commits nothing.
func (c *Consumer) policyJobs(d *delivery, res *brr.Result) []state.OutboxMsg {
	if res == nil || len(c.cfg.Replicate) == 0 {
		return nil
	}
	var repoName string
	var snaps []string
	switch {
	case res.Backup != nil:
		repoName, snaps = res.Backup.Repo, []string{res.Backup.Snapshot}
	case res.Replicate != nil:
		repoName, snaps = res.Replicate.To, res.Replicate.Snapshots
	default:
		return nil
	}
	var out []state.OutboxMsg
	for _, snap := range snaps {
		for _, to := range c.cfg.Replicate[repoName] {
			if to == repoName || len(snap) < 16 {
				continue
			}
			job := &brr.Job{
				V:       brr.Version,
				ID:      "repl-" + snap[:16] + "-" + to,
				Kind:    brr.KindReplicate,
				Pool:    d.job.Pool,
				Created: time.Now().UTC(),
				By:      policyBy,
				Args:    &brr.ReplicateJob{Snapshot: snap, From: repoName, To: to},
			}
			if err := job.Validate(); err != nil {
				c.log.Error().Err(err).Str("job_id", d.job.ID).Msg("replication policy made an invalid job; skipping it")
				continue
			}
			data, err := json.Marshal(job)
			if err != nil {
				c.log.Error().Err(err).Str("job_id", d.job.ID).Msg("encode replication policy job; skipping it")
				continue
			}
			out = append(out, state.OutboxMsg{Subject: c.cfg.Subjects.Job(job.Pool, job.Kind), MsgID: job.ID, Data: data})
		}
	}
	return out
}
