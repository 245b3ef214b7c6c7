package events

import (
	"encoding/json"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

// reporter is how the job of delivery d speaks while it runs: what it says is published
// at once, like the job's accepted and started events.
type reporter struct {
	c *Consumer
	d *delivery
}

// Progress publishes a job progress event. Jobs report a few times a second at most, so
// each report is published.
func (r reporter) Progress(p brr.Progress) {
	e := r.c.jobEvent(r.d, brr.StatusProgress)
	e.Progress = &p
	r.c.pub.PublishNow(r.c.cfg.outboxMsgs(e)...)
}

// Announce publishes e, stamped, at once.
func (r reporter) Announce(e *brr.Event) {
	if e == nil {
		return
	}
	r.c.stamp(r.d, e)
	r.c.pub.PublishNow(r.c.cfg.outboxMsgs(e)...)
}

// stamp fills in what an event the job of d caused leaves to the consume loop: the
// version, a new id, the time now, this worker, the attempt, and the job's id, kind and
// pool where the handler left them empty.
func (c *Consumer) stamp(d *delivery, e *brr.Event) {
	e.V = brr.Version
	e.ID = brr.NewID()
	e.Time = time.Now().UTC()
	e.Worker, e.Host = c.cfg.Worker, c.cfg.Host
	e.Attempt = d.attempt
	if e.JobID == "" {
		e.JobID = d.job.ID
	}
	if e.Kind == "" {
		e.Kind = d.job.Kind
	}
	if e.Pool == "" {
		e.Pool = d.job.Pool
	}
}

// ended applies what the outcome of a job that ended for good says it worked on to the
// job's record, and so to its final event.
func ended(rec *state.JobRecord, out *brr.Outcome) {
	if out == nil {
		return
	}
	if out.Repo != "" {
		rec.Repo = out.Repo
	}
	if out.Source != "" {
		rec.Source = out.Source
	}
	if out.Snapshot != "" {
		rec.Snapshot = out.Snapshot
	}
}

// outcomeMsgs returns what the outcome of a job that ended for good publishes besides
// the job's own event, to go into the outbox in the same transaction as its record: its
// events, stamped, then its follow-up jobs. A follow-up job that does not validate is
// left out, and said so in the log.
func (c *Consumer) outcomeMsgs(d *delivery, out *brr.Outcome) []state.OutboxMsg {
	if out == nil || d.job == nil {
		return nil
	}
	var msgs []state.OutboxMsg
	for _, e := range out.Events {
		if e == nil {
			continue
		}
		c.stamp(d, e)
		msgs = append(msgs, c.cfg.outboxMsgs(e)...)
	}
	for _, job := range out.Jobs {
		if job == nil {
			continue
		}
		err := job.Validate()
		var data []byte
		if err == nil {
			data, err = json.Marshal(job)
		}
		if err != nil {
			d.logger(c.log).Error().Err(err).Str("follow_up", job.ID).Msg("job set off an invalid job; leaving it out")
			continue
		}
		msgs = append(msgs, state.OutboxMsg{Subject: c.cfg.Subjects.Job(job.Pool, job.Kind), MsgID: job.ID, Data: data})
	}
	return msgs
}
