package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// fixtureQueries serves a fixed list of snapshots per repo and counts the queries.
type fixtureQueries struct {
	snaps map[string][]brr.Snapshot
	calls atomic.Int64
}

func (q *fixtureQueries) Snapshots(ctx context.Context, repo, source string) ([]brr.Snapshot, error) {
	q.calls.Add(1)
	list, ok := q.snaps[repo]
	if !ok {
		return nil, fmt.Errorf("repo %q is not configured (configured: local)", repo)
	}
	var out []brr.Snapshot
	for _, s := range list {
		if source == "" || s.Source == source {
			out = append(out, s)
		}
	}
	return out, nil
}

func newFixture() *fixtureQueries {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return &fixtureQueries{snaps: map[string][]brr.Snapshot{
		"local": {
			{ID: "s1", Repo: "local", Time: t0, Host: "h1", Source: "/srv/app", Files: 3, Bytes: 100},
			{ID: "s2", Repo: "local", Time: t0.Add(time.Hour), Host: "h1", Source: "/srv/db", Parent: "", Files: 1, Bytes: 7},
			{ID: "s3", Repo: "local", Time: t0.Add(2 * time.Hour), Host: "h1", Source: "/srv/app", Parent: "s1", Files: 4, Bytes: 120},
		},
	}}
}

// serveAPI runs ServeAPI on a new connection to s until the test ends.
func serveAPI(t *testing.T, s *natstest.Server, cfg Config, q Queries) {
	t.Helper()
	nc := s.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeAPI(ctx, nc, cfg, q, zerolog.Nop()) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeAPI: %v", err)
		}
	})
}

// request sends data to subject and decodes the reply, retrying while nobody listens
// yet (ServeAPI subscribes in its own goroutine).
func request(t *testing.T, nc *nats.Conn, subject string, data []byte) brr.SnapshotsReply {
	t.Helper()
	var (
		m   *nats.Msg
		err error
	)
	testkit.WaitFor(10*time.Second, func() bool {
		m, err = nc.Request(subject, data, 5*time.Second)
		return !errors.Is(err, nats.ErrNoResponders)
	})
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	var reply brr.SnapshotsReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		t.Fatalf("decode reply %s: %v", m.Data, err)
	}
	if reply.V != brr.Version {
		t.Errorf("reply v = %d, want %d", reply.V, brr.Version)
	}
	return reply
}

func TestAPISnapshots(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	cfg := Config{Pools: []string{"default", "host1"}}
	q := newFixture()
	serveAPI(t, s, cfg, q)
	nc := s.Connect(t)

	for _, pool := range cfg.Pools {
		subject := cfg.Subjects.API(pool, "snapshots")
		reply := request(t, nc, subject, []byte(`{"v":1,"repo":"local"}`))
		if reply.Error != "" {
			t.Fatalf("%s: Error = %q", pool, reply.Error)
		}
		if got, want := reply.Repo, "local"; got != want {
			t.Errorf("%s: Repo = %q, want %q", pool, got, want)
		}
		want := q.snaps["local"]
		if got, want := len(reply.Snapshots), len(want); got != want {
			t.Fatalf("%s: %d snapshots, want %d", pool, got, want)
		}
		for i, s := range reply.Snapshots {
			w := want[i]
			if s.ID != w.ID || s.Source != w.Source || !s.Time.Equal(w.Time) || s.Files != w.Files || s.Bytes != w.Bytes || s.Parent != w.Parent {
				t.Errorf("%s: snapshot %d = %+v, want %+v", pool, i, s, w)
			}
		}
	}

	subject := cfg.Subjects.API("default", "snapshots")
	reply := request(t, nc, subject, []byte(`{"v":1,"repo":"local","source":"/srv/app"}`))
	if got, want := len(reply.Snapshots), 2; got != want {
		t.Errorf("snapshots of /srv/app: %d, want %d", got, want)
	}
	for _, s := range reply.Snapshots {
		if s.Source != "/srv/app" {
			t.Errorf("snapshot %s of source %s in a listing of /srv/app", s.ID, s.Source)
		}
	}

	reply = request(t, nc, subject, []byte(`{"v":1,"repo":"local","source":"/nowhere"}`))
	if reply.Error != "" || reply.Snapshots == nil || len(reply.Snapshots) != 0 {
		t.Errorf("empty listing = %+v, want no error and an empty list", reply)
	}
	if m, err := nc.Request(subject, []byte(`{"v":1,"repo":"local","source":"/nowhere"}`), 5*time.Second); err != nil {
		t.Fatal(err)
	} else if !strings.Contains(string(m.Data), `"snapshots":[]`) {
		t.Errorf("empty listing = %s, want \"snapshots\":[]", m.Data)
	}
}

func TestAPIErrors(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	cfg := Config{}
	q := newFixture()
	serveAPI(t, s, cfg, q)
	nc := s.Connect(t)
	subject := cfg.Subjects.API(brr.DefaultPool, "snapshots")

	for _, tc := range []struct {
		name, body, want string
	}{
		{"bad json", `{"v":1,"repo":`, "not valid JSON"},
		{"not an object", `[1,2]`, "not valid JSON"},
		{"empty", ``, "not valid JSON"},
		{"no version", `{"repo":"local"}`, "version 0"},
		{"future version", `{"v":2,"repo":"local"}`, "version 2"},
		{"unknown repo", `{"v":1,"repo":"offsite"}`, `repo "offsite" is not configured`},
	} {
		reply := request(t, nc, subject, []byte(tc.body))
		if !strings.Contains(reply.Error, tc.want) {
			t.Errorf("%s: Error = %q, want it to contain %q", tc.name, reply.Error, tc.want)
		}
		if len(reply.Snapshots) != 0 {
			t.Errorf("%s: %d snapshots with an error", tc.name, len(reply.Snapshots))
		}
	}
	if got, want := q.calls.Load(), int64(1); got != want {
		t.Errorf("Queries called %d times, want %d (only the well-formed request)", got, want)
	}
}

func TestAPIQueueGroup(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	cfg := Config{}
	q1, q2 := newFixture(), newFixture()
	serveAPI(t, s, cfg, q1)
	serveAPI(t, s, cfg, q2)
	nc := s.Connect(t)
	subject := cfg.Subjects.API(brr.DefaultPool, "snapshots")
	body := []byte(`{"v":1,"repo":"local"}`)

	// Wait until both instances have answered once, so both are subscribed.
	both := testkit.WaitFor(10*time.Second, func() bool {
		request(t, nc, subject, body)
		return q1.calls.Load() > 0 && q2.calls.Load() > 0
	})
	if !both {
		t.Fatalf("not both instances answer: %d and %d calls", q1.calls.Load(), q2.calls.Load())
	}
	before := q1.calls.Load() + q2.calls.Load()

	inbox := nats.NewInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for range n {
		if err := nc.PublishRequest(subject, inbox, body); err != nil {
			t.Fatal(err)
		}
	}
	for i := range n {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			t.Fatalf("reply %d of %d: %v", i+1, n, err)
		}
		var reply brr.SnapshotsReply
		if err := json.Unmarshal(m.Data, &reply); err != nil || reply.Error != "" || len(reply.Snapshots) != 3 {
			t.Fatalf("reply %d = %s (%v)", i+1, m.Data, err)
		}
	}
	// Any second answer would be on its way by now; a round trip to the server after
	// the last reply lets it arrive.
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	if m, err := sub.NextMsg(200 * time.Millisecond); err == nil {
		t.Fatalf("extra reply: %s", m.Data)
	}
	if got, want := q1.calls.Load()+q2.calls.Load()-before, int64(n); got != want {
		t.Errorf("Queries called %d times for %d requests", got, want)
	}
}

// pointsFixture answers both queries.
type pointsFixture struct {
	*fixtureQueries
	unread map[string]string
}

func (q pointsFixture) Checkpoints(ctx context.Context, repo string) ([]brr.RecoveryPoint, map[string]string, error) {
	if repo == "nosuch" {
		return nil, nil, errors.New(`repo "nosuch" is not configured (configured: local)`)
	}
	return []brr.RecoveryPoint{{Repo: "local", Label: "release-1", Snapshot: "s1"}}, q.unread, nil
}

func TestAPICheckpoints(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	cfg := Config{Pools: []string{"default"}}
	serveAPI(t, s, cfg, pointsFixture{newFixture(), map[string]string{"offsite": "bucket gone"}})
	nc := s.Connect(t)
	subject := cfg.Subjects.API("default", "checkpoints")

	ask := func(data string) brr.CheckpointsReply {
		t.Helper()
		request(t, nc, cfg.Subjects.API("default", "snapshots"), []byte(`{"v":1,"repo":"local"}`)) // wait for the service
		m, err := nc.Request(subject, []byte(data), 5*time.Second)
		if err != nil {
			t.Fatalf("request %s: %v", subject, err)
		}
		var reply brr.CheckpointsReply
		if err := json.Unmarshal(m.Data, &reply); err != nil || reply.V != brr.Version {
			t.Fatalf("reply %s: %v", m.Data, err)
		}
		return reply
	}
	reply := ask(`{"v":1}`)
	if reply.Error != "" || len(reply.Points) != 1 || reply.Points[0].Label != "release-1" || reply.Unread["offsite"] != "bucket gone" {
		t.Fatalf("checkpoints reply %+v", reply)
	}
	if reply := ask(`{"v":1,"repo":"nosuch"}`); !strings.Contains(reply.Error, "not configured") {
		t.Fatalf("checkpoints of an unknown repo: %+v", reply)
	}
	if reply := ask(`{"v":2}`); !strings.Contains(reply.Error, "version 2") {
		t.Fatalf("checkpoints request of version 2: %+v", reply)
	}
	if reply := ask(`not json`); !strings.Contains(reply.Error, "not valid JSON") {
		t.Fatalf("checkpoints request that is not JSON: %+v", reply)
	}

	// Queries without PointQueries do not serve checkpoints.
	s2 := natstest.Start(t)
	serveAPI(t, s2, cfg, newFixture())
	nc2 := s2.Connect(t)
	request(t, nc2, cfg.Subjects.API("default", "snapshots"), []byte(`{"v":1,"repo":"local"}`))
	if _, err := nc2.Request(subject, []byte(`{"v":1}`), 5*time.Second); err == nil {
		t.Fatal("checkpoints answered by a service whose queries do not list points")
	}
}

// slowQueries lists snapshots only once release is closed.
type slowQueries struct {
	started chan struct{}
	release chan struct{}
}

func (q slowQueries) Snapshots(ctx context.Context, repo, source string) ([]brr.Snapshot, error) {
	q.started <- struct{}{}
	select {
	case <-q.release:
	case <-ctx.Done():
	}
	return nil, nil
}

// TestAPIPing: the ping query says which worker serves a pool, at once even while every
// slot is busy with slow listings; a pool that no worker serves has nobody listening.
func TestAPIPing(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	cfg := Config{Worker: "w-ping", Pools: []string{"default", "host1"}}
	q := slowQueries{started: make(chan struct{}, apiConcurrency), release: make(chan struct{})}
	defer close(q.release)
	serveAPI(t, s, cfg, q)
	nc := s.Connect(t)
	c, err := brr.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t, 30*time.Second)

	var worker string
	testkit.WaitFor(10*time.Second, func() bool { // ServeAPI subscribes in its own goroutine
		worker, err = c.Served(ctx, "")
		return !errors.Is(err, brr.ErrNoWorker)
	})
	if err != nil || worker != "w-ping" {
		t.Fatalf("Served(default) = %q, %v; want w-ping", worker, err)
	}

	// Every slot busy with a listing that does not end.
	for range apiConcurrency {
		if err := nc.PublishRequest(cfg.Subjects.API("host1", "snapshots"), nc.NewInbox(), []byte(`{"v":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	for range apiConcurrency {
		select {
		case <-q.started:
		case <-ctx.Done():
			t.Fatal("the listings did not start")
		}
	}
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if worker, err := c.Served(pingCtx, "host1"); err != nil || worker != "w-ping" {
		t.Errorf("Served(host1) with every slot busy = %q, %v; want w-ping at once", worker, err)
	}

	_, err = c.Served(ctx, "elsewhere")
	if !errors.Is(err, brr.ErrNoWorker) || !strings.Contains(err.Error(), `no worker serves pool "elsewhere" on `) {
		t.Errorf("Served(elsewhere) = %v, want ErrNoWorker naming the pool", err)
	}
	if _, err := c.Served(ctx, "a.b"); !errors.Is(err, brr.ErrInvalid) {
		t.Errorf("Served(a.b) = %v, want ErrInvalid", err)
	}
}

// TestAPIPingProblem: a worker whose NATS cannot store (cfg.Problem: its embedded
// JetStream store is full) says so in its answer to a ping, and a client whose publish
// the server never answered adds that to the error instead of a bare timeout; once the
// problem is gone, the timeout is all the error says.
func TestAPIPingProblem(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	var problem atomic.Pointer[string]
	full := "the JetStream store of the embedded NATS server at /data/jetstream is full (no space left on device): free space"
	problem.Store(&full)
	cfg := Config{Worker: "w-full", Pools: []string{"default"}, Problem: func() string { return *problem.Load() }}
	serveAPI(t, s, cfg, &fixtureQueries{})
	// What nats-server does with a publish to a stream it cannot write: takes it and
	// never answers. A subscriber that does not reply does the same, without a stream.
	nc := s.Connect(t)
	if _, err := nc.Subscribe(cfg.Subjects.AllJobs(), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	c, err := brr.NewClient(s.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t, 30*time.Second)
	testkit.WaitFor(10*time.Second, func() bool { // ServeAPI subscribes in its own goroutine
		_, err = c.Served(ctx, "")
		return err == nil
	})
	publish := func() error {
		pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		_, err := c.Publish(pctx, brr.PingJob{})
		return err
	}

	err = publish()
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "worker w-full says: "+full) {
		t.Errorf("publish to a full store = %v; want the timeout and what worker w-full says", err)
	}
	none := ""
	problem.Store(&none)
	err = publish()
	if !errors.Is(err, context.DeadlineExceeded) || strings.Contains(err.Error(), "says") {
		t.Errorf("publish timing out with no problem = %v; want the timeout alone", err)
	}
}

// TestAPIFallbackWorker runs a worker that refuses repo local beside one that serves it:
// every query is answered by the one that serves it, and with that one gone, the refusing
// worker answers, late, saying why it does not serve local.
func TestAPIFallbackWorker(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	const why = "repo local refused: this worker's repo local is another repository"
	good := newFixture()
	goodCfg := Config{}
	nc := s.Connect(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeAPI(ctx, s.Connect(t), goodCfg, good, zerolog.Nop()) }()
	subject := goodCfg.Subjects.API(brr.DefaultPool, "snapshots")
	request(t, nc, subject, []byte(`{"v":1,"repo":"local"}`)) // it serves

	refusing := &fixtureQueries{snaps: map[string][]brr.Snapshot{"offsite": {{ID: "o1", Repo: "offsite"}}}}
	rnc := s.Connect(t)
	rctx, rcancel := context.WithCancel(context.Background())
	t.Cleanup(rcancel)
	go func() {
		_ = ServeAPI(rctx, rnc, Config{Refused: func() map[string]string { return map[string]string{"local": why} }}, refusingQueries(refusing, why), zerolog.Nop())
	}()
	// Both serve once the refusing worker's subscription has reached the server.
	testkit.Eventually(t, 10*time.Second, "the refusing worker subscribes", func() bool {
		return rnc.NumSubscriptions() > 0 && rnc.Flush() == nil
	})
	for i := range 5 {
		start := time.Now()
		reply := request(t, nc, subject, []byte(`{"v":1,"repo":"local"}`))
		if reply.Error != "" || len(reply.Snapshots) != 3 {
			t.Fatalf("query %d: %+v, want the 3 snapshots of the worker that serves local", i, reply)
		}
		if d := time.Since(start); d > fallbackDelay/2 {
			t.Errorf("query %d took %s: the fallback worker held it up", i, d)
		}
	}
	if n := refusing.calls.Load(); n > 0 {
		t.Errorf("the refusing worker answered %d queries before its fallback delay", n)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	// Alone, it answers, late: what it serves, and why not local.
	start := time.Now()
	reply := request(t, nc, subject, []byte(`{"v":1,"repo":"local"}`))
	if d := time.Since(start); reply.Error != why || d < fallbackDelay {
		t.Fatalf("refusing worker alone: %+v after %s, want the refusal after %s", reply, d, fallbackDelay)
	}
	if reply = request(t, nc, subject, []byte(`{"v":1,"repo":"offsite"}`)); reply.Error != "" || len(reply.Snapshots) != 1 {
		t.Fatalf("refusing worker alone, repo offsite: %+v", reply)
	}
}

// TestAPIFollowsRefusals starts two workers that serve repo local; then one of them
// refuses it (its pool's registry changed): within a few seconds it answers only as the
// fallback, so every query gets the serving worker's answer, at once.
func TestAPIFollowsRefusals(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	const why = "repo local is in the pool's registry but this worker cannot open it"
	good := newFixture()
	serveAPI(t, s, Config{}, good)
	var refuses atomic.Bool
	flipping := &flipQueries{fixtureQueries: newFixture(), refuses: &refuses, why: why}
	serveAPI(t, s, Config{Refused: func() map[string]string {
		if refuses.Load() {
			return map[string]string{"local": why}
		}
		return nil
	}}, flipping)
	nc := s.Connect(t)
	subject := Config{}.Subjects.API(brr.DefaultPool, "snapshots")
	// Both answer while neither refuses.
	testkit.Eventually(t, 10*time.Second, "both workers answer", func() bool {
		request(t, nc, subject, []byte(`{"v":1,"repo":"local"}`))
		return good.calls.Load() > 0 && flipping.calls.Load() > 0
	})

	refuses.Store(true)
	time.Sleep(3 * refusalCheck) // the moment it moves is not observable from outside
	before := flipping.calls.Load()
	for i := range 10 {
		start := time.Now()
		reply := request(t, nc, subject, []byte(`{"v":1,"repo":"local"}`))
		if reply.Error != "" || len(reply.Snapshots) != 3 {
			t.Fatalf("query %d after the refusal: %+v, want the serving worker's 3 snapshots", i, reply)
		}
		if d := time.Since(start); d > fallbackDelay/2 {
			t.Errorf("query %d took %s: it waited for the fallback", i, d)
		}
	}
	if n := flipping.calls.Load() - before; n > 0 {
		t.Errorf("the refusing worker answered %d of 10 queries at once", n)
	}
}

// refusingQueries answers as an engine that refuses repo local does.
func refusingQueries(q *fixtureQueries, why string) *flipQueries {
	refuses := &atomic.Bool{}
	refuses.Store(true)
	return &flipQueries{fixtureQueries: q, refuses: refuses, why: why}
}

// flipQueries refuses repo local while refuses is set.
type flipQueries struct {
	*fixtureQueries
	refuses *atomic.Bool
	why     string
}

func (q *flipQueries) Snapshots(ctx context.Context, repo, source string) ([]brr.Snapshot, error) {
	if repo == "local" && q.refuses.Load() {
		q.calls.Add(1)
		return nil, errors.New(q.why)
	}
	return q.fixtureQueries.Snapshots(ctx, repo, source)
}
