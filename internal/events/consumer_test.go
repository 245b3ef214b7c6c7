package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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
	var cause error // what the job's context says stopped it
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		if attempt == 1 {
			close(started)
			<-ctx.Done()
			cause = context.Cause(ctx)
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
	if !errors.Is(cause, errDrainTimeout) {
		t.Errorf("cause of the job's cancel = %v, want the drain timeout (%v)", cause, errDrainTimeout)
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
// decode, processed check, started event, handler, succeeded record, ack, and the
// events published (a ping ends before watchAfter: no started record or entry). It reports jobs/s end to end.
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
