package events

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/brr-dev/brr/internal/state"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// OutboxStore is the durable queue of messages waiting to be published: the bbolt outbox
// of *state.DB, where events are written in the same transaction as the state change
// they report.
type OutboxStore interface {
	// OutboxAfter returns up to max of the oldest items with a sequence number above
	// after, in the order they were written.
	OutboxAfter(after uint64, max int) ([]state.OutboxItem, error)
	// AckOutboxSoon removes published items with the store's next commit (or soon on
	// their own), not in a commit of their own; FlushOutboxAcks removes them now.
	AckOutboxSoon(seqs ...uint64)
	FlushOutboxAcks() error
	// Notify is signalled when items are added.
	Notify() <-chan struct{}
}

const (
	// outboxBatch is how many publishes may wait for their PubAck at once, and how many
	// published items are removed from the store in one call: enough to fill the pipe
	// to the server, and to make one fsync per batch cheap beside it.
	outboxBatch = 512
	// outboxRead is how many items are read from the store at a time: several batches,
	// so that removing one batch overlaps with publishing the next.
	outboxRead = 8 * outboxBatch
	// outboxAckTimeout bounds the wait for a batch's PubAcks; what is not acked by then
	// is published again (and de-duplicated by its Nats-Msg-Id).
	outboxAckTimeout = 10 * time.Second
	// outboxPoll is how often Run looks at the outbox without a notification, so that
	// items written by a process that missed its chance to notify still go out.
	outboxPoll       = time.Second
	outboxBackoffMin = 100 * time.Millisecond
	outboxBackoffMax = 5 * time.Second
)

// errDisconnected is returned by a publish attempt while the connection is down: the
// items stay in the outbox until it is back.
var errDisconnected = errors.New("not connected to NATS")

// Outbox publishes what the worker wrote to its bbolt outbox, so that an event is never
// lost when NATS is unreachable at the moment it happens, and never published twice
// either: every message carries its own Nats-Msg-Id and the streams drop the copies a
// crash between the publish and the removal of the item makes. Published items are
// removed with the store's next commit (AckOutboxSoon), not one of their own; until then
// the Outbox reads on past them (docs/events.md, "When the outbox lets go").
//
// Items go out oldest first on one connection as async publishes, at most outboxBatch
// of them waiting for their PubAck; the server stores what one connection sends in the
// order it arrives, so the events of one job reach the stream in the order they were
// written. When a PubAck fails, publishing stops and starts again from that item; the
// later ones that did land are then dropped by the stream as duplicates.
type Outbox struct {
	js    jetstream.JetStream
	store OutboxStore
	log   zerolog.Logger

	// mu makes Run and Flush take turns: two drains at once would publish the same
	// items twice (harmless, but wasteful) and could interleave their order.
	mu sync.Mutex
	// published is the sequence number of the last item published: items up to it
	// may wait in the store for their removal (AckOutboxSoon), and are not read again.
	// A new Outbox (a restart) starts from 0 and publishes them again, and the streams
	// drop them as duplicates.
	published uint64
}

// NewOutbox returns an Outbox that publishes the items of store with js.
func NewOutbox(js jetstream.JetStream, store OutboxStore, log zerolog.Logger) *Outbox {
	return &Outbox{js: js, store: store, log: log}
}

// Run publishes outbox items as they are written until ctx is done, then returns nil.
// While NATS is unreachable it retries with backoff; the items wait in bbolt meanwhile.
func (o *Outbox) Run(ctx context.Context) error {
	tick := time.NewTicker(outboxPoll)
	defer tick.Stop()
	var backoff time.Duration
	failing := false
	for {
		n, err := o.drain(ctx)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			backoff = min(max(2*backoff, outboxBackoffMin), outboxBackoffMax)
			if !failing {
				// Once per outage: the retries that follow would only repeat it.
				o.log.Warn().Err(err).Msg("publish outbox: events wait in the state database until NATS takes them")
				failing = true
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(backoff):
			}
			continue
		}
		if failing {
			o.log.Info().Int("published", n).Msg("publish outbox: NATS takes events again")
			failing = false
		}
		backoff = 0
		select {
		case <-ctx.Done():
			return nil
		case <-o.store.Notify():
		case <-tick.C:
		}
	}
}

// Flush publishes everything in the outbox now and returns when it is empty, retrying
// while NATS is unreachable until ctx is done. The worker calls it at shutdown; what
// it cannot publish stays in bbolt for the next start.
func (o *Outbox) Flush(ctx context.Context) error {
	var backoff time.Duration
	var last error // the reason of the last failed attempt, rather than ctx's end
	for {
		_, err := o.drain(ctx)
		if err == nil {
			err = o.store.FlushOutboxAcks()
		}
		if err == nil {
			return nil
		}
		if last == nil || ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
			last = err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("flush outbox: %w", last)
		}
		backoff = min(max(2*backoff, outboxBackoffMin), outboxBackoffMax)
		select {
		case <-ctx.Done():
			return fmt.Errorf("flush outbox: %w", last)
		case <-time.After(backoff):
		}
	}
}

// drain publishes until the outbox is empty, and returns how many items it published.
func (o *Outbox) drain(ctx context.Context) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	total := 0
	for ctx.Err() == nil {
		items, err := o.store.OutboxAfter(o.published, outboxRead)
		if err != nil {
			return total, fmt.Errorf("read outbox: %w", err)
		}
		if len(items) == 0 {
			return total, nil
		}
		n, err := o.publishChunk(ctx, items)
		total += n
		if err != nil {
			return total, err
		}
	}
	return total, ctx.Err()
}

// publishChunk publishes items in order with at most outboxBatch PubAcks outstanding,
// and hands each run of outboxBatch acknowledged items to the store for removal
// (AckOutboxSoon: with its next commit) while later ones are in flight. It stops at the
// first item that is not acknowledged, and returns how many were acknowledged.
func (o *Outbox) publishChunk(ctx context.Context, items []state.OutboxItem) (int, error) {
	if o.js.Conn().Status() != nats.CONNECTED {
		return 0, errDisconnected
	}
	var (
		futures = make([]jetstream.PubAckFuture, len(items))
		sent    int // items published
		acked   int // leading items whose PubAck is in
		removed int // leading items handed to AckOutboxSoon
		err     error
	)
	remove := func() {
		seqs := make([]uint64, acked-removed)
		for i := range seqs {
			seqs[i] = items[removed+i].Seq
		}
		removed = acked
		o.published = items[acked-1].Seq
		o.store.AckOutboxSoon(seqs...)
	}
	timeout := time.NewTimer(outboxAckTimeout)
	defer timeout.Stop()
	// wait waits for the PubAck of the oldest outstanding item.
	wait := func() error {
		it := items[acked]
		select {
		case <-futures[acked].Ok():
		case err := <-futures[acked].Err():
			return fmt.Errorf("publish %s (msg id %s): %w", it.Subject, it.MsgID, err)
		case <-timeout.C:
			return fmt.Errorf("publish %s (msg id %s): %w", it.Subject, it.MsgID, jetstream.ErrAsyncPublishTimeout)
		case <-ctx.Done():
			return ctx.Err()
		}
		acked++
		timeout.Reset(outboxAckTimeout)
		if acked-removed >= outboxBatch {
			remove()
		}
		return nil
	}

	for sent < len(items) && err == nil {
		if sent-acked >= outboxBatch {
			if err = wait(); err != nil {
				break
			}
		}
		it := items[sent]
		m := &nats.Msg{
			Subject: it.Subject,
			Data:    it.Data,
			Header:  nats.Header{jetstream.MsgIDHeader: []string{it.MsgID}},
		}
		futures[sent], err = o.js.PublishMsgAsync(m)
		if err != nil {
			err = fmt.Errorf("publish %s (msg id %s): %w", it.Subject, it.MsgID, err)
			break
		}
		sent++
	}
	for acked < sent {
		if werr := wait(); werr != nil {
			err = werr
			break
		}
	}
	if acked > removed {
		remove()
	}
	return acked, err
}

// PublishNow publishes msgs at once, in order, without the outbox: progress events, which
// are out of date a second later, and the accepted and started events of a job that has
// just come off the queue, which a waiting client should see without an fsync in between.
// It never blocks the job; when NATS is down the messages are dropped.
//
// They go out as plain NATS publishes, not JetStream ones: the stream stores them all
// the same (and drops a copy by its Nats-Msg-Id), but the server sends no PubAck, which
// nobody here would read. A ping job's started event was one of the three PubAcks a job
// cost the server to make and the worker to parse. They share the connection with the
// outbox's publishes, so a started event still reaches the stream before the final
// event of its job.
func (o *Outbox) PublishNow(msgs ...state.OutboxMsg) {
	nc := o.js.Conn()
	if nc.Status() != nats.CONNECTED {
		return
	}
	for _, msg := range msgs {
		m := &nats.Msg{
			Subject: msg.Subject,
			Data:    msg.Data,
			Header:  nats.Header{jetstream.MsgIDHeader: []string{msg.MsgID}},
		}
		if err := nc.PublishMsg(m); err != nil {
			return
		}
	}
}
