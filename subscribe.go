package brr

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

type subscribeOptions struct {
	deliverAll bool
	since      time.Time
}

// SubscribeOption configures Subscribe.
type SubscribeOption func(*subscribeOptions)

// DeliverAll makes Subscribe start with the oldest event the stream keeps.
func DeliverAll() SubscribeOption { return func(o *subscribeOptions) { o.deliverAll = true } }

// DeliverSince makes Subscribe start with the first event stored at or after t.
func DeliverSince(t time.Time) SubscribeOption { return func(o *subscribeOptions) { o.since = t } }

// eventFilter checks that filter is under the client's events prefix; empty means all events.
func (c *Client) eventFilter(filter string) (string, error) {
	all := c.subj.Events("")
	if filter == "" {
		return all, nil
	}
	if !strings.HasPrefix(filter, strings.TrimSuffix(all, ">")) || strings.ContainsAny(filter, " \t\r\n") {
		return "", fmt.Errorf("%w: event filter %q is not under %q; use e.g. %q", ErrInvalid, filter, all, c.subj.Events(EventJob))
	}
	return filter, nil
}

func (c *Client) eventsStream(ctx context.Context) error {
	if err := c.checkConnected(); err != nil {
		return err
	}
	if _, err := c.js.Stream(ctx, c.subj.EventsStream()); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return c.noStream(c.subj.EventsStream())
		}
		return fmt.Errorf("look up stream %s: %w", c.subj.EventsStream(), c.publishErr(err))
	}
	return nil
}

// orderedResetAttempts is how many times an ordered consumer that follows events tries to
// make its server-side consumer again under one name, when it lost the one it had, before
// it starts over under a new name. nats.go's default (no limit) can leave a subscriber
// deaf for good after the NATS node it was connected to is killed (SIGKILL, not a clean
// shutdown): the first attempt, made while the cluster elects new leaders, may place the
// new consumer on the dead node, and every later attempt under that name then times out
// (nats.go v1.55.0, nats-server v2.15.2). With a limit the consumer is made again under
// a new name and placed on a live node.
const orderedResetAttempts = 2

// Subscribe calls fn with each event whose subject matches filter, in stream order, in
// one goroutine. filter is a subject filter under the events prefix, such as
// Subjects{}.Events(EventHealth) or "brr.events.job.*.failed"; empty means every event.
// By default only events published after the call are delivered; see DeliverAll and
// DeliverSince. Subscribe returns once the subscription is in place; delivery goes on
// until ctx is done. Events that do not decode (a newer version) are skipped.
func (c *Client) Subscribe(ctx context.Context, filter string, fn func(*Event), opts ...SubscribeOption) error {
	filter, err := c.eventFilter(filter)
	if err != nil {
		return err
	}
	var o subscribeOptions
	for _, opt := range opts {
		opt(&o)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy, MaxResetAttempts: orderedResetAttempts}
	switch {
	case o.deliverAll:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	case !o.since.IsZero():
		since := o.since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	sctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := c.eventsStream(sctx); err != nil {
		return fmt.Errorf("subscribe to %s: %w", filter, err)
	}
	cons, err := c.js.OrderedConsumer(sctx, c.subj.EventsStream(), cfg)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", filter, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if ctx.Err() != nil {
			return
		}
		e, err := DecodeEvent(m.Data())
		if err != nil {
			return
		}
		fn(e)
	}, jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) {}))
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", filter, err)
	}
	go func() {
		<-ctx.Done()
		cc.Stop()
	}()
	return nil
}

// Events returns the stored events that match filter (as for Subscribe) and were
// published at or after since (the zero time: all of them), oldest first, at most limit
// of the newest when limit > 0.
func (c *Client) Events(ctx context.Context, filter string, since time.Time, limit int) ([]*Event, error) {
	filter, err := c.eventFilter(filter)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := c.eventsStream(ctx); err != nil {
		return nil, fmt.Errorf("read events %s: %w", filter, err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	var out []*Event
	err = c.scan(ctx, c.subj.EventsStream(), cfg, func(m jetstream.Msg) {
		if e, err := DecodeEvent(m.Data()); err == nil {
			out = append(out, e)
			if limit > 0 && len(out) > 2*limit {
				out = append(out[:0:0], out[len(out)-limit:]...)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read events %s: %w", filter, err)
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}
