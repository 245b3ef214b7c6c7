package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/state"
)

var _ Store = (*state.DB)(nil)

// bundle is what a consume-loop test works with: a server with the streams, a state DB
// whose outbox is being published, and a handler.
type bundle struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	db  *state.DB
	cfg Config
	h   *testHandler
	ev  *eventLog
}

func setup(t *testing.T, cfg Config) *bundle {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.JetStream(t)
	if cfg.Worker == "" {
		cfg.Worker = "w1"
	}
	cfg.Host = "testhost"
	if cfg.BackoffBase == 0 {
		cfg.BackoffBase = 10 * time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 50 * time.Millisecond
	}
	if cfg.DrainTimeout == 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	ctx := context.Background()
	if err := EnsureStreams(ctx, js, cfg); err != nil {
		t.Fatalf("EnsureStreams: %v", err)
	}
	b := &bundle{nc: nc, js: js, cfg: cfg, h: &testHandler{calls: map[string]int{}}}
	b.ev = watchEvents(t, nc, cfg.Subjects.Events(""))
	b.db = openDB(t, js)
	return b
}

// openDB opens a state DB in a temporary directory and runs its outbox until the test ends.
func openDB(t testing.TB, js jetstream.JetStream) *state.DB {
	t.Helper()
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{NoSync: os.Getenv("BRR_BENCH_NOSYNC") != ""})
	if err != nil {
		t.Fatalf("open state: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	testkit.Go(t, "outbox", NewOutbox(js, db, zerolog.Nop()).Run)
	return db
}

// start runs a consumer until the test ends.
func (b *bundle) start(t testing.TB, db *state.DB) *Consumer {
	t.Helper()
	c := NewConsumer(b.js, db, b.h, NewOutbox(b.js, db, zerolog.Nop()), b.cfg, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return c
}

// testHandler counts calls per job id and answers with outcome, else with an outcome
// holding fn's result, else with a ping result.
type testHandler struct {
	mu      sync.Mutex
	calls   map[string]int
	total   atomic.Int64
	fn      func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error)
	outcome func(ctx context.Context, job *brr.Job, attempt int, rep brr.Reporter) (*brr.Outcome, error)
}

func (h *testHandler) Handle(ctx context.Context, job *brr.Job, rep brr.Reporter) (*brr.Outcome, error) {
	h.mu.Lock()
	h.calls[job.ID]++
	n := h.calls[job.ID]
	h.mu.Unlock()
	h.total.Add(1)
	switch {
	case h.outcome != nil:
		return h.outcome(ctx, job, n, rep)
	case h.fn != nil:
		res, err := h.fn(ctx, job, n, rep.Progress)
		if res == nil {
			return nil, err
		}
		return &brr.Outcome{Result: res}, err
	}
	return &brr.Outcome{Result: &brr.Result{Ping: &brr.PingResult{Worker: "w"}}}, nil
}

func (h *testHandler) count(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls[id]
}

// eventLog collects the events published on a subject.
type eventLog struct {
	mu  sync.Mutex
	evs []*brr.Event
}

func watchEvents(t testing.TB, nc *nats.Conn, subject string) *eventLog {
	t.Helper()
	l := &eventLog{}
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		e, err := brr.DecodeEvent(m.Data)
		if err != nil {
			t.Errorf("event on %s: %v", m.Subject, err)
			return
		}
		if want := (brr.Subjects{}).Event(e); m.Subject != want {
			t.Errorf("event %s %s on subject %s, want %s", e.Type, e.Status, m.Subject, want)
		}
		l.mu.Lock()
		l.evs = append(l.evs, e)
		l.mu.Unlock()
	})
	if err != nil {
		t.Fatalf("subscribe events: %v", err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatalf("flush: %v", err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return l
}

// find returns the events of job id with status.
func (l *eventLog) find(id string, status brr.Status) []*brr.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*brr.Event
	for _, e := range l.evs {
		if e.JobID == id && e.Status == status {
			out = append(out, e)
		}
	}
	return out
}

// wait waits for the first event of job id with status.
func (l *eventLog) wait(t testing.TB, id string, status brr.Status) *brr.Event {
	t.Helper()
	var e *brr.Event
	testkit.Eventually(t, 15*time.Second, fmt.Sprintf("%s event of job %s", status, id), func() bool {
		evs := l.find(id, status)
		if len(evs) > 0 {
			e = evs[0]
		}
		return e != nil
	})
	return e
}

// eventually waits up to 15s for cond.

func publishJob(t testing.TB, js jetstream.JetStream, job *brr.Job) {
	t.Helper()
	data, err := json.Marshal(job)
	if err != nil {
		t.Fatalf("encode job: %v", err)
	}
	publishRaw(t, js, (brr.Subjects{}).Job(job.Pool, job.Kind), data, job.ID)
}

func publishRaw(t testing.TB, js jetstream.JetStream, subject string, data []byte, msgID string) {
	t.Helper()
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := js.Publish(context.Background(), subject, data, opts...); err != nil {
		t.Fatalf("publish to %s: %v", subject, err)
	}
}

func pingJob(id string) *brr.Job {
	j := brr.NewJob(&brr.PingJob{})
	j.ID = id
	return j
}

func msgCount(t testing.TB, js jetstream.JetStream, name string) uint64 {
	t.Helper()
	s, err := js.Stream(context.Background(), name)
	if err != nil {
		t.Fatalf("stream %s: %v", name, err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatalf("stream %s info: %v", name, err)
	}
	return info.State.Msgs
}

func waitJobsEmpty(t testing.TB, js jetstream.JetStream) {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, "BRR_JOBS to be empty", func() bool { return msgCount(t, js, "BRR_JOBS") == 0 })
}

// deadLetters waits for n entries in BRR_DLQ and returns them by job id.
func deadLetters(t testing.TB, js jetstream.JetStream, n int) map[string]brr.DeadLetter {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, fmt.Sprintf("%d dead letters", n), func() bool { return msgCount(t, js, "BRR_DLQ") >= uint64(n) })
	s, err := js.Stream(context.Background(), "BRR_DLQ")
	if err != nil {
		t.Fatalf("stream BRR_DLQ: %v", err)
	}
	out := map[string]brr.DeadLetter{}
	for seq := uint64(1); seq <= uint64(n); seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("get dead letter %d: %v", seq, err)
		}
		var dl brr.DeadLetter
		if err := json.Unmarshal(m.Data, &dl); err != nil {
			t.Fatalf("decode dead letter %d: %v", seq, err)
		}
		if want := (brr.Subjects{}).DLQ(dl.Pool, dl.Kind); m.Subject != want {
			t.Errorf("dead letter of %s on %s, want %s", dl.JobID, m.Subject, want)
		}
		if got, want := m.Header.Get("Nats-Msg-Id"), "dlq-"+dl.JobID+"-"; !strings.HasPrefix(got, want) {
			t.Errorf("dead letter Nats-Msg-Id = %q, want %q and the job message's sequence", got, want)
		}
		out[dl.JobID] = dl
	}
	if got := msgCount(t, js, "BRR_DLQ"); got != uint64(n) {
		t.Errorf("BRR_DLQ has %d messages, want %d", got, n)
	}
	return out
}

func TestJobSucceeds(t *testing.T) {
	b := setup(t, Config{})
	c := b.start(t, b.db)
	publishJob(t, b.js, pingJob("job-ok"))

	e := b.ev.wait(t, "job-ok", brr.StatusSucceeded)
	if e.Result == nil || e.Result.Ping == nil || e.Result.Ping.Worker != "w" {
		t.Errorf("succeeded event result = %+v, want the handler's ping result", e.Result)
	}
	if got, want := e.Kind, brr.KindPing; got != want {
		t.Errorf("event kind = %q, want %q", got, want)
	}
	if got, want := e.Worker, "w1"; got != want {
		t.Errorf("event worker = %q, want %q", got, want)
	}
	if got, want := e.Attempt, 1; got != want {
		t.Errorf("event attempt = %d, want %d", got, want)
	}
	b.ev.wait(t, "job-ok", brr.StatusAccepted)
	b.ev.wait(t, "job-ok", brr.StatusStarted)
	waitJobsEmpty(t, b.js)
	rec, err := b.db.Job("job-ok")
	if err != nil {
		t.Fatalf("Job: %v", err)
	}
	if got, want := rec.Status, brr.StatusSucceeded; got != want {
		t.Errorf("record status = %q, want %q", got, want)
	}
	if rec.Finished.IsZero() || rec.Started.IsZero() {
		t.Errorf("record times: started %v finished %v, want both set", rec.Started, rec.Finished)
	}
	ok, err := b.db.Processed("job-ok")
	if err != nil || !ok {
		t.Errorf("Processed = %v, %v; want true", ok, err)
	}
	kv, err := b.js.KeyValue(context.Background(), "BRR_RESULTS")
	if err != nil {
		t.Fatalf("results bucket: %v", err)
	}
	testkit.Eventually(t, 15*time.Second, "the succeeded event in KV BRR_RESULTS", func() bool {
		entry, err := kv.Get(context.Background(), "job-ok")
		if err != nil {
			return false
		}
		r, err := brr.DecodeEvent(entry.Value())
		return err == nil && r.Status == brr.StatusSucceeded
	})
	if got := b.h.count("job-ok"); got != 1 {
		t.Errorf("handler ran %d times, want 1", got)
	}
	if s := c.Stats(); s.Done != 1 || s.Failed != 0 || s.Retried != 0 {
		t.Errorf("Stats = %+v, want 1 done", s)
	}
}

func TestTransientErrorThenSuccess(t *testing.T) {
	b := setup(t, Config{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		if attempt == 1 {
			return nil, errors.New("repository busy")
		}
		return &brr.Result{Ping: &brr.PingResult{Worker: "w"}}, nil
	}
	c := b.start(t, b.db)
	publishJob(t, b.js, pingJob("job-retry"))

	e := b.ev.wait(t, "job-retry", brr.StatusSucceeded)
	if got, want := e.Attempt, 2; got != want {
		t.Errorf("succeeded attempt = %d, want %d", got, want)
	}
	r := b.ev.wait(t, "job-retry", brr.StatusRetrying)
	if r.Attempt != 1 || r.RetryInMS <= 0 || !strings.Contains(r.Error, "repository busy") {
		t.Errorf("retrying event = attempt %d, retry in %d ms, error %q", r.Attempt, r.RetryInMS, r.Error)
	}
	if got := b.h.count("job-retry"); got != 2 {
		t.Errorf("handler ran %d times, want 2", got)
	}
	waitJobsEmpty(t, b.js)
	if s := c.Stats(); s.Retried != 1 || s.Done != 1 {
		t.Errorf("Stats = %+v, want 1 retried, 1 done", s)
	}
}

func TestPanicIsAFailedAttempt(t *testing.T) {
	b := setup(t, Config{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		if attempt == 1 {
			panic("nil map write")
		}
		return &brr.Result{}, nil
	}
	b.start(t, b.db)
	publishJob(t, b.js, pingJob("job-panic"))
	b.ev.wait(t, "job-panic", brr.StatusSucceeded)
	if r := b.ev.wait(t, "job-panic", brr.StatusRetrying); !strings.Contains(r.Error, "nil map write") {
		t.Errorf("retrying event error = %q, want the panic text", r.Error)
	}
}

func TestSnoozeIsNotAFailure(t *testing.T) {
	b := setup(t, Config{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		if attempt == 1 {
			return nil, brr.Snooze(errors.New("source /srv is leased by worker w2"), 20*time.Millisecond)
		}
		return &brr.Result{}, nil
	}
	c := b.start(t, b.db)
	publishJob(t, b.js, pingJob("job-snooze"))
	b.ev.wait(t, "job-snooze", brr.StatusSucceeded)
	if r := b.ev.wait(t, "job-snooze", brr.StatusRetrying); r.RetryInMS != 20 {
		t.Errorf("retrying event retry_in_ms = %d, want 20", r.RetryInMS)
	}
	if s := c.Stats(); s.Snoozed != 1 || s.Retried != 0 || s.Failed != 0 {
		t.Errorf("Stats = %+v, want 1 snoozed and no failure", s)
	}
}

func TestPermanentErrorGoesToDLQ(t *testing.T) {
	b := setup(t, Config{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		return &brr.Result{Verify: &brr.VerifyResult{Repo: "local", Damaged: []brr.Damage{{Pack: "p1", Problem: "missing"}}}},
			brr.Permanent(errors.New(`repo "local" is damaged: 1 pack missing`))
	}
	c := b.start(t, b.db)
	job := brr.NewJob(&brr.VerifyJob{Repo: "local"})
	job.ID = "verify-1"
	publishJob(t, b.js, job)

	e := b.ev.wait(t, "verify-1", brr.StatusFailed)
	if !strings.Contains(e.Error, "1 pack missing") {
		t.Errorf("failed event error = %q", e.Error)
	}
	if e.Result == nil || e.Result.Verify == nil || len(e.Result.Verify.Damaged) != 1 {
		t.Errorf("failed event result = %+v, want the verify report", e.Result)
	}
	dl := deadLetters(t, b.js, 1)["verify-1"]
	if dl.Status != brr.StatusFailed || !strings.Contains(dl.Error, "1 pack missing") || dl.Attempts != 1 || dl.Kind != brr.KindVerify {
		t.Errorf("dead letter = %+v", dl)
	}
	if _, err := brr.DecodeJob(dl.Request); err != nil {
		t.Errorf("dead letter request does not decode: %v", err)
	}
	waitJobsEmpty(t, b.js)
	if got := b.h.count("verify-1"); got != 1 {
		t.Errorf("handler ran %d times, want 1", got)
	}
	if s := c.Stats(); s.Failed != 1 {
		t.Errorf("Stats = %+v, want 1 failed", s)
	}
}

func TestOutOfAttemptsIsDead(t *testing.T) {
	b := setup(t, Config{MaxDeliver: 3})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		return nil, fmt.Errorf("connection refused (attempt %d)", attempt)
	}
	c := b.start(t, b.db)
	publishJob(t, b.js, pingJob("job-dead"))

	e := b.ev.wait(t, "job-dead", brr.StatusDead)
	if e.Attempt != 3 || !strings.Contains(e.Error, "attempt 3") {
		t.Errorf("dead event = attempt %d error %q", e.Attempt, e.Error)
	}
	dl := deadLetters(t, b.js, 1)["job-dead"]
	if dl.Status != brr.StatusDead || dl.Attempts != 3 {
		t.Errorf("dead letter = %+v, want status dead after 3 attempts", dl)
	}
	if got := len(b.ev.find("job-dead", brr.StatusRetrying)); got != 2 {
		t.Errorf("%d retrying events, want 2", got)
	}
	waitJobsEmpty(t, b.js)
	if got := b.h.count("job-dead"); got != 3 {
		t.Errorf("handler ran %d times, want 3", got)
	}
	if s := c.Stats(); s.Dead != 1 || s.Retried != 2 {
		t.Errorf("Stats = %+v, want 1 dead, 2 retried", s)
	}
}

func TestBadInputGoesToDLQ(t *testing.T) {
	b := setup(t, Config{})
	c := b.start(t, b.db)
	job := func(kind, args string) string {
		return `{"v":1,"id":"x","kind":"` + kind + `","pool":"default","created":"2026-11-26T12:00:00Z","args":` + args + `}`
	}
	junk := make([]byte, 1_000_000)
	for i := range junk {
		junk[i] = byte('a' + i%26)
	}
	cases := []struct {
		id, subject, body, reason string
	}{
		{"bad-json", "brr.jobs.default.ping", "hello, worker", "not valid JSON"},
		{"bad-version", "brr.jobs.default.ping", strings.Replace(job("ping", "{}"), `"v":1`, `"v":2`, 1), "version 2"},
		{"bad-kind", "brr.jobs.default.frobnicate", job("frobnicate", "{}"), "frobnicate"},
		{"bad-size", "brr.jobs.default.ping", string(junk), "limit is"},
		{"bad-missing", "brr.jobs.default.ping", `{"v":1,"kind":"ping","pool":"default","args":{}}`, "job id"},
		{"bad-type", "brr.jobs.default.ping", job("ping", `{"delay_ms":"soon"}`), "delay_ms"},
		{"bad-path", "brr.jobs.default.backup", job("backup", `{"path":"srv/app"}`), "not an absolute path"},
		{"bad-subject", "brr.jobs.default.backup", job("ping", "{}"), "came on subject"},
		{"bad-twice", "brr.jobs.default.backup", job("backup", `{"path":"/srv/app","path":"/etc"}`), `the key "args.path" twice`},
		{"bad-nul", "brr.jobs.default.backup", job("backup", `{"path":"/srv/app","tags":["a\u0000b"]}`), `NUL byte in the value of "args.tags[0]"`},
		{"", "brr.jobs.default.ping", "{", "not valid JSON"},
	}
	for _, tc := range cases {
		publishRaw(t, b.js, tc.subject, []byte(tc.body), tc.id)
	}
	// The sequence of the last message, which has no Nats-Msg-Id.
	noID := fmt.Sprintf("seq-%d", len(cases))
	publishJob(t, b.js, pingJob("good-after-bad"))
	b.ev.wait(t, "good-after-bad", brr.StatusSucceeded)

	dls := deadLetters(t, b.js, len(cases))
	for _, tc := range cases {
		id := tc.id
		if id == "" {
			id = noID
		}
		dl, ok := dls[id]
		if !ok {
			t.Errorf("%s: no dead letter", id)
			continue
		}
		if dl.Status != brr.StatusFailed || !strings.Contains(dl.Error, tc.reason) {
			t.Errorf("%s: dead letter status %q error %q, want failed with %q", id, dl.Status, dl.Error, tc.reason)
		}
		if want := tc.body[:min(len(tc.body), brr.MaxJobSize)]; string(dl.Request) != want {
			t.Errorf("%s: dead letter request is not the message as sent (%d bytes, want %d)", id, len(dl.Request), len(want))
		}
		if e := b.ev.wait(t, id, brr.StatusFailed); !strings.Contains(e.Error, tc.reason) {
			t.Errorf("%s: failed event error %q, want %q", id, e.Error, tc.reason)
		}
		rec, err := b.db.Job(id)
		if err != nil || rec.Status != brr.StatusFailed {
			t.Errorf("%s: record %+v, %v; want status failed", id, rec, err)
		}
	}
	if dl := dls["bad-kind"]; dl.Kind != "frobnicate" {
		t.Errorf("dead letter of a frobnicate job has kind %q", dl.Kind)
	}
	waitJobsEmpty(t, b.js)
	if got := b.h.total.Load(); got != 1 {
		t.Errorf("handler ran %d times, want 1 (the good job only)", got)
	}
	if s := c.Stats(); s.Failed != int64(len(cases)) || s.Done != 1 {
		t.Errorf("Stats = %+v, want %d failed, 1 done", s, len(cases))
	}
}

func TestTwoConsumersRunEachJobOnce(t *testing.T) {
	b := setup(t, Config{Concurrency: 8})
	c1 := b.start(t, b.db)
	c2 := b.start(t, openDB(t, b.js))
	const n = 200
	for i := range n {
		publishJob(t, b.js, pingJob(fmt.Sprintf("job-%03d", i)))
	}
	testkit.Eventually(t, 15*time.Second, "200 jobs done", func() bool { return c1.Stats().Done+c2.Stats().Done == n })
	waitJobsEmpty(t, b.js)
	for i := range n {
		if got := b.h.count(fmt.Sprintf("job-%03d", i)); got != 1 {
			t.Errorf("job-%03d ran %d times, want 1", i, got)
		}
	}
	if got := b.h.total.Load(); got != n {
		t.Errorf("handler ran %d times, want %d", got, n)
	}
	t.Logf("worker 1 ran %d, worker 2 ran %d", c1.Stats().Done, c2.Stats().Done)
}

func TestProcessedJobIsNotRunAgain(t *testing.T) {
	b := setup(t, Config{})
	c := b.start(t, b.db)
	job := pingJob("job-once")
	publishJob(t, b.js, job)
	b.ev.wait(t, "job-once", brr.StatusSucceeded)

	data, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	publishRaw(t, b.js, "brr.jobs.default.ping", data, "job-once-again")
	testkit.Eventually(t, 15*time.Second, "the duplicate to be acked", func() bool { return c.Stats().Duplicates == 1 })
	waitJobsEmpty(t, b.js)
	if got := b.h.count("job-once"); got != 1 {
		t.Errorf("handler ran %d times, want 1", got)
	}
}

func TestDrainLetsRunningJobFinish(t *testing.T) {
	b := setup(t, Config{})
	started := make(chan struct{})
	release := make(chan struct{})
	var finished atomic.Bool
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		close(started)
		<-release
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		finished.Store(true)
		return &brr.Result{}, nil
	}
	c := NewConsumer(b.js, b.db, b.h, NewOutbox(b.js, b.db, zerolog.Nop()), b.cfg, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	publishJob(t, b.js, pingJob("job-slow"))
	<-started
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while a job was running", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !finished.Load() {
		t.Fatal("the job's context was cancelled by shutdown before the drain timeout")
	}
	rec, err := b.db.Job("job-slow")
	if err != nil || rec.Status != brr.StatusSucceeded {
		t.Fatalf("record = %+v, %v; want succeeded before Run returned", rec, err)
	}
	waitJobsEmpty(t, b.js)
}

func TestDrainTimeoutPutsJobBack(t *testing.T) {
	b := setup(t, Config{DrainTimeout: 200 * time.Millisecond})
	started := make(chan struct{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		if attempt == 1 {
			close(started)
			<-ctx.Done()
			return nil, ctx.Err()
		}
		return &brr.Result{}, nil
	}
	c := NewConsumer(b.js, b.db, b.h, NewOutbox(b.js, b.db, zerolog.Nop()), b.cfg, zerolog.Nop())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	publishJob(t, b.js, pingJob("job-stuck"))
	<-started
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if got := len(b.ev.find("job-stuck", brr.StatusRetrying)) + len(b.ev.find("job-stuck", brr.StatusFailed)); got != 0 {
		t.Errorf("%d retrying/failed events for a job cut short by shutdown, want 0", got)
	}
	// Put back without delay: the next worker runs it.
	b.start(t, b.db)
	b.ev.wait(t, "job-stuck", brr.StatusSucceeded)
}

// BenchmarkPipeline publishes b.N ping jobs with async publish and runs them through one
// consumer with a trivial handler over a real state DB (with fsync) and its outbox:
// decode, processed check, started record, handler, succeeded record, ack, and the
// events published. It reports jobs/s end to end.
func BenchmarkPipeline(b *testing.B) {
	for _, conc := range []int{4, 64} {
		b.Run(fmt.Sprintf("concurrency=%d", conc), func(b *testing.B) {
			srv := natstest.Start(b)
			_, pubJS := srv.JetStream(b)
			_, js := srv.JetStream(b)
			cfg := Config{Worker: "bench", Concurrency: conc}
			if err := EnsureStreams(context.Background(), js, cfg); err != nil {
				b.Fatal(err)
			}
			db := openDB(b, js)
			c := NewConsumer(js, db, benchHandler{}, NewOutbox(js, db, zerolog.Nop()), cfg, zerolog.Nop())
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- c.Run(ctx) }()
			defer func() {
				cancel()
				<-done
			}()

			bodies := make([][]byte, b.N)
			ids := make([]string, b.N)
			for i := range b.N {
				j := brr.NewJob(&brr.PingJob{})
				ids[i] = j.ID
				data, err := json.Marshal(j)
				if err != nil {
					b.Fatal(err)
				}
				bodies[i] = data
			}
			b.ResetTimer()
			start := time.Now()
			for i := range b.N {
				for {
					_, err := pubJS.PublishAsync("brr.jobs.default.ping", bodies[i], jetstream.WithMsgID(ids[i]))
					if err == nil {
						break
					}
					if !errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
						b.Fatal(err)
					}
					<-pubJS.PublishAsyncComplete()
				}
			}
			select {
			case <-pubJS.PublishAsyncComplete():
			case <-time.After(time.Minute):
				b.Fatal("publish did not complete")
			}
			for c.Stats().Done < int64(b.N) {
				time.Sleep(time.Millisecond)
			}
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "jobs/s")
		})
	}
}

type benchHandler struct{}

func (benchHandler) Handle(ctx context.Context, job *brr.Job, rep brr.Reporter) (*brr.Outcome, error) {
	return &brr.Outcome{Result: &brr.Result{Ping: &brr.PingResult{Worker: "bench"}}}, nil
}

// TestRedeliveryOfJobDoneElsewhereIsNotRun: a redelivered job that BRR_RESULTS says
// succeeded (another worker ran it and its ack was lost) is acked without running. The
// handler's first attempt records a success in the bucket, as the other worker's outbox
// would, and fails, so that the job comes back to this worker, which has no record of it.
func TestRedeliveryOfJobDoneElsewhereIsNotRun(t *testing.T) {
	b := setup(t, Config{})
	kv, err := b.js.KeyValue(context.Background(), b.cfg.Subjects.ResultsBucket())
	if err != nil {
		t.Fatal(err)
	}
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		done, err := json.Marshal(&brr.Event{V: brr.Version, ID: "elsewhere", Type: brr.EventJob, Status: brr.StatusSucceeded,
			Time: time.Now().UTC(), Worker: "w2", JobID: job.ID, Kind: job.Kind})
		if err != nil {
			return nil, err
		}
		if _, err := kv.Put(ctx, job.ID, done); err != nil {
			return nil, err
		}
		return nil, errors.New("this attempt's ack is lost, as far as this test cares")
	}
	c := b.start(t, b.db)
	publishJob(t, b.js, pingJob("done-elsewhere"))
	testkit.Eventually(t, 15*time.Second, "the redelivery to be acked as a duplicate", func() bool { return c.Stats().Duplicates == 1 })
	waitJobsEmpty(t, b.js)
	if got := b.h.count("done-elsewhere"); got != 1 {
		t.Errorf("handler ran %d times, want 1: the redelivery should not run", got)
	}
}

// TestRetriedDeadLetterThatFailsAgainIsListed retries a dead job with `brr dlq retry`
// (Client.RetryDead), and the job fails again. Its second dead letter used to vanish: it
// had the first one's Nats-Msg-Id, "dlq-<job id>", which the stream's duplicate window
// dropped, and RetryDead had removed the first; `brr dlq ls` listed nothing.
func TestRetriedDeadLetterThatFailsAgainIsListed(t *testing.T) {
	b := setup(t, Config{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		return nil, brr.Permanent(errors.New("source is gone"))
	}
	b.start(t, b.db)
	publishJob(t, b.js, pingJob("fails-twice"))
	b.ev.wait(t, "fails-twice", brr.StatusFailed)
	deadLetters(t, b.js, 1)

	client, err := brr.NewClient(b.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t, 20*time.Second)
	if _, err := client.RetryDead(ctx, "fails-twice"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "the retried job to run", func() bool { return b.h.count("fails-twice") == 2 })
	var entries []brr.DeadLetterEntry
	testkit.Eventually(t, 15*time.Second, "the second failure's dead letter", func() bool {
		entries, err = client.DeadLetters(ctx)
		return err == nil && len(entries) == 1
	})
	if e := entries[0]; e.JobID != "fails-twice" || e.Seq < 2 || !strings.Contains(e.Error, "source is gone") {
		t.Fatalf("dead letter after the retry = %+v", e)
	}
}

// TestSnoozesDoNotUseUpDeliveries: a job that cannot start yet (its source is leased by a
// long backup elsewhere) is snoozed again and again. Every snooze used to be a NAK, which
// JetStream counts as a delivery: with max_deliver 3 the job went dead after three
// snoozes without ever failing. Now it comes back from a schedule as a fresh message
// that carries its attempts, so it runs once the lease is free, as attempt 1, and a
// real failure after the snoozes is attempt 1 too.
func TestSnoozesDoNotUseUpDeliveries(t *testing.T) {
	b := setup(t, Config{MaxDeliver: 3})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		switch {
		case attempt <= 5:
			return nil, brr.Snooze(errors.New("source /srv is leased by worker w2"), 20*time.Millisecond)
		case attempt == 6:
			return nil, errors.New("a transient error after the snoozes")
		}
		return &brr.Result{}, nil
	}
	c := b.start(t, b.db)
	publishJob(t, b.js, pingJob("job-snoozed-long"))
	ok := b.ev.wait(t, "job-snoozed-long", brr.StatusSucceeded)
	if ok.Attempt != 2 {
		t.Errorf("succeeded on attempt %d, want 2 (one failure; snoozes are not attempts)", ok.Attempt)
	}
	if got := b.h.count("job-snoozed-long"); got != 7 {
		t.Errorf("handler ran %d times, want 7", got)
	}
	if s := c.Stats(); s.Snoozed != 5 || s.Retried != 1 || s.Dead != 0 || s.Failed != 0 {
		t.Errorf("Stats = %+v, want 5 snoozed, 1 retried, none dead", s)
	}
}
