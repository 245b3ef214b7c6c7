// Package notify posts brr events to webhooks: the `notify:` targets of the worker's
// config. Each target has a durable consumer on the event stream, shared by every worker
// configured with it and limited to one unacknowledged event, so that exactly one worker
// posts each notification, in the stream's order, and another takes over when that
// worker dies. The consumer is the queue: it lives in NATS, so it survives the restart
// of any worker; events a worker produced but had not yet published when it stopped wait
// in its outbox (its state database) and join the stream when it starts again. A
// notification is posted until the receiver answers 2xx, with backoff, and dropped only
// when it is older than the target's max age, when more than the target's queue wait
// behind it, or when the receiver refuses it as malformed (400, 413, 415, 422).
package notify

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/clock"
)

// Config configures a Notifier.
type Config struct {
	Subjects brr.Subjects
	Targets  []Target
	// AckWait is how long the server waits for a worker to settle a notification before
	// it gives it to another; the worker renews it while it retries. 0: 30s.
	AckWait time.Duration
	// Inactive is how long a target's consumer outlives its last worker (a target
	// removed from every config then goes away). 0: a week.
	Inactive time.Duration
	// MinBackoff and MaxBackoff bound the wait between attempts, doubled each time.
	// 0: 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// Client posts the requests; nil: a client with no overall timeout (each attempt
	// has the target's).
	Client *http.Client
	// Now is the clock; nil: time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.AckWait <= 0 {
		c.AckWait = 30 * time.Second
	}
	if c.Inactive <= 0 {
		c.Inactive = 7 * 24 * time.Hour
	}
	if c.MinBackoff <= 0 {
		c.MinBackoff = time.Second
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Minute
	}
	if c.MaxBackoff < c.MinBackoff {
		c.MaxBackoff = c.MinBackoff
	}
	if c.Client == nil {
		c.Client = &http.Client{}
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	for i := range c.Targets {
		c.Targets[i] = c.Targets[i].withDefaults()
	}
	return c
}

// Stats counts what a Notifier did since it was made, over all its targets.
type Stats struct {
	// Sent counts notifications the receiver accepted; Failures attempts it did not
	// (an error, a timeout or a non-2xx answer); Dropped notifications given up (too
	// old, queue full, refused as malformed, not a brr event); Skipped events below
	// the target's severity.
	Sent, Failures, Dropped, Skipped int64
}

// Notifier posts the events of the event stream to its targets.
type Notifier struct {
	js  jetstream.JetStream
	cfg Config
	log zerolog.Logger

	sent, failures, dropped, skipped atomic.Int64
}

// New returns a Notifier of cfg's targets; it checks them (a bad one is an error that
// names it) but does not touch NATS until Run.
func New(js jetstream.JetStream, cfg Config, log zerolog.Logger) (*Notifier, error) {
	cfg.Targets = append([]Target(nil), cfg.Targets...)
	cfg = cfg.withDefaults()
	seen := map[string]bool{}
	for i, t := range cfg.Targets {
		var errs []error
		if err := ValidateURL(t.URL); err != nil {
			errs = append(errs, err)
		}
		if err := ValidateName(t.Name); err != nil {
			errs = append(errs, err)
		}
		if err := ValidateEvents(cfg.Subjects, t.Events); err != nil {
			errs = append(errs, err)
		}
		if _, err := ParseShape(string(t.Shape)); err != nil {
			errs = append(errs, err)
		}
		if seen[t.Name] {
			errs = append(errs, fmt.Errorf("name %q is used by another target; give each its own name", t.Name))
		}
		seen[t.Name] = true
		if err := errors.Join(errs...); err != nil {
			return nil, fmt.Errorf("notify target %d: %w", i, err)
		}
	}
	return &Notifier{js: js, cfg: cfg, log: log}, nil
}

// Stats returns the counts so far.
func (n *Notifier) Stats() Stats {
	return Stats{Sent: n.sent.Load(), Failures: n.failures.Load(), Dropped: n.dropped.Load(), Skipped: n.skipped.Load()}
}

// Run posts notifications until ctx is done. A notification being retried then is put
// back for the next worker (or this one, restarted).
func (n *Notifier) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for i := range n.cfg.Targets {
		t := &n.cfg.Targets[i]
		log := n.log.With().Str("notify", t.Name).Str("url", Redact(t.URL)).Logger()
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.runTarget(ctx, t, log)
		}()
	}
	wg.Wait()
	return nil
}

// consumerConfig is the durable consumer of t that every worker with t shares. One
// notification at a time is out (MaxAckPending 1): that keeps them in order across
// workers, and the next waits while the receiver is down.
func (n *Notifier) consumerConfig(t *Target) jetstream.ConsumerConfig {
	name := Consumer(t.Name)
	return jetstream.ConsumerConfig{
		Name:              name,
		Durable:           name,
		Description:       "brr notifications to " + Redact(t.URL),
		FilterSubjects:    t.Events,
		DeliverPolicy:     jetstream.DeliverNewPolicy,
		AckPolicy:         jetstream.AckExplicitPolicy,
		AckWait:           n.cfg.AckWait,
		MaxDeliver:        -1,
		MaxAckPending:     1,
		InactiveThreshold: n.cfg.Inactive,
	}
}

// runTarget sends t's notifications until ctx is done. After a failed fetch it makes
// sure the consumer exists (an operator may have deleted it, or it outlived Inactive
// while no worker ran): a deleted consumer answers a pull with an error or not at all.
func (n *Notifier) runTarget(ctx context.Context, t *Target, log zerolog.Logger) {
	for first := true; ctx.Err() == nil; first = false {
		cons := n.ensureConsumer(ctx, t, log)
		if cons == nil {
			return
		}
		if first {
			log.Info().Strs("events", t.Events).Str("shape", string(t.Shape)).Str("min_severity", t.MinSeverity.String()).Msg("sending notifications")
		}
		if err := n.fetch(ctx, t, cons, log); err != nil {
			log.Warn().Err(err).Msg("fetch a notification; checking the consumer and trying again")
			clock.Sleep(ctx, time.Second)
		}
	}
}

// ensureConsumer creates or updates t's consumer, again with backoff until it works; nil
// when ctx ends first.
func (n *Notifier) ensureConsumer(ctx context.Context, t *Target, log zerolog.Logger) jetstream.Consumer {
	for delay := time.Second; ; delay = min(2*delay, time.Minute) {
		cons, err := n.js.CreateOrUpdateConsumer(ctx, n.cfg.Subjects.EventsStream(), n.consumerConfig(t))
		if err == nil {
			return cons
		}
		if ctx.Err() != nil {
			return nil
		}
		log.Warn().Err(err).Dur("retry_in", delay).Msg("create the notification consumer; trying again")
		if !clock.Sleep(ctx, delay) {
			return nil
		}
	}
}

// fetch takes t's notifications one at a time from cons until ctx is done (nil) or a
// fetch fails.
func (n *Notifier) fetch(ctx context.Context, t *Target, cons jetstream.Consumer, log zerolog.Logger) error {
	for ctx.Err() == nil {
		fctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		batch, err := cons.Fetch(1, jetstream.FetchContext(fctx))
		if err == nil {
			for msg := range batch.Messages() {
				n.handle(ctx, t, msg, log)
			}
			err = batch.Error()
		}
		cancel()
		if ctx.Err() == nil && err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return err
		}
	}
	return nil
}

// handle posts msg to t until the receiver takes it, or drops it; it acknowledges msg
// then, or puts it back when ctx ends first.
func (n *Notifier) handle(ctx context.Context, t *Target, msg jetstream.Msg, log zerolog.Logger) {
	// The server would give msg to another worker after AckWait: tell it this one is
	// still on it, for as long as it retries.
	stop := make(chan struct{})
	var beat sync.WaitGroup
	beat.Add(1)
	go func() {
		defer beat.Done()
		tick := time.NewTicker(n.cfg.AckWait / 3)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				_ = msg.InProgress()
			}
		}
	}()
	done := n.deliver(ctx, t, msg, log)
	close(stop)
	beat.Wait()
	if !done {
		_ = msg.Nak() // shutting down: the next worker takes it at once
		return
	}
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := msg.DoubleAck(actx); err != nil {
		// Not acknowledged: the server gives it again after AckWait, and the receiver
		// may get it twice (with the same X-Brr-Event-Id).
		log.Warn().Err(err).Msg("acknowledge a notification; it may be sent again")
	}
}

// deliver posts msg until the receiver takes it or it is dropped (true), or ctx ends
// (false).
func (n *Notifier) deliver(ctx context.Context, t *Target, msg jetstream.Msg, log zerolog.Logger) bool {
	meta, err := msg.Metadata()
	if err != nil {
		n.dropped.Add(1)
		log.Error().Err(err).Str("subject", msg.Subject()).Msg("notification without metadata; dropped")
		return true
	}
	ev, err := brr.DecodeEvent(msg.Data())
	if err != nil {
		n.dropped.Add(1)
		log.Error().Err(err).Str("subject", msg.Subject()).Uint64("seq", meta.Sequence.Stream).Msg("not a brr event; dropped")
		return true
	}
	note := &notification{subject: msg.Subject(), data: msg.Data(), event: ev, severity: SeverityOf(ev)}
	log = log.With().Str("subject", note.subject).Str("event", ev.ID).Logger()
	if note.severity < t.MinSeverity {
		n.skipped.Add(1)
		return true
	}
	if meta.NumPending >= uint64(t.Queue) {
		n.dropped.Add(1)
		log.Error().Uint64("behind", meta.NumPending).Int("queue", t.Queue).Msg("notification queue full; dropped the oldest")
		return true
	}
	delay := n.cfg.MinBackoff
	for attempt := 1; ; attempt++ {
		if age := n.cfg.Now().Sub(meta.Timestamp); age > t.MaxAge {
			n.dropped.Add(1)
			log.Error().Dur("age", age).Dur("max_age", t.MaxAge).Int("attempts", attempt-1).Msg("notification too old; dropped")
			return true
		}
		err := n.post(ctx, t, note)
		if err == nil {
			n.sent.Add(1)
			log.Debug().Int("attempt", attempt).Msg("notification sent")
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		n.failures.Add(1)
		var refused *refusedError
		if errors.As(err, &refused) {
			n.dropped.Add(1)
			log.Error().Err(err).Msg("receiver refused the notification as malformed; dropped")
			return true
		}
		log.Warn().Err(err).Int("attempt", attempt).Dur("retry_in", delay).Msg("post notification; trying again")
		if !clock.Sleep(ctx, delay) {
			return false
		}
		delay = min(2*delay, n.cfg.MaxBackoff)
	}
}

// refusedError is an answer that says the request itself is wrong: sending it again
// cannot help.
type refusedError struct{ err error }

func (e *refusedError) Error() string { return e.err.Error() }

// post makes one attempt.
func (n *Notifier) post(ctx context.Context, t *Target, note *notification) error {
	req, err := t.request(note, n.cfg.Now())
	if err != nil {
		return &refusedError{err}
	}
	ctx, cancel := context.WithTimeout(ctx, t.Timeout)
	defer cancel()
	resp, err := n.cfg.Client.Do(req.WithContext(ctx))
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return nil
	}
	err = fmt.Errorf("receiver answered %s: %s", resp.Status, strings.TrimSpace(string(snippet)))
	switch resp.StatusCode {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
		return &refusedError{err}
	}
	return err
}
