package events

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// settle turns the handler's outcome into the record, the events and the ack, nak or
// term of the message, in that order: a job is acked only once its record is durable.
// It runs after the handler's slot is given back, so settles overlap with new jobs.
func (c *Consumer) settle(d *delivery, out *brr.Outcome, herr error) {
	if !d.state.CompareAndSwap(stateRunning, stateSettling) {
		return // the drain gave up on it and put it back
	}
	if herr == nil {
		c.succeed(d, out)
		return
	}
	log := d.logger(c.log) // not for a success: building it costs a ping job an allocation of ~1 KB
	// A job that stopped while a cancel request for it was there ended cancelled,
	// whatever error it stopped with: it was asked to stop (or failed just as it was
	// asked, and is not to run again either way). One that succeeded first succeeded.
	if req := c.cancelRequest(context.Background(), d); req != nil {
		c.cancelled(d, out, herr, req)
		return
	}
	res := resultOf(out)
	if c.aborting.Load() && errors.Is(herr, context.Canceled) {
		log.Warn().Err(herr).Msg("job cancelled by shutdown; putting it back")
		_ = d.msg.Nak()
		return
	}
	if delay, ok := brr.SnoozeDelay(herr); ok {
		c.snoozed.Add(1)
		log.Info().Err(herr).Dur("retry_in", delay).Msg("job cannot start yet; trying again later")
		c.snooze(d, herr, delay, res)
		c.observe(d, brr.StatusRetrying, true, res, herr)
		return
	}
	if brr.IsPermanent(herr) {
		log.Error().Err(herr).Msg("job failed")
		c.deadLetter(d, herr, brr.StatusFailed, out)
		return
	}
	if d.attempt < c.cfg.MaxDeliver {
		delay := c.backoff(d.attempt)
		c.retried.Add(1)
		log.Warn().Err(herr).Dur("retry_in", delay).Msg("job attempt failed; retrying")
		c.retry(d, herr, delay, res)
		c.observe(d, brr.StatusRetrying, false, res, herr)
		return
	}
	log.Error().Err(herr).Msg("job failed on its last attempt")
	c.deadLetter(d, herr, brr.StatusDead, out)
}

// succeed records the job as succeeded, with its events, then acks it.
func (c *Consumer) succeed(d *delivery, out *brr.Outcome) {
	res := resultOf(out)
	rec := d.rec
	rec.Status = brr.StatusSucceeded
	rec.Finished = time.Now().UTC()
	rec.Result = res
	rec.Error = ""
	ended(rec, out)
	e := c.jobEvent(d, brr.StatusSucceeded)
	e.Result = res
	msgs := append(c.cfg.outboxMsgs(e), c.outcomeMsgs(d, out)...)
	if err := c.store.PutJob(rec, msgs...); err != nil {
		// The effect happened but is not recorded: run it again later; jobs are
		// idempotent by their id.
		c.putBack(d, err)
		return
	}
	c.done.Add(1)
	_ = d.msg.Ack()
	c.observe(d, brr.StatusSucceeded, false, res, nil)
}

// resultOf is the result of out, which may be nil.
func resultOf(out *brr.Outcome) *brr.Result {
	if out == nil {
		return nil
	}
	return out.Result
}

// retry records the failed attempt with a retrying event and naks the job with delay.
func (c *Consumer) retry(d *delivery, herr error, delay time.Duration, res *brr.Result) {
	c.recordRetrying(d, herr, delay, res)
	_ = d.msg.NakWithDelay(delay)
}

// recordRetrying records that the job of d will run again after delay, with a retrying
// event.
func (c *Consumer) recordRetrying(d *delivery, herr error, delay time.Duration, res *brr.Result) {
	rec := d.rec
	rec.Status = brr.StatusRetrying
	rec.Error = herr.Error()
	rec.Result = res
	e := c.jobEvent(d, brr.StatusRetrying)
	e.Error = herr.Error()
	e.RetryInMS = delay.Milliseconds()
	if err := c.store.PutJob(rec, c.cfg.outboxMsgs(e)...); err != nil {
		d.logger(c.log).Error().Err(err).Msg("record retrying job")
	}
	if d.entry {
		c.endAttempt(d, e)
	} else {
		c.noteRetrying(d, e)
	}
}

// noteRetrying puts the retrying event e of an attempt that left no started entry (it
// ended within watchAfter: put off at once, or failed fast) in BRR_RESULTS, so that
// `brr jobs show` and Client.Job see the job waiting and why, instead of no job at all.
// It writes only where there is no entry, or one of an earlier attempt that is neither
// final nor another worker's running attempt, at that entry's revision: a final result
// another worker wrote stays.
func (c *Consumer) noteRetrying(d *delivery, e *brr.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	kv, err := c.resultsKV(ctx)
	if err != nil {
		return
	}
	data, _ := json.Marshal(e) // cannot fail: see endAttempt
	entry, err := kv.Get(ctx, d.job.ID)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		_, _ = kv.Create(ctx, d.job.ID, data)
		return
	}
	if err != nil {
		return
	}
	if _, ok := replaceable(entry.Value(), c.cfg.Worker); !ok {
		return
	}
	_, _ = kv.Update(ctx, d.job.ID, data, entry.Revision())
}

// replaceable decodes value, a BRR_RESULTS entry, and reports whether worker may replace
// it with an event of its own attempt: not when it is a final result, nor another
// worker's running (started) attempt, nor when it does not decode. noteRetrying and
// endAttempt both ask it, so that they agree on whose entry is whose.
func replaceable(value []byte, worker string) (*brr.Event, bool) {
	last, err := brr.DecodeEvent(value)
	if err != nil || last.Status.Final() || last.Worker != worker && last.Status == brr.StatusStarted {
		return nil, false
	}
	return last, true
}

// endAttempt replaces the started entry this attempt left in BRR_RESULTS (one that ran
// for watchAfter; a shorter attempt left none, and nothing is replaced) with its
// retrying event e, and nothing else: a worker that gets the job next would otherwise
// take the started entry of this worker, which is up, for an attempt still running here,
// and put the job back for as long as this worker lived (two replications waited 10
// minutes so in a soak). It is an update at the entry's revision, so a final result
// another worker wrote meanwhile stays. The started entry goes out at once but not
// synchronously: a short attempt may end before it lands, so it is looked for a few
// times. Should NATS not answer, the entry stays; the job then waits for this worker.
func (c *Consumer) endAttempt(d *delivery, e *brr.Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	kv, err := c.resultsKV(ctx)
	if err != nil {
		return
	}
	data, _ := json.Marshal(e) // strings, numbers and times: Marshal cannot fail
	for try := 0; try < 5; try++ {
		if try > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
		entry, err := kv.Get(ctx, d.job.ID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue // the started entry has not landed yet
		}
		if err != nil {
			return
		}
		last, ok := replaceable(entry.Value(), c.cfg.Worker)
		if !ok {
			return // not ours to replace: a final result, or another worker's attempt
		}
		if last.Status != brr.StatusStarted || last.Attempt != d.attempt {
			continue // an earlier attempt's entry: ours has not landed yet
		}
		if _, err := kv.Update(ctx, d.job.ID, data, entry.Revision()); err == nil || ctx.Err() != nil {
			return
		}
	}
}

// attemptsHeader carries, on a job that comes back from a snooze, how many attempts it
// had before: a snooze is not an attempt, and the copy's deliveries start from 1.
const attemptsHeader = "Brr-Attempts"

// earlierAttempts is the attempts msg's job had before msg: 0 unless it came back from a
// snooze.
func earlierAttempts(msg jetstream.Msg) int {
	n, err := strconv.Atoi(msg.Headers().Get(attemptsHeader))
	if err != nil || n < 0 {
		return 0
	}
	return n
}

// fromSnooze reports whether a job that the server published from a schedule came back
// from a snooze rather than from a schedule tick.
func (c *Consumer) fromSnooze(scheduler string) bool {
	return strings.HasPrefix(scheduler, strings.TrimSuffix(c.cfg.Subjects.AllSnoozes(), ">"))
}

// snooze puts back a job that could not start yet (a lease held elsewhere) without using
// up one of its deliveries: it asks the server to publish the job again after delay, with
// a one-shot schedule on brr.snoozes.<pool>.<job id> that carries the attempts so far,
// and acks this delivery. JetStream counts every delivery, NakWithDelay included, so a
// job snoozed a few times behind a long backup would otherwise go dead without ever
// failing. When the schedule cannot be published, it naks with delay as before.
func (c *Consumer) snooze(d *delivery, herr error, delay time.Duration, res *brr.Result) {
	c.recordRetrying(d, herr, delay, res)
	c.snoozeMsg(d, delay)
}

// waitedHeader marks a job put back once because it came again with no result at all in
// BRR_RESULTS (see Consumer.process): the next time it runs.
const waitedHeader = "Brr-Waited"

// snoozeMsg has the server publish d's job again after delay (see snooze) and acks d.
// headers are set on the copy, after the attempts so far.
func (c *Consumer) snoozeMsg(d *delivery, delay time.Duration, headers ...string) {
	msg := nats.NewMsg(c.cfg.Subjects.Snooze(d.job.Pool, d.job.ID))
	msg.Data = recordedRequest(d.msg, d.job)
	msg.Header.Set(jetstream.MsgIDHeader, d.job.ID+"-snooze-"+strconv.FormatUint(d.seq, 10)+"-"+strconv.Itoa(d.delivered))
	msg.Header.Set(attemptsHeader, strconv.Itoa(d.attempt-1))
	for i := 0; i+1 < len(headers); i += 2 {
		msg.Header.Set(headers[i], headers[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.js.PublishMsg(ctx, msg,
		jetstream.WithScheduleAt(time.Now().Add(delay)),
		jetstream.WithScheduleTarget(c.cfg.Subjects.Job(d.job.Pool, d.job.Kind)),
		jetstream.WithExpectStream(c.cfg.Subjects.JobsStream()))
	if err != nil {
		d.logger(c.log).Warn().Err(err).Msg("schedule the snoozed job; putting it back with a delay that counts as a delivery")
		_ = d.msg.NakWithDelay(delay)
		return
	}
	_ = d.msg.Ack()
}

// putBack naks a job that could not be recorded (a local store error) with backoff, so
// that it is tried again, here or on another worker.
func (c *Consumer) putBack(d *delivery, err error) {
	delay := c.backoff(d.attempt)
	d.logger(c.log).Error().Err(err).Dur("retry_in", delay).Msg("putting the job back")
	_ = d.msg.NakWithDelay(delay)
}

// backoff is the delay before attempt n+1 after attempt n failed.
func (c *Consumer) backoff(n int) time.Duration {
	return backoff(n, c.cfg.BackoffBase, c.cfg.BackoffMax, rand.Float64())
}

// backoff returns min(max, base·2^(n-1)) with ±20% jitter, r in [0, 1) choosing where in
// the jitter range: r = 0.5 is the exact value.
func backoff(n int, base, max time.Duration, r float64) time.Duration {
	d := base
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return time.Duration(float64(d) * (0.8 + 0.4*r))
}

// recordOf returns the record of a job that never got one because its message did not
// decode.
func recordOf(d *delivery, id string, kind brr.Kind, pool string) *state.JobRecord {
	return &state.JobRecord{ID: id, Pool: pool, Kind: kind, Attempts: d.attempt}
}
