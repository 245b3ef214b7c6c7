package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/clock"
	"github.com/brr-dev/brr/internal/state"
)

// maxAckPending bounds the unacknowledged jobs of one pool's consumer, across all its
// workers. It is generous: each worker already limits itself to what it can run soon,
// and settling jobs (a group-committed bbolt write, then the ack) count against it.
const maxAckPending = 20000

// Store is the worker's local state, as the consume loop needs it: job records written
// together with the events (outbox messages) they cause, and processed job ids.
type Store interface {
	// PutJob writes rec and queues out for publishing, in one transaction.
	PutJob(rec *state.JobRecord, out ...state.OutboxMsg) error
	// Job returns the record of job id.
	Job(id string) (*state.JobRecord, error)
	// Processed reports whether job id already ended here, so that a redelivery of it
	// must not run it again.
	Processed(id string) (bool, error)
}

// Handler runs one job. It returns the job's outcome (its result, the events it caused,
// the jobs it sets off; see brr.Outcome) and an error: plain errors are retried with
// backoff, brr.Permanent errors send the job to the dead-letter stream at once, and
// brr.Snooze errors try it again later without counting as a failure. A job that fails
// may have an outcome too; its events and jobs are published when it has failed for good.
// While it runs it speaks through rep. The handler does not log its errors; the consume
// loop does.
type Handler interface {
	Handle(ctx context.Context, job *brr.Job, rep brr.Reporter) (*brr.Outcome, error)
}

// Presence says whether a worker of the pool is running (Leases implements it): since
// when its process runs, and how long until it is taken for dead unless it shows it is
// alive.
type Presence interface {
	Presence(ctx context.Context, worker string) (since time.Time, left time.Duration, ok bool)
}

// Announcer publishes messages now, without storing them (the Outbox): progress events,
// and the accepted and started events of a job.
type Announcer interface {
	PublishNow(msgs ...state.OutboxMsg)
}

// ConsumerStats counts what a Consumer did since it was made.
type ConsumerStats struct {
	// InFlight is the number of jobs received and not yet settled.
	InFlight int64
	// Running is the number of handlers running now.
	Running int64
	// Done counts jobs that succeeded; Failed those that failed for good (bad input or a
	// permanent error); Dead those that ran out of attempts.
	Done, Failed, Dead int64
	// Retried counts attempts that ended with a transient error and will be retried;
	// Snoozed counts jobs put back because they could not start yet (not failures).
	Retried, Snoozed int64
	// Duplicates counts deliveries of jobs that had already been processed.
	Duplicates int64
	// Cancelled counts jobs ended on a cancel request, run or not (see cancel.go).
	Cancelled int64
}

// Consumer is the consume loop of one worker: it pulls jobs of its pools from the shared
// durable consumers, runs them with at most Config.Concurrency handlers at once, and
// settles each (ack, nak with delay, term) from the handler's outcome.
type Consumer struct {
	js    jetstream.JetStream
	store Store
	h     Handler
	pub   Announcer
	cfg   Config
	log   zerolog.Logger
	obs   Observer // nil: nobody is told (see Observe)
	peers Presence // nil: a redelivered job another worker started is run (see UsePresence)

	slots chan struct{}
	jobs  sync.WaitGroup

	mu      sync.Mutex
	pending map[*delivery]struct{}
	// aborting is set when the drain timeout has passed: handlers that end now were cut
	// short by the worker, not failed by the job.
	aborting atomic.Bool

	inFlight, running, done, failed, dead, retried, snoozed, duplicates atomic.Int64
	cancelledN                                                          atomic.Int64

	cancels cancelSet // the cancel requests in BRR_CANCEL (cancel.go)

	resultsMu sync.Mutex
	results   jetstream.KeyValue // BRR_RESULTS, opened on first use
}

// NewConsumer returns a Consumer that runs jobs with h, records them in store and
// publishes progress through pub. Streams must exist (EnsureStreams).
func NewConsumer(js jetstream.JetStream, store Store, h Handler, pub Announcer, cfg Config, log zerolog.Logger) *Consumer {
	cfg = cfg.withDefaults()
	return &Consumer{
		js:      js,
		store:   store,
		h:       h,
		pub:     pub,
		cfg:     cfg,
		log:     log.With().Str("worker", cfg.Worker).Logger(),
		slots:   make(chan struct{}, cfg.Concurrency),
		pending: make(map[*delivery]struct{}),
	}
}

// Stats returns the counts so far.
func (c *Consumer) Stats() ConsumerStats {
	return ConsumerStats{
		InFlight:   c.inFlight.Load(),
		Running:    c.running.Load(),
		Done:       c.done.Load(),
		Failed:     c.failed.Load(),
		Dead:       c.dead.Load(),
		Retried:    c.retried.Load(),
		Snoozed:    c.snoozed.Load(),
		Duplicates: c.duplicates.Load(),
		Cancelled:  c.cancelledN.Load(),
	}
}

// consumerConfig is the durable pull consumer that every worker of pool shares.
func consumerConfig(cfg Config, pool string) jetstream.ConsumerConfig {
	name := cfg.Subjects.Consumer(pool)
	return jetstream.ConsumerConfig{
		Name:          name,
		Durable:       name,
		Description:   "brr workers of pool " + pool,
		FilterSubject: cfg.Subjects.Jobs(pool),
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxDeliver:    cfg.MaxDeliver,
		MaxAckPending: maxAckPending,
		MaxWaiting:    512,
	}
}

func (c *Consumer) ensureConsumer(ctx context.Context, pool string) (jetstream.Consumer, error) {
	cc := consumerConfig(c.cfg, pool)
	var cons jetstream.Consumer
	err := retryCreate(ctx, func() error {
		var err error
		cons, err = c.js.CreateOrUpdateConsumer(ctx, c.cfg.Subjects.JobsStream(), cc)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s on stream %s (are the streams created?): %w", cc.Name, c.cfg.Subjects.JobsStream(), err)
	}
	return cons, nil
}

// Run creates or updates the durable consumer of each pool and runs jobs until ctx is
// done. Then it stops pulling, puts back (naks) jobs received but not started, gives
// running jobs DrainTimeout to finish and settle, cancels and naks those still running,
// and returns nil. Jobs run with a context of their own, not ctx, so that shutdown
// lets them finish.
func (c *Consumer) Run(ctx context.Context) error {
	cons := make([]jetstream.Consumer, len(c.cfg.Pools))
	for i, pool := range c.cfg.Pools {
		cn, err := c.ensureConsumer(ctx, pool)
		if err != nil {
			return err
		}
		cons[i] = cn
	}
	jobCtx, abortCause := context.WithCancelCause(context.WithoutCancel(ctx))
	abort := func() { abortCause(errDrainTimeout) }
	defer abort()
	// Cancel requests are watched until the drain is over: a job may be cancelled
	// while the worker waits for it to finish.
	watchCtx, stopWatch := context.WithCancel(context.WithoutCancel(ctx))
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		c.watchCancels(watchCtx)
	}()
	defer func() {
		stopWatch()
		<-watchDone
	}()

	var pulls sync.WaitGroup
	for i, pool := range c.cfg.Pools {
		pulls.Add(1)
		go func() {
			defer pulls.Done()
			c.pull(ctx, jobCtx, pool, cons[i])
		}()
	}
	beatDone := make(chan struct{})
	beatStopped := make(chan struct{})
	go func() {
		defer close(beatStopped)
		c.heartbeat(beatDone)
	}()
	c.log.Info().Strs("pools", c.cfg.Pools).Int("concurrency", c.cfg.Concurrency).Msg("consuming jobs")

	<-ctx.Done()
	pulls.Wait()
	c.drain(abort)
	close(beatDone)
	<-beatStopped
	return nil
}

// drain waits for running jobs to settle; after DrainTimeout it cancels them, waits a
// little more, and puts back (naks) those whose handler still has not returned.
func (c *Consumer) drain(abort context.CancelFunc) {
	n := c.inFlight.Load()
	if n > 0 {
		c.log.Info().Int64("in_flight", n).Dur("timeout", c.cfg.DrainTimeout).Msg("waiting for running jobs to finish")
	}
	all := make(chan struct{})
	go func() {
		c.jobs.Wait()
		close(all)
	}()
	timer := time.NewTimer(c.cfg.DrainTimeout)
	defer timer.Stop()
	select {
	case <-all:
		return
	case <-timer.C:
	}
	c.aborting.Store(true)
	abort()
	c.log.Warn().Int64("in_flight", c.inFlight.Load()).Msg("drain timeout passed; cancelling running jobs")
	grace := min(5*time.Second, c.cfg.DrainTimeout)
	timer.Reset(grace)
	select {
	case <-all:
		return
	case <-timer.C:
	}
	c.mu.Lock()
	var stuck []*delivery
	for d := range c.pending {
		if d.state.CompareAndSwap(stateRunning, stateAbandoned) {
			stuck = append(stuck, d)
		}
	}
	c.mu.Unlock()
	for _, d := range stuck {
		d.logger(c.log).Warn().Msg("job did not stop when cancelled; putting it back")
		_ = d.msg.Nak()
	}
}

// pull takes jobs of one pool from its consumer while ctx lasts, and starts each as soon
// as a slot is free. Only 2×Concurrency messages are buffered in this client, since a
// buffered message's AckWait is already running.
func (c *Consumer) pull(ctx, jobCtx context.Context, pool string, cons jetstream.Consumer) {
	log := c.log.With().Str("pool", pool).Logger()
	it, err := c.messages(cons)
	for ctx.Err() == nil {
		if err != nil {
			log.Error().Err(err).Msg("pull jobs; trying again in 1s")
			if !clock.Sleep(ctx, time.Second) {
				return
			}
			if cons, err = c.ensureConsumer(ctx, pool); err == nil {
				it, err = c.messages(cons)
			}
			continue
		}
		msg, nerr := it.Next(jetstream.NextContext(ctx))
		if nerr != nil {
			if ctx.Err() != nil {
				break
			}
			if errors.Is(nerr, jetstream.ErrMsgIteratorClosed) {
				err = nerr
				continue
			}
			log.Warn().Err(nerr).Msg("pull jobs")
			continue
		}
		if !c.takeSlot(ctx, pool, msg) {
			_ = msg.Nak()
			continue
		}
		c.jobs.Add(1)
		c.inFlight.Add(1)
		go c.process(jobCtx, pool, msg)
	}
	if it == nil {
		return
	}
	// Put back what this client holds and has not started.
	it.Drain()
	for {
		msg, err := it.Next(jetstream.NextMaxWait(time.Second))
		if err != nil {
			return
		}
		_ = msg.Nak()
	}
}

// acceptedAfter is how long a job taken off the queue may wait for a free slot before
// the worker announces it accepted: a job that starts at once is announced started only.
const acceptedAfter = 50 * time.Millisecond

// takeSlot takes a slot for msg, waiting while every slot is busy; it returns false when
// ctx ends first. A job that waits longer than acceptedAfter is announced accepted, so
// that whoever follows it knows a worker holds it and why it has not started.
func (c *Consumer) takeSlot(ctx context.Context, pool string, msg jetstream.Msg) bool {
	select {
	case c.slots <- struct{}{}:
		return true
	default:
	}
	taken := time.Now().UTC()
	t := time.NewTimer(acceptedAfter)
	defer t.Stop()
	select {
	case c.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	case <-t.C:
	}
	c.announceAccepted(pool, msg, taken)
	select {
	case c.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// announceAccepted publishes the accepted event of msg's job, taken off the queue at
// taken, at once (not through the outbox). A message that does not decode, or a job
// already processed here, is announced nothing: process deals with them.
func (c *Consumer) announceAccepted(pool string, msg jetstream.Msg, taken time.Time) {
	meta, err := msg.Metadata()
	if err != nil {
		return
	}
	job, err := c.decode(pool, msg)
	if err != nil {
		return
	}
	if done, err := c.store.Processed(job.ID); err != nil || done {
		return
	}
	e := c.cfg.newEvent(brr.EventJob, brr.StatusAccepted)
	e.Time = taken
	e.Attempt = earlierAttempts(msg) + int(meta.NumDelivered)
	scope := job.Args.Scope()
	e.JobID, e.Kind, e.Pool, e.Repo, e.Source = job.ID, job.Kind, job.Pool, scope.Repo, scope.Source
	c.pub.PublishNow(c.cfg.eventMsg(e))
}

// messages starts pulling from cons. Pull requests expire after 5 s with a heartbeat
// every second, instead of nats.go's 30 s: a pull request the server dropped (seen
// under a burst of thousands of jobs) is then noticed and replaced within two seconds,
// instead of leaving the worker idle for half a minute.
func (c *Consumer) messages(cons jetstream.Consumer) (jetstream.MessagesContext, error) {
	return cons.Messages(
		jetstream.PullMaxMessages(2*c.cfg.Concurrency),
		jetstream.PullExpiry(5*time.Second),
		jetstream.PullHeartbeat(time.Second),
	)
}

// heartbeat tells the server every AckWait/3 that the jobs this worker holds are being
// worked on, so that AckWait can stay short and a dead worker's jobs come back fast.
func (c *Consumer) heartbeat(done <-chan struct{}) {
	t := time.NewTicker(max(c.cfg.AckWait/3, 10*time.Millisecond))
	defer t.Stop()
	var msgs []jetstream.Msg
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		msgs = msgs[:0]
		c.mu.Lock()
		for d := range c.pending {
			msgs = append(msgs, d.msg)
		}
		c.mu.Unlock()
		for _, m := range msgs {
			_ = m.InProgress()
		}
	}
}
