package events

import (
	"time"

	"github.com/brr-dev/brr"
)

// Observer is told how each attempt of a job on this worker ended, once it is recorded:
// the worker's metrics count them. It is called from the consume loop's goroutines, so
// it must be quick and safe for concurrent use.
type Observer interface {
	JobSettled(s Settled)
}

// Settled is how one attempt of a job ended, once recorded.
type Settled struct {
	Kind brr.Kind
	Pool string
	// Repo is the repo the job named, or that its result names; empty when neither does.
	Repo string
	// Status is succeeded, failed, dead, cancelled or retrying. A job that could not start yet (a
	// lease held elsewhere) is retrying with Snoozed set.
	Status  brr.Status
	Snoozed bool
	// Duration is the time from the attempt's start to its end.
	Duration time.Duration
	// Result is what the job produced, when it produced something; Err why it did not
	// succeed.
	Result *brr.Result
	Err    error
}

// Observe makes the consumer tell o about every attempt it settles. Call it before Run.
func (c *Consumer) Observe(o Observer) { c.obs = o }

// UsePresence makes the consumer ask p, for a job delivered again, whether the worker
// that started it is still running it (its ack or InProgress was lost: a NATS restart, a
// stall longer than AckWait): then the job is put back for later instead of run a second
// time. Call it before Run.
func (c *Consumer) UsePresence(p Presence) { c.peers = p }

// observe tells the observer, if any, how the attempt d ended.
func (c *Consumer) observe(d *delivery, status brr.Status, snoozed bool, res *brr.Result, err error) {
	if c.obs == nil || d.rec == nil {
		return
	}
	s := Settled{Kind: d.rec.Kind, Pool: d.rec.Pool, Repo: d.rec.Repo, Status: status, Snoozed: snoozed, Result: res, Err: err}
	if !d.rec.Started.IsZero() {
		s.Duration = max(time.Since(d.rec.Started), 0)
	}
	c.obs.JobSettled(s)
}
