package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
	"github.com/brr-dev/brr/internal/watch"
)

// The watch of the tests: a backup 2 s after the last change, at least every 6 s while
// changes keep coming.
const (
	testWatchDelay    = 2 * time.Second
	testWatchMaxDelay = 6 * time.Second
)

// watchSetup is a pool watching the source "app", a directory, and what the tests see
// of it: the writes they make and the snapshots committed.
type watchSetup struct {
	t    *testing.T
	url  string
	cfg  string
	src  string
	c    *brr.Client
	ctx  context.Context
	js   jetstream.JetStream
	repo string

	mu      sync.Mutex
	writes  []write
	commits []commit
	changed chan struct{} // a commit came
}

// write is a file the test made: write i of a test makes file w-NNN, so a snapshot of n
// files holds the first n writes.
type write struct {
	name string
	at   time.Time
}

// commit is a snapshot of the source committed, as its event tells.
type commit struct {
	at     time.Time // the event's time: when the snapshot was committed
	files  int64
	job    string
	worker string
	id     string
}

func (c commit) String() string {
	return fmt.Sprintf("{%s: %d files, job %s, worker %s}", c.at.Format("15:04:05.000"), c.files, c.job, c.worker)
}

// newWatchSetup starts a NATS server of its own, so that the workers can die without
// taking it down, and writes the config that every worker of the pool shares: one
// repository and the watched source.
func newWatchSetup(t *testing.T) *watchSetup {
	ns := natstest.StartListening(t)
	s := &watchSetup{t: t, url: ns.ClientURL(), src: t.TempDir(), changed: make(chan struct{}, 1)}
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("watch-test-repository-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	s.repo = t.TempDir()
	s.cfg = fmt.Sprintf(`repos:
  shared: {url: "file://%s", key_file: %q}
sources:
  app: {path: %q, watch: {delay: %s, max_delay: %s}}
health: {canary: false, interval: 1s}
log: {level: debug}
`, s.repo, keyFile, s.src, testWatchDelay, testWatchMaxDelay)
	s.ctx = testkit.Context(t, 5*time.Minute)
	return s
}

// start starts a worker of the pool; the first one started makes the streams, and the
// test then follows the snapshots committed.
func (s *watchSetup) start() *testkit.Worker {
	t := s.t
	t.Helper()
	w := bins.StartWorker(t, testkit.WorkerOptions{NATS: s.url, Config: s.cfg})
	if s.c != nil {
		return w
	}
	nc, c := testkit.Connect(t, s.url)
	s.c = c
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	s.js = js
	err = c.Subscribe(s.ctx, "brr.events.snapshot.committed", func(e *brr.Event) {
		if e.SnapshotInfo == nil || e.Source != s.src {
			return
		}
		s.mu.Lock()
		s.commits = append(s.commits, commit{at: e.Time, files: e.SnapshotInfo.Files, job: e.SnapshotInfo.JobID, worker: e.Worker, id: e.Snapshot})
		s.mu.Unlock()
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}, brr.DeliverAll())
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// write makes the next file of the test.
func (s *watchSetup) write() write {
	s.mu.Lock()
	n := len(s.writes)
	s.mu.Unlock()
	name := fmt.Sprintf("w-%03d", n)
	testkit.WriteFile(s.t, filepath.Join(s.src, name), []byte(fmt.Sprintf("write %d\n", n)), 0o644)
	w := write{name: name, at: time.Now()}
	s.mu.Lock()
	s.writes = append(s.writes, w)
	s.mu.Unlock()
	return w
}

func (s *watchSetup) snapshot() []commit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.commits)
}

// waitCommit waits up to d for a commit that cond accepts, and returns it.
func (s *watchSetup) waitCommit(d time.Duration, what string, cond func(commit) bool) commit {
	s.t.Helper()
	deadline := time.After(d)
	for {
		for _, c := range s.snapshot() {
			if cond(c) {
				return c
			}
		}
		select {
		case <-s.changed:
		case <-deadline:
			s.t.Fatalf("no snapshot of %s within %s: %s; snapshots: %v", s.src, d, what, s.snapshot())
		case <-s.ctx.Done():
			s.t.Fatal(s.ctx.Err())
		}
	}
}

// rpo is, for each write, the time from the write to the commit of the first snapshot
// that holds it.
func (s *watchSetup) rpo() []time.Duration {
	commits := s.snapshot()
	s.mu.Lock()
	writes := slices.Clone(s.writes)
	s.mu.Unlock()
	var out []time.Duration
	for i, w := range writes {
		for _, c := range commits {
			if c.files > int64(i) && c.at.After(w.at) {
				out = append(out, c.at.Sub(w.at))
				break
			}
		}
	}
	return out
}

// logRPO logs the minimum, median and maximum of the RPO reached.
func (s *watchSetup) logRPO(what string) {
	r := s.rpo()
	if len(r) == 0 {
		s.t.Errorf("%s: no write was backed up", what)
		return
	}
	slices.Sort(r)
	s.t.Logf("RPO reached, %s: %d writes, min %s, median %s, max %s", what, len(r),
		r[0].Round(time.Millisecond), r[len(r)/2].Round(time.Millisecond), r[len(r)-1].Round(time.Millisecond))
}

// holder is the id of the worker that holds the watch lease of source app.
func (s *watchSetup) holder() string {
	s.t.Helper()
	kv, err := s.js.KeyValue(s.ctx, "BRR_LEASES")
	if err != nil {
		s.t.Fatal(err)
	}
	e, err := kv.Get(s.ctx, watchLeaseKey(brr.DefaultPool, "app"))
	if err != nil {
		s.t.Fatalf("watch lease: %v", err)
	}
	var v struct {
		Worker string `json:"worker"`
	}
	if err := json.Unmarshal(e.Value(), &v); err != nil {
		s.t.Fatal(err)
	}
	return v.Worker
}

// TestWatchDebouncesWrites is issue 13's watch test: a worker watches a directory with
// {delay: 2s, max_delay: 6s}; 50 writes over 10 s make between 2 and 4 snapshots, not
// 50, and the last one holds the last write. It logs the RPO reached: from each write
// to the commit of the first snapshot that holds it.
func TestWatchDebouncesWrites(t *testing.T) {
	s := newWatchSetup(t)
	w := s.start()
	// Taking the watch backs the source up once: the empty tree.
	s.waitCommit(30*time.Second, "the backup at take-over", func(c commit) bool { return c.files == 0 })
	if got := s.holder(); got != w.ID {
		t.Fatalf("watch lease held by %q, want the only worker %s", got, w.ID)
	}

	start := time.Now()
	const writes = 50
	tick := time.NewTicker(10 * time.Second / writes)
	for range writes {
		s.write()
		<-tick.C
	}
	tick.Stop()
	last := s.waitCommit(60*time.Second, "the last write", func(c commit) bool { return c.files >= writes })
	// Nothing more comes once the changes stop: the backups themselves set off none.
	time.Sleep(2*testWatchDelay + time.Second)

	// The watching worker's heartbeat says it watches the source, and, once it has seen
	// the last backup succeed, that every change is in a snapshot: the RPO check's input.
	testkit.Eventually(t, 60*time.Second, "the heartbeat says every change is in a snapshot", func() bool {
		infos, err := s.c.Workers(s.ctx)
		if err != nil {
			return false
		}
		for _, info := range infos {
			for _, src := range info.Sources {
				if src.Name == "app" && src.Watching != nil {
					return info.ID == w.ID && src.Watching.UnprotectedSince == nil
				}
			}
		}
		return false
	})

	var during []commit
	for _, c := range s.snapshot() {
		if c.at.After(start) {
			during = append(during, c)
		}
	}
	t.Logf("%d writes from %s to %s; snapshots: %v", writes, start.Format("15:04:05.000"), s.writes[writes-1].at.Format("15:04:05.000"), during)
	if n := len(during); n < 2 || n > 4 {
		t.Errorf("50 writes over 10 s made %d snapshots, want 2 to 4", n)
	}
	if final := during[len(during)-1]; final.id != last.id || final.files != writes {
		t.Errorf("the last snapshot is %+v, want %s with all %d files", final, last.id, writes)
	}
	for _, c := range during {
		if !strings.HasPrefix(c.job, "watch-default-app-") {
			t.Errorf("snapshot %s made by job %s, want a job of the watch (watch-default-app-<ms>)", c.id, c.job)
		}
	}

	// The last write, restored from the last snapshot.
	target := filepath.Join(t.TempDir(), "out")
	pub, err := s.c.Publish(s.ctx, brr.RestoreJob{Snapshot: last.id, Target: target})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := s.c.Wait(s.ctx, pub.ID, nil); err != nil || ev.Status != brr.StatusSucceeded {
		t.Fatalf("restore: %v %+v", err, ev)
	}
	if got, err := os.ReadFile(filepath.Join(target, fmt.Sprintf("w-%03d", writes-1))); err != nil || string(got) != fmt.Sprintf("write %d\n", writes-1) {
		t.Errorf("the last write restored from the last snapshot: %q, %v", got, err)
	}
	s.logRPO("50 writes over 10 s")
}

// TestWatchTakenOverWhenWorkerDies runs two workers with the watched source: one takes
// the watch; it is killed (SIGKILL), and the other takes the watch over and backs up a
// write made after the kill within the lease TTL plus the delay, and some slack.
func TestWatchTakenOverWhenWorkerDies(t *testing.T) {
	s := newWatchSetup(t)
	w1 := s.start()
	w2 := s.start()
	byID := map[string]*testkit.Worker{w1.ID: w1, w2.ID: w2}
	s.waitCommit(30*time.Second, "the backup at take-over", func(c commit) bool { return c.files == 0 })
	s.write()
	s.waitCommit(30*time.Second, "the first write", func(c commit) bool { return c.files == 1 })

	holder := s.holder()
	victim, ok := byID[holder]
	if !ok {
		t.Fatalf("watch lease held by %q, not by a worker of the test (%s, %s)", holder, w1.ID, w2.ID)
	}
	survivor := w1
	if victim == w1 {
		survivor = w2
	}
	victim.Kill()
	killed := time.Now()
	wr := s.write()

	ttl := events.DefaultLeaseTTL
	bound := ttl + testWatchDelay + 10*time.Second
	c := s.waitCommit(bound+20*time.Second, "the write after the kill", func(c commit) bool { return c.files >= 2 })
	took := c.at.Sub(wr.at)
	t.Logf("killed the watching worker %s at %s; write at +%s backed up by %s at +%s (snapshot %s, job %s)",
		victim.ID, killed.Format("15:04:05.000"), wr.at.Sub(killed).Round(time.Millisecond), c.worker, c.at.Sub(killed).Round(time.Millisecond), c.id, c.job)
	if took > bound {
		t.Errorf("the write after the kill was backed up %s later, more than the lease TTL (%s) + delay (%s) + 10 s", took.Round(time.Millisecond), ttl, testWatchDelay)
	}
	if c.worker != survivor.ID {
		t.Errorf("snapshot committed by %s, want the survivor %s", c.worker, survivor.ID)
	}
	if got := s.holder(); got != survivor.ID {
		t.Errorf("watch lease held by %q after the kill, want the survivor %s", got, survivor.ID)
	}
	if !strings.Contains(survivor.Logs(), "took the watch of the source") {
		t.Error("the survivor does not log that it took the watch")
	}
	s.logRPO("kill and take-over")
}

// TestWatchRPO checks the RPO the health check gives each source: health.rpo's, and for
// a watched source it does not name, the watch's max_delay plus its rescan interval plus
// a minute; keyed by the path, or source:NAME for a database.
func TestWatchRPO(t *testing.T) {
	cfg := Config{
		Health: HealthConfig{RPO: map[string]time.Duration{"/srv/set": 26 * time.Hour}},
		Sources: map[string]SourceConfig{
			"app":   {Path: "/srv/app", Watch: &WatchConfig{Delay: 5 * time.Second, MaxDelay: time.Minute}},
			"fast":  {Path: "/srv/fast", Watch: &WatchConfig{Delay: 2 * time.Second, MaxDelay: 6 * time.Second}},
			"set":   {Path: "/srv/set", Watch: &WatchConfig{Delay: 5 * time.Second, MaxDelay: time.Minute}},
			"db":    {SQLite: "/srv/db/app.db", Watch: &WatchConfig{Delay: time.Second, MaxDelay: 10 * time.Minute}},
			"plain": {Path: "/srv/plain"},
		},
	}
	got := cfg.rpo()
	want := map[string]time.Duration{
		"/srv/set":           26 * time.Hour,                             // health.rpo wins
		"/srv/app":           time.Minute + 10*time.Minute + time.Minute, // 12m
		"/srv/fast":          6*time.Second + time.Minute + time.Minute,  // the rescan is at least a minute
		jobs.SourceKey("db"): 10*time.Minute + time.Hour + time.Minute,   // and at most an hour
	}
	if len(got) != len(want) {
		t.Errorf("rpo = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("rpo[%s] = %s, want %s", k, got[k], v)
		}
	}
	if cfg.Health.RPO["/srv/app"] != 0 {
		t.Error("rpo changed the config's map")
	}
	if got, want := watch.RescanInterval(time.Minute), 10*time.Minute; got != want {
		t.Errorf("RescanInterval(1m) = %s, want %s", got, want)
	}
	if got, want := watchJobID("default", "app")(time.UnixMilli(1700000000123)), "watch-default-app-1700000000123"; got != want {
		t.Errorf("job id = %s, want %s", got, want)
	}
	long := watchJobID(strings.Repeat("p", 64), strings.Repeat("n", 64))(time.UnixMilli(1))
	if err := brr.ValidateID(long); err != nil {
		t.Errorf("job id of long names: %v", err)
	}
	if err := events.ValidLeaseKey(watchLeaseKey("host-1", "app_db")); err != nil {
		t.Errorf("lease key: %v", err)
	}
}
