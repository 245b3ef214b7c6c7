package notify

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// receiver is a webhook receiver on loopback: it checks each request's signature (when
// it has a secret), fails the first failFirst requests with 500 and records the events
// it accepted, in order.
type receiver struct {
	*testkit.HTTPServer
	secret []byte

	mu        sync.Mutex
	failFirst int
	down      bool // every request fails while set
	requests  int
	accepted  []string // event ids
	bodies    [][]byte
	headers   []http.Header
	badSigs   int
}

func newReceiver(t *testing.T, secret []byte, failFirst int) *receiver {
	t.Helper()
	r := &receiver{secret: secret, failFirst: failFirst}
	r.HTTPServer = testkit.StartHTTPServer(t, http.HandlerFunc(r.serve))
	return r
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests++
	if r.secret != nil && !Verify(r.secret, req.Header.Get(HeaderTimestamp), req.Header.Get(HeaderSignature), body, time.Now(), 5*time.Minute) {
		r.badSigs++
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	if r.down || r.requests <= r.failFirst {
		http.Error(w, "not now", http.StatusInternalServerError)
		return
	}
	r.accepted = append(r.accepted, req.Header.Get(HeaderEventID))
	r.bodies = append(r.bodies, body)
	r.headers = append(r.headers, req.Header.Clone())
	w.WriteHeader(http.StatusNoContent)
}

func (r *receiver) setDown(down bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = down
}

func (r *receiver) got() (accepted []string, requests int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.accepted), r.requests
}

// env is an embedded NATS server with brr's streams.
type env struct {
	srv *natstest.Server
	js  jetstream.JetStream
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.JetStream(t)
	if err := events.EnsureStreams(context.Background(), js, events.Config{}); err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, js: js}
}

// fast is a Config with short waits, for tests.
func fast(targets ...Target) Config {
	return Config{Targets: targets, AckWait: 2 * time.Second, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond}
}

// start runs a Notifier of cfg on its own connection to e until the test ends or stop
// is called; kill closes its connection first, as a worker that dies does.
type running struct {
	n      *Notifier
	cancel context.CancelFunc
	done   chan struct{}
	kill   func()
}

func (e *env) start(t *testing.T, cfg Config) *running {
	t.Helper()
	nc, js := e.srv.JetStream(t)
	n, err := New(js, cfg, zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{n: n, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		if err := n.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	r.kill = func() { nc.Close(); cancel(); <-r.done }
	t.Cleanup(func() { cancel(); <-r.done })
	// The consumer delivers events published after it exists.
	for _, tg := range n.cfg.Targets {
		testkit.Eventually(t, 20*time.Second, "consumer "+Consumer(tg.Name), func() bool {
			_, err := e.js.Consumer(context.Background(), "BRR_EVENTS", Consumer(tg.Name))
			return err == nil
		})
	}
	return r
}

// publish puts an event on the stream, as a worker's outbox does, and returns its id.
func (e *env) publish(t *testing.T, ev brr.Event) string {
	t.Helper()
	ev.V = brr.Version
	if ev.ID == "" {
		ev.ID = brr.NewID()
	}
	if ev.Time.IsZero() {
		ev.Time = time.Now()
	}
	data, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(context.Background(), brr.Subjects{}.Event(&ev), data, jetstream.WithMsgID(ev.ID)); err != nil {
		t.Fatalf("publish: %v", err)
	}
	return ev.ID
}

func dead(i int) brr.Event {
	return brr.Event{Type: brr.EventJob, Kind: brr.KindBackup, Status: brr.StatusDead, JobID: fmt.Sprintf("job-%d", i), Error: "disk on fire"}
}

func waitAccepted(t *testing.T, r *receiver, n int) []string {
	t.Helper()
	var got []string
	if !testkit.WaitFor(60*time.Second, func() bool { got, _ = r.got(); return len(got) >= n }) {
		t.Fatalf("receiver accepted %d notifications, want %d", len(got), n)
	}
	return got
}

// TestSignedDelivery posts to a receiver on loopback that checks the signature; the body
// is the event as it is on the stream.
func TestSignedDelivery(t *testing.T) {
	e := newEnv(t)
	secret := []byte("s3cret, not in any log")
	r := newReceiver(t, secret, 0)
	run := e.start(t, fast(Target{URL: r.URL + "/hook", Events: []string{"brr.events.job.*.dead"}, Secret: secret}))
	id := e.publish(t, dead(1))
	e.publish(t, brr.Event{Type: brr.EventJob, Kind: brr.KindPing, Status: brr.StatusSucceeded}) // not in the filter
	waitAccepted(t, r, 1)

	r.mu.Lock()
	defer r.mu.Unlock()
	if r.badSigs != 0 {
		t.Fatalf("%d requests had a bad signature", r.badSigs)
	}
	ev, err := brr.DecodeEvent(r.bodies[0])
	if err != nil || ev.ID != id || ev.JobID != "job-1" {
		t.Fatalf("body = %s (%v), want the event %s", r.bodies[0], err, id)
	}
	h := r.headers[0]
	for k, want := range map[string]string{HeaderSubject: "brr.events.job.backup.dead", HeaderSeverity: "critical", HeaderEventID: id, "Content-Type": "application/json"} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	// The receiver answered before the notifier counted.
	if !testkit.WaitFor(10*time.Second, func() bool { return run.n.Stats().Sent == 1 }) || run.n.Stats().Failures != 0 {
		t.Errorf("stats = %+v, want 1 sent", run.n.Stats())
	}
}

// TestVerifyRefusesForgeries attacks the signature: another secret, a changed body, a
// changed or old timestamp are all refused.
func TestVerifyRefusesForgeries(t *testing.T) {
	secret, body, now := []byte("k"), []byte(`{"id":"1"}`), time.Now()
	ts := fmt.Sprint(now.Unix())
	sig := Sign(secret, ts, body)
	if !Verify(secret, ts, sig, body, now, time.Minute) {
		t.Fatal("a genuine signature is refused")
	}
	old := fmt.Sprint(now.Add(-time.Hour).Unix())
	for _, tt := range []struct {
		name          string
		secret        []byte
		ts, sig, body string
	}{
		{"other secret", []byte("K"), ts, Sign([]byte("K2"), ts, body), string(body)},
		{"changed body", secret, ts, sig, `{"id":"2"}`},
		{"changed timestamp", secret, fmt.Sprint(now.Unix() + 1), sig, string(body)},
		{"replayed an hour later", secret, old, Sign(secret, old, body), string(body)},
		{"no signature", secret, ts, "", string(body)},
		{"bad timestamp", secret, "yesterday", sig, string(body)},
	} {
		if Verify(tt.secret, tt.ts, tt.sig, []byte(tt.body), now, time.Minute) {
			t.Errorf("%s: accepted", tt.name)
		}
	}
}

// TestRetriesThenInOrder: a receiver that fails three times then accepts gets every
// notification once, in the stream's order.
func TestRetriesThenInOrder(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, nil, 3)
	run := e.start(t, fast(Target{URL: r.URL, Events: []string{"brr.events.job.*.dead"}}))
	var want []string
	for i := range 10 {
		want = append(want, e.publish(t, dead(i)))
	}
	got := waitAccepted(t, r, len(want))
	if !slices.Equal(got, want) {
		t.Fatalf("accepted %v, want %v (each once, in order)", got, want)
	}
	if _, requests := r.got(); requests != len(want)+3 {
		t.Errorf("%d requests, want %d (3 failures)", requests, len(want)+3)
	}
	testkit.WaitFor(10*time.Second, func() bool { return run.n.Stats().Sent == 10 })
	if s := run.n.Stats(); s.Sent != 10 || s.Failures != 3 || s.Dropped != 0 {
		t.Errorf("stats = %+v, want 10 sent, 3 failures", s)
	}
}

// TestSharedConsumer: two workers with the same target deliver each event once, in
// order, and the second carries on alone when the first dies.
func TestSharedConsumer(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, nil, 0)
	target := Target{URL: r.URL, Events: []string{"brr.events.job.*.dead", "brr.events.health.>"}}
	a := e.start(t, fast(target))
	b := e.start(t, fast(target))
	var want []string
	for i := range 20 {
		want = append(want, e.publish(t, dead(i)))
	}
	waitAccepted(t, r, 20)
	// Killed between the receiver's answer and its ack, a worker leaves that notification
	// to be sent again (at least once; docs/operations.md): kill it once all are acked.
	testkit.Eventually(t, 30*time.Second, "every notification acknowledged", func() bool {
		c, err := e.js.Consumer(context.Background(), "BRR_EVENTS", Consumer(DefaultName(r.URL)))
		if err != nil {
			return false
		}
		info, err := c.Info(context.Background())
		return err == nil && info.NumAckPending == 0 && info.NumPending == 0
	})
	a.kill()
	for i := 20; i < 30; i++ {
		want = append(want, e.publish(t, dead(i)))
	}
	got := waitAccepted(t, r, 30)
	if !slices.Equal(got, want) {
		t.Fatalf("accepted %v, want %v (each once, in order)", got, want)
	}
	testkit.WaitFor(10*time.Second, func() bool { return a.n.Stats().Sent+b.n.Stats().Sent == 30 })
	if sa, sb := a.n.Stats(), b.n.Stats(); sa.Sent+sb.Sent != 30 || sb.Sent < 10 {
		t.Fatalf("sent %d + %d, want 30 in all and the last 10 at least by the survivor", sa.Sent, sb.Sent)
	}
}

// TestRestartMidQueue: a worker dies while the receiver is down and notifications wait;
// the worker started again delivers all of them, once, in order.
func TestRestartMidQueue(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, nil, 0)
	r.setDown(true)
	target := Target{URL: r.URL, Events: []string{"brr.events.job.*.dead"}}
	first := e.start(t, fast(target))
	var want []string
	for i := range 5 {
		want = append(want, e.publish(t, dead(i)))
	}
	testkit.Eventually(t, 30*time.Second, "retries of the first notification", func() bool { _, n := r.got(); return n >= 3 })
	first.kill() // no nak: the server gives the notification out again after AckWait
	r.Forget(t)
	r.setDown(false)
	e.start(t, fast(target))
	got := waitAccepted(t, r, len(want))
	if !slices.Equal(got, want) {
		t.Fatalf("accepted %v, want %v (each once, in order)", got, want)
	}
}

// TestBounds: a notification older than the target's max age is dropped, and so is the
// oldest when more than the target's queue wait.
func TestBounds(t *testing.T) {
	t.Run("queue", func(t *testing.T) {
		e := newEnv(t)
		r := newReceiver(t, nil, 0)
		r.setDown(true)
		run := e.start(t, fast(Target{URL: r.URL, Events: []string{"brr.events.job.*.dead"}, Queue: 2}))
		ids := []string{e.publish(t, dead(0))}
		testkit.Eventually(t, 30*time.Second, "the first notification in flight", func() bool { _, n := r.got(); return n >= 1 })
		for i := 1; i < 5; i++ {
			ids = append(ids, e.publish(t, dead(i)))
		}
		r.setDown(false)
		// 1 and 2 had 3 and 2 behind them: dropped; 3 and 4 had fewer.
		got := waitAccepted(t, r, 3)
		if want := []string{ids[0], ids[3], ids[4]}; !slices.Equal(got, want) {
			t.Fatalf("accepted %v, want %v", got, want)
		}
		if s := run.n.Stats(); s.Dropped != 2 {
			t.Fatalf("dropped %d, want 2", s.Dropped)
		}
	})
	t.Run("max age", func(t *testing.T) {
		e := newEnv(t)
		r := newReceiver(t, nil, 0)
		cfg := fast(Target{URL: r.URL, Events: []string{"brr.events.job.*.dead"}, MaxAge: time.Hour})
		cfg.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
		run := e.start(t, cfg)
		e.publish(t, dead(0))
		testkit.Eventually(t, 30*time.Second, "the old notification dropped", func() bool { return run.n.Stats().Dropped == 1 })
		if got, n := r.got(); n != 0 {
			t.Fatalf("receiver got %d requests (%v), want none", n, got)
		}
	})
}

// TestSeverityAndShapes: the slack and ntfy shapes, and min_severity.
func TestSeverityAndShapes(t *testing.T) {
	e := newEnv(t)
	slack, ntfy := newReceiver(t, nil, 0), newReceiver(t, nil, 0)
	e.start(t, fast(
		Target{Name: "chat", URL: slack.URL, Events: []string{"brr.events.job.>"}, Shape: ShapeSlack, MinSeverity: Warning},
		Target{Name: "phone", URL: ntfy.URL + "/backups", Events: []string{"brr.events.health.>"}, Shape: ShapeNtfy},
	))
	e.publish(t, brr.Event{Type: brr.EventJob, Kind: brr.KindPing, Status: brr.StatusSucceeded}) // info: skipped
	id := e.publish(t, dead(7))
	e.publish(t, brr.Event{Type: brr.EventHealth, Status: brr.CheckRPO, Worker: "w1",
		Check: &brr.HealthCheck{Check: brr.CheckRPO, Subject: "/srv/app", Status: brr.HealthCritical, Message: "no snapshot of /srv/app for 26h (rpo 24h)"}})

	if got := waitAccepted(t, slack, 1); got[0] != id {
		t.Fatalf("slack got %v, want only %s (the ping is info)", got, id)
	}
	var msg map[string]string
	slack.mu.Lock()
	err := json.Unmarshal(slack.bodies[0], &msg)
	slack.mu.Unlock()
	if err != nil || len(msg) != 1 || msg["text"] != "*brr critical: backup job dead*\ndisk on fire\njob job-7\nbrr.events.job.backup.dead at "+msg["text"][len(msg["text"])-20:] {
		t.Fatalf("slack body = %v (%v)", msg, err)
	}

	waitAccepted(t, ntfy, 1)
	ntfy.mu.Lock()
	defer ntfy.mu.Unlock()
	h, body := ntfy.headers[0], string(ntfy.bodies[0])
	if h.Get("Title") != "brr critical: health check rpo critical" || h.Get("Priority") != "5" || h.Get("Tags") != "rotating_light" {
		t.Errorf("ntfy headers = %v", h)
	}
	if want := "no snapshot of /srv/app for 26h (rpo 24h)\nsubject /srv/app, worker w1\nbrr.events.health.rpo at "; len(body) < len(want) || body[:len(want)] != want {
		t.Errorf("ntfy body = %q, want it to start with %q", body, want)
	}
}

func TestNewRefusesBadTargets(t *testing.T) {
	ok := Target{URL: "https://hooks.example.com/brr", Events: []string{"brr.events.job.*.dead"}}
	for _, tt := range []struct {
		name string
		edit func(*Target)
		want string
	}{
		{"bad url", func(t *Target) { t.URL = "hooks.example.com/brr" }, "want an http:// or https:// URL"},
		{"ftp url", func(t *Target) { t.URL = "ftp://hooks.example.com/brr" }, "want an http:// or https:// URL"},
		{"no events", func(t *Target) { t.Events = nil }, "name at least one subject filter, such as brr.events.job.*.dead"},
		{"not an event", func(t *Target) { t.Events = []string{"brr.jobs.>"} }, `"brr.jobs.>": want a subject filter of the event stream`},
		{"overlap", func(t *Target) { t.Events = []string{"brr.events.job.>", "brr.events.job.*.dead"} }, "overlaps"},
		{"shape", func(t *Target) { t.Shape = "teams" }, `"teams": unknown shape (known: brr, slack, ntfy)`},
		{"name", func(t *Target) { t.Name = "a b" }, `"a b": use 1-64 letters`},
	} {
		tg := ok
		tt.edit(&tg)
		_, err := New(nil, Config{Targets: []Target{tg}}, zerolog.Nop())
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.name, err, tt.want)
		}
	}
	if _, err := New(nil, Config{Targets: []Target{ok, ok}}, zerolog.Nop()); err == nil || !strings.Contains(err.Error(), "give each its own name") {
		t.Errorf("two targets of one URL: err = %v", err)
	}
	if _, err := New(nil, Config{Targets: []Target{ok}}, zerolog.Nop()); err != nil {
		t.Errorf("a good target: %v", err)
	}
}

// TestRedact: a webhook's token never reaches a log or an error.
func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://hooks.slack.com/services/T0/B0/XXXX": "https://hooks.slack.com/…",
		"https://user:pw@ntfy.example.com/topic?x=1":  "https://ntfy.example.com/…",
		"hooks.example.com/brr/token":                 "hooks.example.com/…",
		"notaurlatall-with-a-long-token":              "notaurlatall…",
		"short":                                       "short",
	} {
		if got := Redact(in); got != want {
			t.Errorf("Redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestConsumerDeleted: a target's consumer deleted under the workers is made again, and
// notifications go on.
func TestConsumerDeleted(t *testing.T) {
	e := newEnv(t)
	r := newReceiver(t, nil, 0)
	e.start(t, fast(Target{Name: "ops", URL: r.URL, Events: []string{"brr.events.job.*.dead"}}))
	first := e.publish(t, dead(0))
	waitAccepted(t, r, 1)
	if err := e.js.DeleteConsumer(context.Background(), "BRR_EVENTS", Consumer("ops")); err != nil {
		t.Fatal(err)
	}
	var second string
	// Published until one gets through: those before the consumer is back are not its.
	testkit.Eventually(t, 60*time.Second, "a notification after the consumer was made again", func() bool {
		if got, _ := r.got(); len(got) > 1 {
			second = got[len(got)-1]
			return true
		}
		e.publish(t, dead(1))
		time.Sleep(200 * time.Millisecond)
		return false
	})
	if got, _ := r.got(); got[0] != first || second == "" {
		t.Fatalf("accepted %v", got)
	}
}
