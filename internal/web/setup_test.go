package web

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/health"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
)

var (
	_ Records = (*state.DB)(nil)
	_ Health  = (*health.Monitor)(nil)
)

const testKey = "0123456789abcdef-test-key"

// fixture is a real worker in one process: an embedded nats-server with the streams, a
// file repository, bbolt state, the job engine, the consume loop, the query service and
// the web Server under test on a loopback httptest server.
type fixture struct {
	t        *testing.T
	url      string
	nc       *nats.Conn // the worker's
	js       jetstream.JetStream
	client   *brr.Client
	srv      *Server
	src      string // a small source tree to back up
	logs     *testkit.SyncBuffer
	registry *events.Registry // the pools' repo registry, where "local" is registered
	repoID   string           // the id of the repository "local"
}

// setup starts the fixture; change adjusts the web Config before the Server is made.
// Rate limits are high unless change lowers them, so that tests meet 429 only on purpose.
func setup(t *testing.T, change func(*Config)) *fixture {
	t.Helper()
	return setupIn(t, newSource(t), change)
}

// newSource makes a small source tree to back up: three files.
func newSource(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	for i, size := range []int{10, 2000, 70000} {
		if err := os.WriteFile(filepath.Join(src, "f"+string(rune('a'+i))), bytes.Repeat([]byte{byte(i + 1)}, size), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return src
}

// setupIn is setup with src as the fixture's source tree.
func setupIn(t *testing.T, src string, change func(*Config)) *fixture {
	t.Helper()
	ns := natstest.Start(t)
	nc, js := ns.JetStream(t)
	ctx := context.Background()

	ecfg := events.Config{Worker: "w-test", Host: "testhost", DrainTimeout: 5 * time.Second}
	if err := events.EnsureStreams(ctx, js, ecfg); err != nil {
		t.Fatalf("ensure streams: %v", err)
	}
	r, be := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	// The pool registers "local" as the worker does when it opens its repos.
	registry, err := events.OpenRegistry(ctx, js, ecfg)
	if err != nil {
		t.Fatalf("open registry: %v", err)
	}
	ref, err := registry.Claim(ctx, []string{brr.DefaultPool}, brr.RepoRegistration{
		Repo: "local", ID: r.ID(), Location: be.Location(), Worker: "w-test", Host: "testhost", Time: time.Now().UTC(),
		Spec: &brr.RepoSpec{URL: be.Location()},
	})
	if err != nil || ref != nil {
		t.Fatalf("register repo local: %v %+v", err, ref)
	}
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if err != nil {
		t.Fatalf("open state: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	engine := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r}, Cache: db, Points: db, Host: "testhost", Worker: "w-test"}
	log := zerolog.Nop()
	outbox := events.NewOutbox(js, db, log)
	testkit.Go(t, "outbox", outbox.Run)
	testkit.Go(t, "consumer", events.NewConsumer(js, db, engine, outbox, ecfg, log).Run)
	testkit.Go(t, "api", func(ctx context.Context) error { return events.ServeAPI(ctx, nc, ecfg, engine, log) })

	// The pool's health as the worker sees it: H5's monitor, fed by a heartbeat.
	hcfg := health.Config{Worker: "w-test", Host: "testhost", Interval: time.Second}
	monitor := health.NewMonitor(js, hcfg, log)
	testkit.Go(t, "health monitor", monitor.Run)
	beat := health.NewHeartbeat(nc, js, hcfg, health.Worker{Version: "v-test", Pools: []string{brr.DefaultPool}, Concurrency: 4, Started: time.Now(), Repos: engine.RepoNames}, log)
	if err := beat.Publish(ctx); err != nil {
		t.Fatalf("publish heartbeat: %v", err)
	}

	logs := &testkit.SyncBuffer{}
	cfg := Config{
		NC: nc, Pools: []string{brr.DefaultPool}, Records: db, APIKey: []byte(testKey), Health: monitor,
		Worker: "w-test", Host: "testhost", Version: "v-test",
		Repos: func() []string { return []string{"local"} }, DefaultRepo: "local",
		RepoInfos: func(ctx context.Context) ([]brr.RepoInfo, error) {
			regs, err := registry.List(ctx, brr.DefaultPool)
			if err != nil {
				return nil, err
			}
			return brr.RepoInfos(regs, monitor.Workers()), nil
		},
		Limits:    Limits{Reads: Rate{PerSecond: 1e6, Burst: 1e6}, Writes: Rate{PerSecond: 1e6, Burst: 1e6}},
		KeepAlive: 100 * time.Millisecond,
		Log:       zerolog.New(logs).Level(zerolog.DebugLevel),
	}
	if change != nil {
		change(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	testkit.Go(t, "web server", srv.Run) // registered after ts.Close, so it ends first and lets streams close

	client, err := brr.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, url: ts.URL, nc: nc, js: js, client: client, srv: srv, src: src, logs: logs, registry: registry, repoID: r.ID()}
}

// response is an answer read whole.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) String() string { return string(r.body) }

// do sends a request with key as Bearer token (none when empty).
func (f *fixture) do(method, path, key string, body io.Reader) response {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		f.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return response{status: res.StatusCode, header: res.Header, body: data}
}

func (f *fixture) get(path string) response { return f.do("GET", path, testKey, nil) }

func (f *fixture) post(path, body string) response {
	return f.do("POST", path, testKey, strings.NewReader(body))
}

// decode decodes a JSON answer into v, failing the test on a wrong status or body.
func decode(t *testing.T, r response, status int, v any) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// backup runs a backup of the fixture's source through the API and waits for it.
func (f *fixture) backup(id string) *brr.Event {
	f.t.Helper()
	var acc JobAccepted
	decode(f.t, f.post("/api/v1/jobs", `{"kind":"backup","id":"`+id+`","args":{"path":"`+f.src+`"}}`), http.StatusAccepted, &acc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := f.client.Wait(ctx, acc.ID, nil)
	if err != nil {
		f.t.Fatalf("backup %s: %v", id, err)
	}
	return e
}
