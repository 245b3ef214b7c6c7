package health_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/health"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// interval is the health interval of the tests; turns are driven by hand, so it only
// sets where turns begin and how long a check may take.
const interval = 200 * time.Millisecond

// epoch is the start of a turn whose number is a multiple of 4: a summary turn.
var epoch = time.Unix(0, 0).Add(4000 * interval).UTC()

type bundle struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	client *brr.Client
}

// setup starts a server with brr's streams and buckets.
func setup(t *testing.T) *bundle {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.JetStream(t)
	if err := events.EnsureStreams(context.Background(), js, events.Config{}); err != nil {
		t.Fatalf("EnsureStreams: %v", err)
	}
	c, err := brr.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{nc: nc, js: js, client: c}
}

func (b *bundle) config(worker string, clk *testkit.Clock) health.Config {
	return health.Config{Worker: worker, Host: "h-" + worker, Interval: interval, Now: clk.Now}
}

// healthEvents returns the stored events of check, oldest first.
func (b *bundle) healthEvents(t *testing.T, check string) []brr.HealthCheck {
	t.Helper()
	evs, err := b.client.Events(context.Background(), "brr.events.health."+check, time.Time{}, 0)
	if err != nil {
		t.Fatalf("read %s events: %v", check, err)
	}
	var out []brr.HealthCheck
	for _, e := range evs {
		if e.Check == nil {
			t.Fatalf("health event %s without a check: %+v", e.ID, e)
		}
		out = append(out, *e.Check)
	}
	return out
}

// scripted is a check whose status the test sets, and that counts its runs.
type scripted struct {
	name   string
	mu     sync.Mutex
	status brr.HealthStatus
	runs   atomic.Int64
}

func (s *scripted) Name() string { return s.name }

func (s *scripted) set(st brr.HealthStatus) {
	s.mu.Lock()
	s.status = st
	s.mu.Unlock()
}

func (s *scripted) Run(_ context.Context, _ health.Tick) (health.Outcome, error) {
	s.runs.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	return health.Outcome{Results: []brr.HealthCheck{{Check: s.name, Subject: "thing", Status: s.status, Message: "scripted " + string(s.status)}}}, nil
}

func TestCheckRunsOncePerIntervalAcrossThreeWorkers(t *testing.T) {
	b := setup(t)
	clk := testkit.NewClock(epoch)
	ctx := context.Background()
	check := &scripted{name: "dlq", status: brr.HealthOK}
	var runners []*health.Runner
	for _, id := range []string{"w1", "w2", "w3"} {
		r, err := health.NewRunner(ctx, b.js, b.config(id, clk), zerolog.Nop(), check)
		if err != nil {
			t.Fatalf("NewRunner: %v", err)
		}
		runners = append(runners, r)
	}
	const ticks = 6
	for k := range ticks {
		var wg sync.WaitGroup
		var ran atomic.Int64
		for i, r := range runners {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Each worker looks at a slightly different moment of the same interval.
				now := epoch.Add(time.Duration(k)*interval + time.Duration(i)*time.Millisecond)
				ran.Add(int64(len(r.RunTick(ctx, now))))
			}()
		}
		wg.Wait()
		if got := ran.Load(); got != 1 {
			t.Fatalf("turn %d: %d runners ran the check, want exactly 1", k, got)
		}
	}
	// A worker late for a turn already taken does not run it again.
	for _, r := range runners {
		if ran := r.RunTick(ctx, epoch.Add((ticks-1)*interval+interval/2)); len(ran) != 0 {
			t.Fatalf("late RunTick ran %v again", ran)
		}
	}
	if got, want := check.runs.Load(), int64(ticks); got != want {
		t.Fatalf("check ran %d times in %d intervals, want %d", got, ticks, want)
	}
	var total int64
	for _, r := range runners {
		total += r.Runs()["dlq"]
	}
	if total != ticks {
		t.Fatalf("Runs() add up to %d, want %d", total, ticks)
	}
}

func TestTransitionsAndSummaries(t *testing.T) {
	b := setup(t)
	clk := testkit.NewClock(epoch)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	check := &scripted{name: "dlq", status: brr.HealthOK}
	r, err := health.NewRunner(ctx, b.js, b.config("w1", clk), zerolog.Nop(), check)
	if err != nil {
		t.Fatal(err)
	}
	mon := health.NewMonitor(b.js, b.config("w1", clk), zerolog.Nop())
	monDone := make(chan error, 1)
	go func() { monDone <- mon.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-monDone; err != nil {
			t.Errorf("Monitor.Run: %v", err)
		}
	})

	at := func(k int) time.Time { return epoch.Add(time.Duration(k) * interval) }
	// Turns 0 and 4 are summaries (every 4th): they publish whatever the status.
	script := []brr.HealthStatus{brr.HealthOK, brr.HealthOK, brr.HealthWarn, brr.HealthWarn, brr.HealthWarn, brr.HealthOK, brr.HealthOK}
	for k, st := range script {
		check.set(st)
		clk.Set(at(k))
		if ran := r.RunTick(ctx, at(k)); len(ran) != 1 {
			t.Fatalf("turn %d ran %v", k, ran)
		}
		if k == 2 {
			testkit.Eventually(t, 10*time.Second, "the monitor to see warn", func() bool { return mon.Report().Status == brr.HealthWarn })
		}
	}
	got := b.healthEvents(t, "dlq")
	want := []struct {
		status      brr.HealthStatus
		time, since time.Time
	}{
		{brr.HealthOK, at(0), at(0)},   // first result, and a summary
		{brr.HealthWarn, at(2), at(2)}, // changed
		{brr.HealthWarn, at(4), at(2)}, // summary: unchanged, Since kept
		{brr.HealthOK, at(5), at(5)},   // changed back
	}
	if len(got) != len(want) {
		t.Fatalf("got %d dlq events, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		g := got[i]
		if g.Status != w.status || !g.Time.Equal(w.time) || !g.Since.Equal(w.since) || g.Subject != "thing" {
			t.Errorf("event %d = %s at %s since %s (subject %q), want %s at %s since %s", i, g.Status, g.Time, g.Since, g.Subject, w.status, w.time, w.since)
		}
	}

	testkit.Eventually(t, 10*time.Second, "the monitor to see ok again", func() bool { return mon.Report().Status == brr.HealthOK })
	rep := mon.Report()
	if len(rep.Checks) != 1 || rep.Checks[0].Check != "dlq" || !rep.Checks[0].Since.Equal(at(5)) {
		t.Fatalf("report checks = %+v, want the dlq result since turn 5", rep.Checks)
	}
	// Nobody runs the check for four intervals: the report says its results are stale.
	clk.Set(at(len(script) + 4))
	rep = mon.Report()
	if rep.Status != brr.HealthWarn || len(rep.Checks) != 2 || rep.Checks[0].Subject != "" || rep.Checks[0].Status != brr.HealthWarn {
		t.Fatalf("stale report = %+v, want a warn result saying the dlq check has not run", rep)
	}
}

func TestCheckErrorIsWarn(t *testing.T) {
	b := setup(t)
	clk := testkit.NewClock(epoch)
	ctx := context.Background()
	// A DLQ check on a prefix whose streams do not exist cannot measure.
	broken := &health.DLQCheck{JS: b.js, Subjects: brr.Subjects{Prefix: "nowhere"}}
	r, err := health.NewRunner(ctx, b.js, b.config("w1", clk), zerolog.Nop(), broken)
	if err != nil {
		t.Fatal(err)
	}
	r.RunTick(ctx, epoch)
	got := b.healthEvents(t, "dlq")
	if len(got) != 1 || got[0].Status != brr.HealthWarn || got[0].Message == "" {
		t.Fatalf("events = %+v, want one warn saying the check could not run", got)
	}
}

func TestHeartbeatsAndWorkers(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	now := time.Now().UTC()
	live := health.NewHeartbeat(b.nc, b.js, health.Config{Worker: "w-live", Host: "h1", Interval: interval, Now: func() time.Time { return now }},
		health.Worker{Version: "v9", Pools: []string{"default"}, Concurrency: 3, DataDir: t.TempDir(), Started: now.Add(-time.Minute),
			Stats:    func() health.WorkerStats { return health.WorkerStats{InFlight: 2, Done: 7, Failed: 1} },
			RepoKeys: func() map[string]string { return map[string]string{"local": "k1"} }}, zerolog.Nop())
	// The other worker's last heartbeat is ten intervals old.
	old := now.Add(-10 * interval)
	gone := health.NewHeartbeat(b.nc, b.js, health.Config{Worker: "w-gone", Host: "h2", Interval: interval, Now: func() time.Time { return old }},
		health.Worker{Version: "v9", Pools: []string{"default"}, Concurrency: 1, Started: old.Add(-time.Hour),
			Refused: func() []brr.RefusedRepo {
				return []brr.RefusedRepo{{Repo: "local", Pool: "default", Message: "repo local refused"}}
			}}, zerolog.Nop())
	for _, hb := range []*health.Heartbeat{gone, live, live} {
		if err := hb.Publish(ctx); err != nil {
			t.Fatalf("publish heartbeat: %v", err)
		}
	}

	workers, err := b.client.Workers(ctx)
	if err != nil {
		t.Fatalf("Workers: %v", err)
	}
	if len(workers) != 2 {
		t.Fatalf("Workers = %+v, want w-gone and w-live", workers)
	}
	g, l := workers[0], workers[1]
	if g.ID != "w-gone" || !g.Missing || l.ID != "w-live" || l.Missing {
		t.Fatalf("Workers = %+v, want w-gone missing and w-live live", workers)
	}
	if len(g.RefusedRepos) != 1 || g.RefusedRepos[0].Repo != "local" || g.RefusedRepos[0].Message != "repo local refused" || l.RefusedRepos != nil {
		t.Fatalf("refused repos in heartbeats: w-gone %+v, w-live %+v; want w-gone's local only", g.RefusedRepos, l.RefusedRepos)
	}
	if l.Host != "h1" || l.Version != "v9" || l.Concurrency != 3 || l.InFlight != 2 || l.JobsDone != 7 || l.JobsFailed != 1 ||
		l.UptimeSeconds != 60 || l.IntervalSeconds != interval.Seconds() || len(l.Pools) != 1 {
		t.Fatalf("live worker = %+v", l)
	}
	if l.RepoKeys["local"] != "k1" || g.RepoKeys != nil {
		t.Fatalf("repo keys in heartbeats: w-live %v, w-gone %v; want local's k1 for w-live only", l.RepoKeys, g.RepoKeys)
	}
	if l.DiskTotalBytes == 0 || l.DiskFreeBytes > l.DiskTotalBytes {
		t.Fatalf("disk of live worker: %d free of %d", l.DiskFreeBytes, l.DiskTotalBytes)
	}
	if l.NATSRTTMS <= 0 {
		t.Fatalf("NATS RTT = %g ms, want a measurement", l.NATSRTTMS)
	}

	// The monitor sees the same.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	mon := health.NewMonitor(b.js, health.Config{Worker: "w-live", Interval: interval, Now: func() time.Time { return now }}, zerolog.Nop())
	go func() { _ = mon.Run(ctx) }()
	testkit.Eventually(t, 10*time.Second, "the monitor to see both workers", func() bool { return len(mon.Workers()) == 2 })
	if ws := mon.Workers(); !ws[0].Missing || ws[1].Missing {
		t.Fatalf("monitor workers = %+v", ws)
	}
}

// TestMonitorLocal: a result the worker sets about itself is in every Report, makes the
// status as bad as it is, replaces an earlier one of the same check and subject, and is
// gone after ClearLocal. The monitor needs no bucket for it: a full JetStream store
// takes the bucket with it.
func TestMonitorLocal(t *testing.T) {
	mon := health.NewMonitor(nil, health.Config{Worker: "w1"}, zerolog.Nop())
	if rep := mon.Report(); rep.Status != brr.HealthOK || len(rep.Checks) != 0 {
		t.Fatalf("report of a new monitor = %+v", rep)
	}
	res := brr.HealthCheck{Check: brr.CheckDisk, Subject: "w1:jetstream", Status: brr.HealthWarn, Message: "nearly full"}
	mon.SetLocal(res)
	res.Status, res.Message = brr.HealthCritical, "full"
	mon.SetLocal(res)
	rep := mon.Report()
	if rep.Status != brr.HealthCritical || len(rep.Checks) != 1 || rep.Checks[0].Message != "full" {
		t.Fatalf("report with a local result = %+v; want the critical one alone", rep)
	}
	mon.ClearLocal(brr.CheckDisk, "w1:jetstream")
	if rep := mon.Report(); rep.Status != brr.HealthOK || len(rep.Checks) != 0 {
		t.Fatalf("report after ClearLocal = %+v", rep)
	}
}
