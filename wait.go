package brr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// WaitOption configures Wait and Watch.
type WaitOption func(*waitOptions)

type waitOptions struct {
	after uint64
}

// AfterRevision makes Wait and Watch skip the job's entries in the results bucket at
// revision rev or older: they belong to an earlier run of the same job id. RetryDead
// returns the revision to pass, so that a Wait on a job queued again from the dead-letter
// stream waits for the new run instead of returning the old run's dead event at once:
//
//	res, err := c.RetryDead(ctx, id)
//	...
//	e, err := c.Wait(ctx, res.ID, nil, brr.AfterRevision(res.ResultRevision))
//
// Revisions are the bucket's stream sequences, set by the server, so this does not
// depend on the clocks of the workers and the caller. 0 skips nothing.
func AfterRevision(rev uint64) WaitOption { return func(o *waitOptions) { o.after = rev } }

// Wait waits for the job id to end and returns its final event (succeeded, failed, dead
// or cancelled). It is correct whether the job ended long ago, is running, or has not been
// taken yet: it watches the job's key in the results bucket, which delivers the latest
// event first and then every update.
//
// onEvent, when not nil, is called in Wait's goroutine with every lifecycle event and
// progress event of the job (see Watch). A job that
// ended failed or dead returns its event and an error that wraps ErrJobFailed and says
// why; one that ended cancelled returns its event and an error that wraps
// ErrJobCancelled. Wait returns ctx's error when ctx ends first.
//
// Wait is Watch followed by Result, so it passes on only the progress published after
// it started. To see a job's progress from its first moment, Watch it before publishing.
func (c *Client) Wait(ctx context.Context, id string, onEvent func(*Event), opts ...WaitOption) (*Event, error) {
	w, err := c.Watch(ctx, id, onEvent, opts...)
	if err != nil {
		return nil, err
	}
	return w.Result(ctx)
}

// Waiter follows one job to its end: it holds the watch of the job's key in the results
// bucket and, when it has an onEvent, the subscription to progress events. Watch returns
// it; Result waits for the job's final event. Result is for one goroutine; Stop may be
// called from any.
type Waiter struct {
	id      string
	onEvent func(*Event)
	after   uint64
	watch   jetstream.KeyWatcher
	// sub delivers job events into progress straight from the connection's reader, in
	// the order they arrived; nil without onEvent. jobKey is how this job's id appears
	// in an event's JSON (a cheap look before decoding); seen holds the ids of the
	// lifecycle events passed on, which come both there and from the bucket.
	sub      *nats.Subscription
	progress chan *nats.Msg
	jobKey   []byte
	seen     map[string]bool
	// cancel ends the watch's context, derived from Watch's: the watch and the
	// subscription end with it. ended is its Err, which says why.
	cancel  context.CancelFunc
	ended   func() error
	stopped atomic.Bool // Stop was called
}

// progressBuffer is how many job events (of any job) a Waiter holds while its
// caller is busy, between Watch and Result or in onEvent; more are dropped, never the
// result.
const progressBuffer = 1024

// errStopped ends a Result after Stop.
var errStopped = errors.New("waiter stopped")

// Watch starts following job id and returns once the watch is in place: from then on,
// every progress event of the job and its end reach onEvent (when not nil), and Result
// returns the end. The job may be published before or after the call, or not at all
// yet; a caller that publishes it after Watch, with WithID(id), misses none of its
// progress, however fast the job:
//
//	id := brr.NewID()
//	w, err := c.Watch(ctx, id, show)
//	...
//	defer w.Stop()
//	if _, err := c.Publish(ctx, job, brr.WithID(id)); err != nil { ... }
//	e, err := w.Result(ctx)
//
// With an onEvent, the job's events come from the event stream as they are published
// (accepted, started, progress, retrying: every attempt's, however fast the next one
// follows) and from the results bucket, which keeps the latest per job and so also
// tells a watch that began late where the job stands; each event is passed once. The
// final event comes from the bucket only, after every event published before it. Events
// that arrive before Result is called wait for it (up to 1024 job events of any job;
// more are dropped, never the end). A worker announces accepted only for a job that
// waits for a free slot, and writes a started entry only for an attempt that runs a
// while (docs/events.md): a fast job may show only started and its end. The watch ends when ctx ends, when Result returns, or on
// Stop.
func (c *Client) Watch(ctx context.Context, id string, onEvent func(*Event), opts ...WaitOption) (*Waiter, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	var o waitOptions
	for _, opt := range opts {
		opt(&o)
	}
	kv, err := c.results(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for job %s: %w", id, err)
	}
	wctx, cancel := context.WithCancel(ctx)
	w := &Waiter{id: id, onEvent: onEvent, after: o.after, cancel: cancel, ended: wctx.Err}
	if onEvent != nil {
		// A channel subscription, not a callback: the connection's reader puts each
		// job event in the channel before it reads the next message, so an event
		// published before the job's next result is in the channel when Result sees
		// that result. Every job event, not only progress: the bucket keeps one entry
		// per job, and a retrying or started that the next entry replaced at once would
		// be missed there (and a short attempt leaves no started entry at all).
		w.progress = make(chan *nats.Msg, progressBuffer)
		w.jobKey = []byte(`"job_id":` + strconv.Quote(id))
		w.seen = make(map[string]bool)
		w.sub, err = c.nc.ChanSubscribe(c.prefix+".events.job.*.*", w.progress)
		if err != nil {
			cancel()
			return nil, fmt.Errorf("wait for job %s: subscribe to its events: %w", id, err)
		}
		context.AfterFunc(wctx, func() { _ = w.sub.Unsubscribe() })
	}
	// The watch's consumer is created by a request on the same connection after the
	// subscription, so the server has both when Watch returns. The watch ends with wctx.
	w.watch, err = kv.Watch(wctx, id)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("wait for job %s: watch result: %w", id, err)
	}
	return w, nil
}

// Result waits for the job to end and returns its final event, as Wait does, calling
// onEvent with the job's events before. It returns ctx's error when ctx ends first, and
// stops the Waiter when it returns: call it once.
func (w *Waiter) Result(ctx context.Context) (*Event, error) {
	defer w.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for job %s: %w", w.id, ctx.Err())
		case m := <-w.progress: // nil without onEvent: never ready
			w.passProgress(m)
		case entry, ok := <-w.watch.Updates():
			if !ok {
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("wait for job %s: %w", w.id, err)
				}
				if w.stopped.Load() {
					return nil, fmt.Errorf("wait for job %s: %w", w.id, errStopped)
				}
				if err := w.ended(); err != nil { // Watch's ctx ended
					return nil, fmt.Errorf("wait for job %s: %w", w.id, err)
				}
				return nil, fmt.Errorf("wait for job %s: watch ended: %w", w.id, ErrNotConnected)
			}
			if entry == nil || entry.Operation() != jetstream.KeyValuePut || entry.Revision() <= w.after {
				continue
			}
			e, err := DecodeEvent(entry.Value())
			if err != nil {
				return nil, fmt.Errorf("wait for job %s: decode result: %w", w.id, err)
			}
			if w.onEvent != nil {
				w.passWithProgress(e)
			}
			if e.Status.Final() {
				return e, jobErr(e)
			}
		}
	}
}

// passProgress calls onEvent with m when it is an event of the job before its end: its
// final event comes from the bucket only, which knows which run of the job it ends
// (AfterRevision).
func (w *Waiter) passProgress(m *nats.Msg) {
	if !bytes.Contains(m.Data, w.jobKey) {
		return
	}
	e, err := DecodeEvent(m.Data)
	if err != nil || e.JobID != w.id || e.Type != EventJob || e.Status.Final() {
		return
	}
	w.pass(e)
}

// pass calls onEvent with e unless e is a lifecycle event already passed on (it comes
// both from the event stream and from the bucket). Progress has no bucket entry and is
// passed as it comes.
func (w *Waiter) pass(e *Event) {
	if e.Status != StatusProgress && w.seen != nil {
		if w.seen[e.ID] {
			return
		}
		w.seen[e.ID] = true
	}
	w.onEvent(e)
}

// passWithProgress calls onEvent with the progress events waiting in the channel, then
// with the result e. A progress event published before e is in the channel by now (see
// Watch), so none is passed after the job's end.
func (w *Waiter) passWithProgress(e *Event) {
	for {
		select {
		case m := <-w.progress:
			w.passProgress(m)
		default:
			w.pass(e)
			return
		}
	}
}

// Stop ends the watch and the progress subscription without waiting for the job; the job
// goes on. It may be called more than once, and after Result.
func (w *Waiter) Stop() {
	w.stopped.Store(true) // before the watch ends, for Result to say why it did
	w.cancel()
	if w.sub != nil {
		_ = w.sub.Unsubscribe()
	}
	_ = w.watch.Stop()
}

// jobErr is the error of a final event: nil for succeeded, ErrJobCancelled for cancelled,
// ErrJobFailed with the reason otherwise.
func jobErr(e *Event) error {
	if e.Status == StatusSucceeded {
		return nil
	}
	reason := e.Error
	if reason == "" {
		reason = "no reason given"
	}
	if e.Status == StatusCancelled {
		return fmt.Errorf("%w: %s job %s: %s", ErrJobCancelled, e.Kind, e.JobID, reason)
	}
	return fmt.Errorf("%w: %s job %s is %s: %s", ErrJobFailed, e.Kind, e.JobID, e.Status, reason)
}
