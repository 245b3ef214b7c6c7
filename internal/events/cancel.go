package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/clock"
)

// Cancelling a job. Client.Cancel puts a brr.CancelRequest under the job's id in KV
// BRR_CANCEL; every worker watches the bucket and keeps the requests in memory
// (cancelSet). A request reaches a job wherever it is:
//
//   - running here: the watch cancels the job's context with errCancelRequested as the
//     cause, the handler returns (jobs stop at their next check of ctx, leaving what they
//     wrote usable by the next run), and settle ends the job cancelled;
//   - not taken yet (queued, snoozed behind a lease, between two attempts): the worker
//     that takes it finds the request before running it and ends it cancelled at once.
//
// Either way the job is recorded and announced with status cancelled (event
// brr.events.job.<kind>.cancelled, and its entry in BRR_RESULTS) and acked: it does not
// go to the dead-letter stream. A redelivery of it (a lost ack) finds the request again.
// A request applies to job messages the server stored before it (and to snoozed copies
// of them), so a job published again under the same id afterwards runs.

// errCancelRequested is the cause of the context of a job cancelled on request.
var errCancelRequested = errors.New("job cancelled on request")

// errDrainTimeout is the cause of the context of a job cut short at shutdown: the drain
// timeout passed before it finished. The job is put back, to run again.
var errDrainTimeout = errors.New("the worker is shutting down and its drain timeout passed; the job goes back to the queue")

// cancelSlack is how much older than a job message a cancel request may be and still
// apply to it: the two times come from the servers' clocks, which in a cluster differ a
// little.
const cancelSlack = time.Second

// cancelSet is the cancel requests a worker knows of, by job id.
type cancelSet struct {
	mu    sync.Mutex
	reqs  map[string]cancelEntry
	ready bool // the watch has delivered the bucket's keys as they were when it began
}

// cancelEntry is one request and when the server stored it.
type cancelEntry struct {
	req    *brr.CancelRequest
	stored time.Time
}

func (s *cancelSet) add(req *brr.CancelRequest, stored time.Time, ttl time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reqs == nil {
		s.reqs = make(map[string]cancelEntry)
	}
	s.reqs[req.ID] = cancelEntry{req: req, stored: stored}
	if len(s.reqs)%256 == 0 { // now and then, forget what the bucket has let expire
		for id, e := range s.reqs {
			if time.Since(e.stored) > ttl {
				delete(s.reqs, id)
			}
		}
	}
}

func (s *cancelSet) remove(id string) {
	s.mu.Lock()
	delete(s.reqs, id)
	s.mu.Unlock()
}

func (s *cancelSet) setReady() {
	s.mu.Lock()
	s.ready = true
	s.mu.Unlock()
}

// get returns the request for id, if any, and whether the set is complete (the watch
// has caught up); when it is not, the caller asks the bucket.
func (s *cancelSet) get(id string) (cancelEntry, bool, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.reqs[id]
	return e, ok, s.ready
}

// applies reports whether request e is for the job message of d: one stored before e
// (within cancelSlack), or a snoozed copy of one.
func (e cancelEntry) applies(d *delivery) bool {
	return d.snoozed || !e.stored.Before(d.stored.Add(-cancelSlack))
}

// cancelRequest returns the cancel request that applies to d's job, or nil. Until the
// watch has caught up it reads the bucket; should that fail, there is none.
func (c *Consumer) cancelRequest(ctx context.Context, d *delivery) *brr.CancelRequest {
	e, ok, ready := c.cancels.get(d.job.ID)
	if !ok && !ready {
		e, ok = c.readCancel(ctx, d.job.ID)
	}
	if !ok || !e.applies(d) {
		return nil
	}
	return e.req
}

// readCancel reads the request for id from the bucket.
func (c *Consumer) readCancel(ctx context.Context, id string) (cancelEntry, bool) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	kv, err := c.js.KeyValue(ctx, c.cfg.Subjects.CancelBucket())
	if err != nil {
		return cancelEntry{}, false
	}
	entry, err := kv.Get(ctx, id)
	if err != nil {
		return cancelEntry{}, false
	}
	req, err := brr.DecodeCancelRequest(entry.Value())
	if err != nil || req.ID != id {
		return cancelEntry{}, false
	}
	return cancelEntry{req: req, stored: entry.Created()}, true
}

// watchCancels keeps c.cancels in step with the bucket until ctx is done, and cancels
// the running jobs that a new request names. A watch that ends is started again.
func (c *Consumer) watchCancels(ctx context.Context) {
	for {
		err := c.watchCancelsOnce(ctx)
		if ctx.Err() != nil {
			return
		}
		c.log.Warn().Err(err).Msg("watch cancel requests; watching again in 1s")
		if !clock.Sleep(ctx, time.Second) {
			return
		}
	}
}

func (c *Consumer) watchCancelsOnce(ctx context.Context) error {
	name := c.cfg.Subjects.CancelBucket()
	kv, err := c.js.KeyValue(ctx, name)
	if err != nil {
		return fmt.Errorf("open bucket %s (are the streams created?): %w", name, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return fmt.Errorf("watch bucket %s: %w", name, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		var entry jetstream.KeyValueEntry
		var ok bool
		select {
		case <-ctx.Done():
			return nil
		case entry, ok = <-w.Updates():
		}
		switch {
		case !ok:
			return fmt.Errorf("watch of bucket %s ended", name)
		case entry == nil:
			c.cancels.setReady()
			continue
		case entry.Operation() != jetstream.KeyValuePut:
			c.cancels.remove(entry.Key())
			continue
		}
		req, err := brr.DecodeCancelRequest(entry.Value())
		if err != nil || req.ID != entry.Key() {
			c.log.Warn().Err(err).Str("key", entry.Key()).Msg("cancel request this worker cannot read; ignoring it")
			continue
		}
		e := cancelEntry{req: req, stored: entry.Created()}
		c.cancels.add(req, e.stored, c.cfg.ResultsTTL)
		c.cancelRunning(e)
	}
}

// cancelRunning cancels the context of every delivery running here that request e
// applies to. A delivery about to run looks at the set again once its cancel function is
// in place (see Consumer.process), so none slips between the two.
func (c *Consumer) cancelRunning(e cancelEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for d := range c.pending {
		if d.job != nil && d.job.ID == e.req.ID && d.cancel != nil && e.applies(d) {
			d.logger(c.log).Info().Str("by", e.req.By).Msg("cancel requested; stopping the job")
			d.cancel(errCancelRequested)
		}
	}
}

// cancelled records the job of d as cancelled on request req, with its event and its
// entry in BRR_RESULTS, then acks it. herr is what the handler returned when it was
// stopped (nil when it never ran); out's events and follow-up jobs are not published:
// a cancelled backup sets off no replication.
func (c *Consumer) cancelled(d *delivery, out *brr.Outcome, herr error, req *brr.CancelRequest) {
	reason := "cancelled on request"
	if req.By != "" {
		reason += " of " + req.By
	}
	reason += " at " + req.Time.UTC().Format(time.RFC3339)
	if herr == nil {
		reason += ", before it ran"
	}
	res := resultOf(out)
	rec := d.rec
	rec.Status = brr.StatusCancelled
	rec.Finished = time.Now().UTC()
	rec.Result = res
	rec.Error = reason
	ended(rec, out)
	e := c.jobEvent(d, brr.StatusCancelled)
	e.Result = res
	e.Error = reason
	if err := c.store.PutJob(rec, c.cfg.outboxMsgs(e)...); err != nil {
		c.putBack(d, err)
		return
	}
	log := d.logger(c.log).Info().Str("by", req.By)
	if herr != nil {
		log = log.AnErr("stopped_with", herr)
	}
	log.Msg("job cancelled")
	c.cancelledN.Add(1)
	_ = d.msg.Ack()
	c.observe(d, brr.StatusCancelled, false, res, nil)
}
