package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// delivery states: a delivery is settled once, by the consume loop or by the drain.
const (
	stateRunning int32 = iota
	stateSettling
	stateAbandoned
)

// delivery is one delivery of one job message to this worker.
type delivery struct {
	msg       jetstream.Msg
	pool      string
	seq       uint64
	delivered int
	// attempt counts the attempts of the job, this one included: earlier attempts
	// (attemptsHeader, when the job came back from a snooze) plus the deliveries of
	// this message. A snooze is not an attempt.
	attempt int
	job     *brr.Job
	rec     *state.JobRecord
	state   atomic.Int32
	// stored is when the server stored the message; snoozed is set for a copy of a
	// snoozed job. A cancel request applies by them (cancelEntry.applies).
	stored  time.Time
	snoozed bool
	// cancel, set under Consumer.mu once the job is about to run, cancels its context.
	cancel context.CancelCauseFunc
	// entry is set when this attempt's started entry went out to BRR_RESULTS (it ran
	// for watchAfter): a retrying event then replaces it (endAttempt).
	entry bool
}

func (d *delivery) logger(log zerolog.Logger) *zerolog.Logger {
	ctx := log.With().Uint64("seq", d.seq).Int("attempt", d.attempt)
	if d.job != nil {
		ctx = ctx.Str("job_id", d.job.ID).Str("kind", string(d.job.Kind))
		if repo := d.job.Args.Scope().Repo; repo != "" {
			ctx = ctx.Str("repo", repo)
		}
	}
	l := ctx.Logger()
	return &l
}

func (c *Consumer) track(d *delivery) {
	c.mu.Lock()
	c.pending[d] = struct{}{}
	c.mu.Unlock()
}

func (c *Consumer) untrack(d *delivery) {
	c.mu.Lock()
	delete(c.pending, d)
	c.mu.Unlock()
}

// process runs one delivery: decode, check, record, run, then settle. It holds one
// slot from the pull loop and gives it back as soon as the handler returns.
func (c *Consumer) process(jobCtx context.Context, pool string, msg jetstream.Msg) {
	d := &delivery{msg: msg, pool: pool}
	slot := true
	release := func() {
		if slot {
			slot = false
			<-c.slots
		}
	}
	c.track(d)
	defer func() {
		if r := recover(); r != nil {
			d.logger(c.log).Error().Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).Msg("consume loop panicked; putting the job back")
			_ = msg.NakWithDelay(c.backoff(d.attempt))
		}
		release()
		c.untrack(d)
		c.inFlight.Add(-1)
		c.jobs.Done()
	}()

	if meta, err := msg.Metadata(); err == nil {
		d.seq = meta.Sequence.Stream
		d.delivered = int(meta.NumDelivered)
		d.attempt = earlierAttempts(msg) + d.delivered
		d.stored = meta.Timestamp
		if scheduler := msg.Headers().Get(jetstream.SchedulerHeader); scheduler != "" && c.fromSnooze(scheduler) {
			d.snoozed = true
		}
	} else {
		c.log.Error().Err(err).Str("subject", msg.Subject()).Msg("job message without JetStream metadata; dropping it")
		_ = msg.Term()
		return
	}

	job, err := c.decode(pool, msg)
	if err != nil {
		release()
		c.deadLetter(d, err, brr.StatusFailed, nil)
		return
	}
	c.mu.Lock() // inFlightElsewhere reads the jobs of the other deliveries
	d.job = job
	c.mu.Unlock()

	processed, err := c.store.Processed(job.ID)
	if err != nil {
		release()
		c.putBack(d, fmt.Errorf("check processed: %w", err))
		return
	}
	if !processed && (d.delivered > 1 || d.attempt > d.delivered) {
		// Delivered again, or back from a snooze after an attempt: the attempt before
		// may have succeeded elsewhere (its ack was lost), or still be running.
		last, err := c.lastResult(jobCtx, job.ID)
		if err != nil {
			// Whether it ran elsewhere is unknown: look again later rather than
			// perhaps run it twice.
			release()
			d.logger(c.log).Warn().Err(err).Dur("retry_in", c.cfg.AckWait).Msg("job delivered again; read its last result; putting it back for later")
			c.snoozeMsg(d, c.cfg.AckWait)
			return
		}
		if last == nil && d.msg.Headers().Get(waitedHeader) == "" {
			// No result at all: the attempt before announced nothing that landed (NATS
			// went away as it started) and may have run, its end waiting in its
			// worker's outbox. Give that a moment to go out, once.
			release()
			d.logger(c.log).Info().Dur("retry_in", c.cfg.AckWait).Msg("job delivered again with no result yet; putting it back once for its last attempt's result")
			c.snoozeMsg(d, c.cfg.AckWait, waitedHeader, "1")
			return
		}
		if last != nil && last.Status == brr.StatusSucceeded {
			processed = true // by another worker, whose ack was lost
		} else if delay, who := c.runningElsewhere(jobCtx, d, last); delay > 0 {
			release()
			d.logger(c.log).Info().Str("running_on", who).Dur("retry_in", delay).Msg("job delivered again while it still runs; putting it back for later")
			c.snoozeMsg(d, delay)
			return
		}
	}
	if processed {
		release()
		c.duplicates.Add(1)
		d.logger(c.log).Info().Msg("job already processed; acking the redelivery without running it")
		_ = msg.Ack()
		return
	}

	now := time.Now().UTC()
	scope := job.Args.Scope()
	d.rec = &state.JobRecord{
		ID:       job.ID,
		Pool:     job.Pool,
		Kind:     job.Kind,
		Request:  recordedRequest(msg, job),
		Status:   brr.StatusStarted,
		Attempts: d.attempt,
		Worker:   c.cfg.Worker,
		Repo:     scope.Repo,
		Source:   scope.Source,
		Created:  job.Created,
		Started:  now,
	}
	if req := c.cancelRequest(jobCtx, d); req != nil {
		release()
		c.cancelled(d, nil, nil, req)
		return
	}
	// Started is announced at once rather than through the outbox: a waiting client
	// sees the job start without an fsync in between, and the job came off NATS a moment
	// ago, so NATS is there to take it. Should it be lost, the final event, which goes
	// through the outbox, still tells the story. Its BRR_RESULTS entry and the started
	// record are written only if the attempt runs for watchAfter (watched.go): a job that
	// ends in a millisecond costs one commit and its final entry, not three of each.
	started := c.jobEvent(d, brr.StatusStarted)
	c.pub.PublishNow(c.cfg.eventMsg(started))
	run := c.watchRun(d, started)

	ctx, cancel := context.WithCancelCause(jobCtx)
	c.mu.Lock()
	d.cancel = cancel
	c.mu.Unlock()
	if c.cancelRequest(jobCtx, d) != nil { // came after the look above, before the watch saw d
		cancel(errCancelRequested)
	}
	out, herr := c.runHandler(ctx, d)
	cancel(nil)
	release()
	// The started record, when the attempt ran long enough to have one, is committed
	// before the final one; a crash in between leaves a job that is not processed and
	// runs again, as it would have anyway.
	entry, err := run.stop()
	d.entry = entry
	if err != nil {
		c.putBack(d, fmt.Errorf("record job started: %w", err))
		return
	}
	c.settle(d, out, herr)
}

// lastResult is the latest job event BRR_RESULTS holds for job id, or nil when it holds
// none. A job whose ack was lost (the server restarted or lost its leader just as the ack
// came) comes back, to any worker of the pool; the one that ran it knows it processed the
// job, the others learn it here and must not run it again. The result is published by
// the outbox of the worker that ran it, within moments unless that worker is cut off
// NATS. An error means the bucket could not be read (NATS is struggling): nobody knows.
func (c *Consumer) lastResult(ctx context.Context, id string) (*brr.Event, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	kv, err := c.resultsKV(ctx)
	if err != nil {
		return nil, err
	}
	entry, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("get result of job %s: %w", id, err)
	}
	e, err := brr.DecodeEvent(entry.Value())
	if err != nil || e.JobID != id {
		return nil, nil // not a result this worker can read: as if there were none
	}
	return e, nil
}

// resultsKV is the BRR_RESULTS bucket, opened once.
func (c *Consumer) resultsKV(ctx context.Context) (jetstream.KeyValue, error) {
	c.resultsMu.Lock()
	defer c.resultsMu.Unlock()
	if c.results == nil {
		kv, err := c.js.KeyValue(ctx, c.cfg.Subjects.ResultsBucket())
		if err != nil {
			return nil, fmt.Errorf("open bucket %s: %w", c.cfg.Subjects.ResultsBucket(), err)
		}
		c.results = kv
	}
	return c.results, nil
}

// runningElsewhere says how long to put back the job of d, delivered again, because the
// attempt that last started it is still running: on this worker (another delivery of it
// is in flight here), or on another whose process, the one that started it, is still up
// (its presence key says so). The delay is AckWait, or less when the other worker's key
// expires sooner (a killed worker: its job then runs here at once). 0 means run it.
func (c *Consumer) runningElsewhere(ctx context.Context, d *delivery, last *brr.Event) (time.Duration, string) {
	if c.inFlightElsewhere(d) {
		return c.cfg.AckWait, c.cfg.Worker
	}
	if last == nil || last.Status != brr.StatusStarted || last.Worker == "" || last.Worker == c.cfg.Worker || c.peers == nil {
		return 0, ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	since, left, ok := c.peers.Presence(ctx, last.Worker)
	if !ok || since.After(last.Time) {
		return 0, "" // gone, or restarted since it started the job
	}
	return min(c.cfg.AckWait, left+c.cfg.LeaseTTL/20+100*time.Millisecond), last.Worker
}

// inFlightElsewhere reports whether another delivery of d's job is in flight on this
// worker.
func (c *Consumer) inFlightElsewhere(d *delivery) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for o := range c.pending {
		if o != d && o.job != nil && o.job.ID == d.job.ID {
			return true
		}
	}
	return false
}

// runHandler runs the handler, turning a panic into an error: the worker never crashes
// on a job.
func (c *Consumer) runHandler(ctx context.Context, d *delivery) (out *brr.Outcome, err error) {
	c.running.Add(1)
	defer c.running.Add(-1)
	defer func() {
		if r := recover(); r != nil {
			d.logger(c.log).Error().Str("panic", fmt.Sprint(r)).Bytes("stack", debug.Stack()).Msg("job handler panicked")
			out, err = nil, fmt.Errorf("job panicked: %v", r)
		}
	}()
	return c.h.Handle(ctx, d.job, reporter{c, d})
}

// decode decodes the job and checks that it came on the subject of its pool and kind.
// A job the server fired from a schedule gets an identity of its own (see fired).
func (c *Consumer) decode(pool string, msg jetstream.Msg) (*brr.Job, error) {
	job, err := brr.DecodeJob(msg.Data())
	if err != nil {
		return nil, err
	}
	if scheduler := msg.Headers().Get(jetstream.SchedulerHeader); scheduler != "" && !c.fromSnooze(scheduler) {
		meta, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("job fired by %s: read its stream sequence: %w", scheduler, err)
		}
		fired(job, c.cfg.Subjects, scheduler, meta.Sequence.Stream, meta.Timestamp)
	}
	sp, sk, ok := c.cfg.Subjects.ParseJob(msg.Subject())
	if !ok {
		return nil, brr.Permanent(fmt.Errorf("%w: job subject %q is not %s", brr.ErrInvalid, msg.Subject(), c.cfg.Subjects.Job("<pool>", "<kind>")))
	}
	if sp != job.Pool || sk != job.Kind {
		return nil, brr.Permanent(fmt.Errorf("%w: %s job for pool %q came on subject %s; publish it to %s",
			brr.ErrInvalid, job.Kind, job.Pool, msg.Subject(), c.cfg.Subjects.Job(job.Pool, job.Kind)))
	}
	return job, nil
}

// fired gives a job that the server fired from the schedule message on subject scheduler
// an identity of its own. Every tick fires the same body, so every copy carries the
// template's id ("s-<name>"), and tick 2 would be taken for a redelivery of tick 1. The
// id becomes "<template id>-<stream sequence of the copy>": one per tick, the same on
// every redelivery of that tick, cut to the 128 characters an id may have. Created
// becomes the time the copy was stored, and an empty By "schedule <name>".
func fired(job *brr.Job, subj brr.Subjects, scheduler string, seq uint64, stored time.Time) {
	suffix := "-" + strconv.FormatUint(seq, 10)
	id := job.ID
	if len(id)+len(suffix) > 128 {
		id = id[:128-len(suffix)]
	}
	job.ID = id + suffix
	job.Created = stored.UTC()
	if job.By == "" {
		job.By = "schedule " + strings.TrimPrefix(scheduler, subj.Schedule(""))
	}
}

// recordedRequest is what the job record keeps as the request: the message as it came,
// or for a job fired from a schedule, the job under its own id.
func recordedRequest(msg jetstream.Msg, job *brr.Job) []byte {
	if msg.Headers().Get(jetstream.SchedulerHeader) == "" {
		return msg.Data()
	}
	data, err := json.Marshal(job)
	if err != nil {
		return msg.Data()
	}
	return data
}

// jobEvent returns a job event about d with what the record knows.
func (c *Consumer) jobEvent(d *delivery, status brr.Status) *brr.Event {
	e := c.cfg.newEvent(brr.EventJob, status)
	e.Attempt = d.attempt
	e.Pool = d.pool
	if d.rec != nil {
		e.JobID = d.rec.ID
		e.Kind = d.rec.Kind
		e.Pool = d.rec.Pool
		e.Repo = d.rec.Repo
		e.Source = d.rec.Source
		e.Snapshot = d.rec.Snapshot
	}
	return e
}

// fallbackID names a job whose message did not decode: its Nats-Msg-Id when that is a
// valid job id, else the "id" of its envelope when that parses (envelopeID), else
// "seq-<stream sequence>".
func fallbackID(msgID, envID string, seq uint64) string {
	if msgID != "" && brr.ValidateID(msgID) == nil {
		return msgID
	}
	if envID != "" {
		return envID
	}
	return "seq-" + strconv.FormatUint(seq, 10)
}
