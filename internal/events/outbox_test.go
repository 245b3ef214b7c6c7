package events

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
)

var _ OutboxStore = (*state.DB)(nil)

// openState opens a real state database in a temporary directory.
func openState(t testing.TB) *state.DB {
	t.Helper()
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	return db
}

// ensure creates the brr streams and buckets.
func ensure(t testing.TB, js jetstream.JetStream, cfg Config) {
	t.Helper()
	if err := EnsureStreams(context.Background(), js, cfg); err != nil {
		t.Fatal(err)
	}
}

// runOutbox runs o until the test ends.
func runOutbox(t testing.TB, o *Outbox) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- o.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// waitEmpty waits until the outbox of db is empty; limit is a safety net against a
// hang, not a timing assertion.
func waitEmpty(t testing.TB, db *state.DB, limit time.Duration) {
	t.Helper()
	var n int
	empty := testkit.WaitFor(limit, func() bool {
		var err error
		if n, err = db.OutboxLen(); err != nil {
			t.Fatal(err)
		}
		return n == 0
	})
	if !empty {
		t.Fatalf("outbox still holds %d items after %v", n, limit)
	}
}

// streamMsgs reads every message of stream with an ordered consumer.
func streamMsgs(t testing.TB, js jetstream.JetStream, stream string) []jetstream.Msg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	total := int(info.State.Msgs)
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for len(msgs) < total {
		batch, err := c.Fetch(total-len(msgs), jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			msgs = append(msgs, m)
			n++
		}
		if err := batch.Error(); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Fatalf("stream %s: read %d of %d messages", stream, len(msgs), total)
		}
	}
	return msgs
}

// streamLen returns how many messages stream holds.
func streamLen(t testing.TB, js jetstream.JetStream, stream string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// jobEvent returns a job event for job id with status.
func jobEvent(cfg Config, id string, status brr.Status) *brr.Event {
	e := cfg.newEvent(brr.EventJob, status)
	e.JobID, e.Kind, e.Pool = id, brr.KindPing, brr.DefaultPool
	return e
}

func TestOutboxPublishes(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	cfg := Config{Worker: "w1", Host: "h1"}
	ensure(t, js, cfg)
	db := openState(t)
	runOutbox(t, NewOutbox(js, db, zerolog.Nop()))

	// Three jobs, their events interleaved as concurrent jobs write them.
	var want []*brr.Event
	for _, status := range []brr.Status{brr.StatusAccepted, brr.StatusStarted, brr.StatusSucceeded} {
		for _, id := range []string{"job-a", "job-b", "job-c"} {
			e := jobEvent(cfg, id, status)
			rec := &state.JobRecord{ID: id, Pool: brr.DefaultPool, Kind: brr.KindPing, Status: status, Worker: "w1", Created: time.Now()}
			if err := db.PutJob(rec, cfg.outboxMsgs(e)...); err != nil {
				t.Fatal(err)
			}
			want = append(want, e)
		}
	}
	snap := cfg.newEvent(brr.EventSnapshot, brr.StatusCommitted)
	snap.Snapshot = "s1"
	if err := db.Enqueue(cfg.outboxMsgs(snap)...); err != nil {
		t.Fatal(err)
	}
	want = append(want, snap)
	waitEmpty(t, db, 30*time.Second)

	msgs := streamMsgs(t, js, cfg.Subjects.EventsStream())
	if len(msgs) != len(want) {
		t.Fatalf("stream holds %d events, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		w := want[i]
		if got := m.Headers().Get(jetstream.MsgIDHeader); got != w.ID {
			t.Errorf("event %d: Nats-Msg-Id %q, want %q", i, got, w.ID)
		}
		if got, want := m.Subject(), cfg.Subjects.Event(w); got != want {
			t.Errorf("event %d: subject %q, want %q", i, got, want)
		}
		e, err := brr.DecodeEvent(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if e.ID != w.ID || e.JobID != w.JobID || e.Status != w.Status {
			t.Errorf("event %d = %s %s %s, want %s %s %s", i, e.ID, e.JobID, e.Status, w.ID, w.JobID, w.Status)
		}
	}

	kv, err := js.KeyValue(context.Background(), cfg.Subjects.ResultsBucket())
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"job-a", "job-b", "job-c"} {
		entry, err := kv.Get(context.Background(), id)
		if err != nil {
			t.Fatalf("result of %s: %v", id, err)
		}
		e, err := brr.DecodeEvent(entry.Value())
		if err != nil {
			t.Fatal(err)
		}
		if e.JobID != id || e.Status != brr.StatusSucceeded {
			t.Errorf("result of %s = %s %s, want %s succeeded", id, e.JobID, e.Status, id)
		}
	}
}

func TestOutboxOutage(t *testing.T) {
	t.Parallel()
	s := natstest.StartListening(t)
	addr := s.Addr().(*net.TCPAddr)
	nc, err := nats.Connect(s.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Worker: "w1"}
	ensure(t, js, cfg)
	db := openState(t)
	o := NewOutbox(js, db, zerolog.Nop())
	runOutbox(t, o)

	s.Stop()
	var want []string
	for i := range 100 {
		e := jobEvent(cfg, fmt.Sprintf("job-%03d", i), brr.StatusStarted)
		if err := db.Enqueue(cfg.outboxMsgs(e)...); err != nil {
			t.Fatal(err)
		}
		want = append(want, e.ID)
	}
	o.PublishNow(cfg.outboxMsgs(jobEvent(cfg, "job-progress", brr.StatusProgress))...) // dropped: NATS is down
	// Give Run a few rounds against the dead server: nothing may leave the outbox.
	time.Sleep(1500 * time.Millisecond)
	if n, err := db.OutboxLen(); err != nil || n != 200 {
		t.Fatalf("outbox holds %d items while NATS is down (%v), want 200", n, err)
	}

	opts := s.Opts.Clone()
	opts.Port = addr.Port
	natstest.StartWith(t, opts)
	waitEmpty(t, db, 30*time.Second)

	msgs := streamMsgs(t, js, cfg.Subjects.EventsStream())
	if len(msgs) != len(want) {
		t.Fatalf("stream holds %d events, want %d", len(msgs), len(want))
	}
	for i, m := range msgs {
		if got := m.Headers().Get(jetstream.MsgIDHeader); got != want[i] {
			t.Fatalf("event %d: msg id %s, want %s (order or duplicates wrong)", i, got, want[i])
		}
	}
	kv, err := js.KeyValue(context.Background(), cfg.Subjects.ResultsBucket())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(context.Background(), "job-042"); err != nil {
		t.Errorf("result of job-042 after the outage: %v", err)
	}
}

// errCrash is what crashStore's FlushOutboxAcks returns: the process "died" after
// publishing and before removing what it published.
var errCrash = errors.New("crash before the published items were removed")

// crashStore is a real state.DB that never removes published items, as a worker killed
// between the publish and the commit that removes them leaves things.
type crashStore struct{ *state.DB }

func (crashStore) AckOutboxSoon(...uint64) {}
func (crashStore) FlushOutboxAcks() error  { return errCrash }

func TestOutboxRepublishNoDuplicates(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	cfg := Config{Worker: "w1"}
	ensure(t, js, cfg)
	db := openState(t)
	const n = 700 // more than one batch
	var out []state.OutboxMsg
	for i := range n {
		e := jobEvent(cfg, fmt.Sprintf("job-%d", i), brr.StatusSucceeded)
		out = append(out, cfg.outboxMsgs(e)...)
	}
	if err := db.Enqueue(out...); err != nil {
		t.Fatal(err)
	}

	// One pass publishes everything (fewer items than one read of the store) and then
	// fails to remove them.
	published, err := NewOutbox(js, crashStore{db}, zerolog.Nop()).drain(context.Background())
	if err != nil || published != 2*n {
		t.Fatalf("drain = %d, %v; want %d published", published, err, 2*n)
	}
	if got, err := db.OutboxLen(); err != nil || got != 2*n {
		t.Fatalf("outbox holds %d items after the crash (%v), want %d", got, err, 2*n)
	}
	if got := streamLen(t, js, cfg.Subjects.EventsStream()); got != n {
		t.Fatalf("events stream holds %d messages after the first pass, want %d", got, n)
	}
	// The worker starts again and publishes the same items once more.
	if err := NewOutbox(js, db, zerolog.Nop()).Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := db.OutboxLen(); err != nil || got != 0 {
		t.Fatalf("outbox holds %d items after Flush (%v), want 0", got, err)
	}
	if got := streamLen(t, js, cfg.Subjects.EventsStream()); got != n {
		t.Errorf("events stream holds %d messages, want %d", got, n)
	}
	msgs := streamMsgs(t, js, cfg.Subjects.EventsStream())
	seen := map[string]bool{}
	for _, m := range msgs {
		id := m.Headers().Get(jetstream.MsgIDHeader)
		if seen[id] {
			t.Fatalf("event %s published twice", id)
		}
		seen[id] = true
	}
	if got := streamLen(t, js, "KV_"+cfg.Subjects.ResultsBucket()); got != n {
		t.Errorf("results bucket holds %d entries, want %d", got, n)
	}
}

func TestOutboxFlush(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	cfg := Config{Worker: "w1"}
	ensure(t, js, cfg)
	db := openState(t)
	const n = 1500
	var msgs []state.OutboxMsg
	for i := range n {
		e := jobEvent(cfg, "job-1", brr.StatusProgress)
		e.Progress = &brr.Progress{Files: int64(i)}
		msgs = append(msgs, cfg.outboxMsgs(e)...)
	}
	if err := db.Enqueue(msgs...); err != nil {
		t.Fatal(err)
	}
	if err := NewOutbox(js, db, zerolog.Nop()).Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, err := db.OutboxLen(); err != nil || got != 0 {
		t.Fatalf("outbox holds %d items after Flush (%v), want 0", got, err)
	}
	got := streamMsgs(t, js, cfg.Subjects.EventsStream())
	if len(got) != n {
		t.Fatalf("stream holds %d events, want %d", len(got), n)
	}
	for i, m := range got {
		e, err := brr.DecodeEvent(m.Data())
		if err != nil {
			t.Fatal(err)
		}
		if e.Progress == nil || e.Progress.Files != int64(i) {
			t.Fatalf("event %d out of order: %s", i, m.Data())
		}
	}

	// With NATS gone, Flush gives up when its context ends and loses nothing.
	e := jobEvent(cfg, "job-2", brr.StatusStarted)
	if err := db.Enqueue(cfg.outboxMsgs(e)...); err != nil {
		t.Fatal(err)
	}
	s.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := NewOutbox(js, db, zerolog.Nop()).Flush(ctx); err == nil {
		t.Fatalf("Flush with NATS down succeeded")
	}
	if got, err := db.OutboxLen(); err != nil || got != 2 {
		t.Errorf("outbox holds %d items after a failed Flush (%v), want 2", got, err)
	}
}

func TestOutboxPublishNow(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	cfg := Config{Subjects: brr.Subjects{Prefix: "acme"}, Worker: "w1"}
	ensure(t, js, cfg)
	o := NewOutbox(js, openState(t), zerolog.Nop())
	e := jobEvent(cfg, "job-1", brr.StatusProgress)
	e.Progress = &brr.Progress{Files: 7}
	o.PublishNow(cfg.outboxMsgs(e)...)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, cfg.Subjects.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, "acme.events.job.ping.progress")
	for errors.Is(err, jetstream.ErrMsgNotFound) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
		m, err = stream.GetLastMsgForSubject(ctx, "acme.events.job.ping.progress")
	}
	if err != nil {
		t.Fatal(err)
	}
	got, err := brr.DecodeEvent(m.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != e.ID || got.Progress == nil || got.Progress.Files != 7 {
		t.Errorf("progress event = %s", m.Data)
	}
}

// TestOutboxPublishNowWithoutAcks: what PublishNow sends is stored once per message id,
// and the server answers it with nothing (no PubAck for the worker to parse). Before
// PublishNow used plain publishes, the connection received one PubAck per message.
func TestOutboxPublishNowWithoutAcks(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	nc, js := s.JetStream(t)
	_, check := s.JetStream(t) // looks at the stream on a connection of its own
	cfg := Config{Subjects: brr.Subjects{Prefix: "acme"}, Worker: "w1"}
	ensure(t, js, cfg)
	o := NewOutbox(js, openState(t), zerolog.Nop())

	const n = 50
	in0 := nc.Stats().InMsgs
	var sent []state.OutboxMsg
	for i := range n {
		e := jobEvent(cfg, "job-"+strconv.Itoa(i), brr.StatusStarted)
		sent = append(sent, cfg.eventMsg(e))
	}
	o.PublishNow(sent...)
	o.PublishNow(sent[:10]...) // again: the stream drops them by their Nats-Msg-Id
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := check.Stream(ctx, cfg.Subjects.EventsStream())
	if err != nil {
		t.Fatal(err)
	}
	var stored uint64
	for ctx.Err() == nil {
		info, err := stream.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if stored = info.State.Msgs; stored >= n {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if stored != n {
		t.Fatalf("stream holds %d messages, want %d (each once)", stored, n)
	}
	// A round trip on the publishing connection: any PubAck the server sent for those
	// publishes has arrived before its answer.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if got := nc.Stats().InMsgs - in0; got != 0 {
		t.Errorf("the publishing connection received %d messages (PubAcks), want 0", got)
	}
	m, err := stream.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := m.Header.Get(jetstream.MsgIDHeader), sent[0].MsgID; got != want {
		t.Errorf("first stored message has Nats-Msg-Id %q, want %q", got, want)
	}
}

// BenchmarkOutbox measures how many events a second the outbox publishes from a full
// outbox to an in-process server with file storage (each event one message to
// BRR_EVENTS: progress events, no result entry), beside its peer, measured in the same
// run: the same messages published with plain async publishes straight from memory,
// which is the ceiling the outbox can reach.
func BenchmarkOutbox(b *testing.B) {
	cfg := Config{Worker: "w1"}
	msgs := func(n int) []state.OutboxMsg {
		var out []state.OutboxMsg
		for i := range n {
			e := jobEvent(cfg, "job-1", brr.StatusProgress)
			e.Progress = &brr.Progress{Files: int64(i), Bytes: int64(i) << 10}
			out = append(out, cfg.outboxMsgs(e)...)
		}
		return out
	}
	b.Run("outbox", func(b *testing.B) {
		s := natstest.Start(b)
		_, js := s.JetStream(b)
		ensure(b, js, cfg)
		db := openState(b)
		all := msgs(b.N)
		for len(all) > 0 {
			n := min(len(all), 10000)
			if err := db.Enqueue(all[:n]...); err != nil {
				b.Fatal(err)
			}
			all = all[n:]
		}
		o := NewOutbox(js, db, zerolog.Nop())
		b.ResetTimer()
		start := time.Now()
		if err := o.Flush(context.Background()); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
		b.StopTimer()
		if n, err := db.OutboxLen(); err != nil || n != 0 {
			b.Fatalf("outbox holds %d items after Flush (%v)", n, err)
		}
	})
	b.Run("peer=async-publish", func(b *testing.B) {
		s := natstest.Start(b)
		_, js := s.JetStream(b)
		ensure(b, js, cfg)
		all := msgs(b.N)
		b.ResetTimer()
		start := time.Now()
		for _, m := range all {
			_, err := js.PublishMsgAsync(&nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{jetstream.MsgIDHeader: []string{m.MsgID}}}, jetstream.WithStallWait(time.Minute))
			if err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("PubAcks missing after a minute")
		}
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	})
}
