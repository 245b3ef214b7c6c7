package health_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/health"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
)

// byKey indexes results by check and subject.
func byKey(res []brr.HealthCheck) map[string]brr.HealthCheck {
	m := map[string]brr.HealthCheck{}
	for _, r := range res {
		m[r.Check+" "+r.Subject] = r
	}
	return m
}

func TestSnapshotCheck(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	local, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	offsite, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	engine := &jobs.Engine{Repos: map[string]*repo.Repository{"local": local, "offsite": offsite}, Host: "h", Worker: "w"}
	backup, err := engine.Backup(ctx, "job-1", brr.BackupJob{Path: src, Repo: "local"}, nil)
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	sns, err := engine.Snapshots(ctx, "local", "")
	if err != nil || len(sns) != 1 {
		t.Fatalf("snapshots: %v %v", sns, err)
	}
	taken := sns[0].Time
	check := &health.SnapshotCheck{
		Lister:    engine,
		Repos:     func() []string { return []string{"local", "offsite"} },
		RPO:       map[string]time.Duration{src: time.Hour, "/never/backed/up": time.Hour},
		Replicate: func() map[string][]string { return map[string][]string{"local": {"offsite"}} },
		LagWarn:   15 * time.Minute, LagCritical: time.Hour,
	}
	run := func(now time.Time) (map[string]brr.HealthCheck, health.Inventory) {
		t.Helper()
		out, err := check.Run(ctx, health.Tick{Now: now})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		var inv health.Inventory
		if err := json.Unmarshal(out.Memo, &inv); err != nil {
			t.Fatalf("inventory memo: %v", err)
		}
		return byKey(out.Results), inv
	}
	pair := "replication_lag local->offsite"
	for _, tt := range []struct {
		after           time.Duration
		rpo, never, lag brr.HealthStatus
	}{
		{time.Minute, brr.HealthOK, brr.HealthCritical, brr.HealthOK},                  // replication under way
		{30 * time.Minute, brr.HealthOK, brr.HealthCritical, brr.HealthWarn},           // lag past lag_warn
		{2 * time.Hour, brr.HealthCritical, brr.HealthCritical, brr.HealthCritical},    // RPO missed, lag past lag_critical
		{59 * time.Minute, brr.HealthOK, brr.HealthCritical, brr.HealthWarn},           // just within the RPO
		{61 * time.Minute, brr.HealthCritical, brr.HealthCritical, brr.HealthCritical}, // just past it
	} {
		res, inv := run(taken.Add(tt.after))
		if got := res["rpo "+src]; got.Status != tt.rpo || got.Value != tt.after.Seconds() {
			t.Errorf("after %s: rpo of %s = %s (value %g, %s), want %s", tt.after, src, got.Status, got.Value, got.Message, tt.rpo)
		}
		if got := res["rpo /never/backed/up"]; got.Status != tt.never || got.Value != -1 {
			t.Errorf("after %s: rpo of a source never backed up = %+v, want %s", tt.after, got, tt.never)
		}
		if got := res[pair]; got.Status != tt.lag || got.Value != tt.after.Seconds() {
			t.Errorf("after %s: %s = %s (value %g, %s), want %s", tt.after, pair, got.Status, got.Value, got.Message, tt.lag)
		}
		if len(inv.Sources) != 1 || inv.Sources[0].Count != 1 || inv.Sources[0].Source != src || !inv.Sources[0].Newest.Equal(taken) {
			t.Errorf("inventory sources = %+v", inv.Sources)
		}
		if len(inv.Lags) != 1 || inv.Lags[0].Behind != 1 {
			t.Errorf("inventory lags = %+v", inv.Lags)
		}
	}

	// Once replicated, the target is not behind, however late it is.
	if _, err := engine.Replicate(ctx, "job-2", brr.ReplicateJob{Snapshot: backup.Snapshot, From: "local", To: "offsite"}, nil); err != nil {
		t.Fatalf("replicate: %v", err)
	}
	res, inv := run(taken.Add(3 * time.Hour))
	if got := res[pair]; got.Status != brr.HealthOK || got.Value != 0 {
		t.Fatalf("after replication: %+v", got)
	}
	if len(inv.Sources) != 2 || inv.Lags[0].Behind != 0 {
		t.Fatalf("inventory after replication = %+v", inv)
	}
}

// TestWatchedSourceRPO: a watched source's rpo result follows its watch, as the
// watching worker's heartbeat tells it. Idle (no change unprotected) it is ok however
// long nothing changed, within its RPO; a change in no snapshot for longer than the
// watch's expectation is critical, though the newest snapshot is young; and the RPO
// still bounds the newest snapshot's age, for a watch that stopped.
func TestWatchedSourceRPO(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("hello"), 0o600)
	local, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	engine := &jobs.Engine{Repos: map[string]*repo.Repository{"local": local}, Host: "h", Worker: "w"}
	if _, err := engine.Backup(ctx, "watch-default-app-1", brr.BackupJob{Path: src}, nil); err != nil {
		t.Fatalf("backup: %v", err)
	}
	sns, err := engine.Snapshots(ctx, "local", "")
	if err != nil || len(sns) != 1 {
		t.Fatalf("snapshots: %v %v", sns, err)
	}
	taken := sns[0].Time
	// The watch: {delay: 2s, max_delay: 10s}: a change may wait 10s + 1m, the newest
	// snapshot be 10s + 1m (rescan) + 1m old.
	var since *time.Time
	watching := true
	check := &health.SnapshotCheck{
		Lister:  engine,
		Repos:   func() []string { return []string{"local"} },
		RPO:     map[string]time.Duration{src: 2*time.Minute + 10*time.Second},
		Watched: map[string]time.Duration{src: time.Minute + 10*time.Second},
		Workers: func() []brr.WorkerInfo {
			info := brr.SourceInfo{Name: "app", Kind: brr.SourcePath, Path: src, Watch: &brr.SourceWatch{DelayMS: 2000, MaxDelayMS: 10000}}
			if watching {
				info.Watching = &brr.SourceWatching{UnprotectedSince: since}
			}
			return []brr.WorkerInfo{
				{ID: "w2", Sources: []brr.SourceInfo{{Name: "app", Kind: brr.SourcePath, Path: src}}},
				{ID: "w1", Sources: []brr.SourceInfo{info}},
			}
		},
	}
	rpo := func(now time.Time) brr.HealthCheck {
		t.Helper()
		out, err := check.Run(ctx, health.Tick{Now: now})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		return byKey(out.Results)["rpo "+src]
	}
	at := func(d time.Duration) *time.Time { v := taken.Add(d); return &v }
	for _, tt := range []struct {
		name     string
		now      time.Duration // after the snapshot
		since    *time.Time
		watching bool
		want     brr.HealthStatus
		says     string
	}{
		{"idle", 2 * time.Minute, nil, true, brr.HealthOK, "every change the watch on worker w1 saw is in a snapshot"},
		{"change waiting", 2 * time.Minute, at(90 * time.Second), true, brr.HealthOK, "waits for its backup (expected within 1m10s)"},
		{"change left unprotected", 2 * time.Minute, at(30 * time.Second), true, brr.HealthCritical,
			"that the watch on worker w1 saw 1m30s ago is in no snapshot yet, longer than the 1m10s a watched change may wait"},
		{"watch stopped", 3 * time.Minute, nil, true, brr.HealthCritical, "older than its RPO of 2m10s"},
		{"no watcher, young snapshot", time.Minute, nil, false, brr.HealthOK, "no worker says it watches it now"},
		{"no watcher, old snapshot", 3 * time.Minute, nil, false, brr.HealthCritical, "older than its RPO"},
	} {
		since, watching = tt.since, tt.watching
		got := rpo(taken.Add(tt.now))
		if got.Status != tt.want || !strings.Contains(got.Message, tt.says) {
			t.Errorf("%s: rpo = %s (%s), want %s saying %q", tt.name, got.Status, got.Message, tt.want, tt.says)
		}
	}
}

func TestRepositoryCheck(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	check := &health.RepositoryCheck{JS: b.js, Repos: func() []string { return []string{"local", "offsite"} }, DefaultRepo: "local", MaxAge: 24 * time.Hour}
	t0 := time.Now().UTC().Truncate(time.Second)
	verified := func(id, repoName string, status brr.Status, damaged int, at time.Time) {
		t.Helper()
		e := &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventJob, Kind: brr.KindVerify, Status: status, Time: at, JobID: id, Repo: repoName}
		if status != brr.StatusSucceeded {
			e.Error = "pack 1234 is missing"
		}
		if damaged > 0 {
			e.Result = &brr.Result{Verify: &brr.VerifyResult{Repo: "offsite", Damaged: make([]brr.Damage, damaged)}}
		}
		data, _ := json.Marshal(e)
		if _, err := b.js.Publish(ctx, brr.Subjects{}.Event(e), data); err != nil {
			t.Fatal(err)
		}
	}
	var memo json.RawMessage
	run := func(now time.Time) map[string]brr.HealthCheck {
		t.Helper()
		out, err := check.Run(ctx, health.Tick{Now: now, Memo: memo})
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
		memo = out.Memo
		return byKey(out.Results)
	}

	res := run(t0)
	if res["repository local"].Status != brr.HealthWarn || res["repository offsite"].Status != brr.HealthWarn {
		t.Fatalf("with no verify on record: %+v, want both warn", res)
	}
	// A verify that named no repo went to the default; a failed one of offsite names it
	// in its result only.
	verified("v1", "", brr.StatusSucceeded, 0, t0)
	verified("v2", "", brr.StatusFailed, 2, t0)
	res = run(t0.Add(time.Hour))
	if got := res["repository local"]; got.Status != brr.HealthOK || got.Value != 3600 {
		t.Errorf("local after a verify = %+v, want ok, an hour old", got)
	}
	if got := res["repository offsite"]; got.Status != brr.HealthCritical || !strings.Contains(got.Message, "2 damaged") || !strings.Contains(got.Message, "v2") {
		t.Errorf("offsite after a failed verify = %+v, want critical naming the damage and the job", got)
	}
	// A verify that passed later clears it; the memo carries local's over.
	verified("v3", "offsite", brr.StatusSucceeded, 0, t0.Add(2*time.Hour))
	res = run(t0.Add(3 * time.Hour))
	if res["repository offsite"].Status != brr.HealthOK || res["repository local"].Status != brr.HealthOK {
		t.Errorf("after the second verify: %+v, want both ok", res)
	}
	// A cancelled verify says nothing of the repo: the last one that ran stands.
	verified("v4", "offsite", brr.StatusCancelled, 0, t0.Add(150*time.Minute))
	res = run(t0.Add(3 * time.Hour))
	if got := res["repository offsite"]; got.Status != brr.HealthOK || !strings.Contains(got.Message, "v3") {
		t.Errorf("offsite after a cancelled verify = %+v, want ok from v3", got)
	}
	// Too long ago.
	res = run(t0.Add(25 * time.Hour))
	if got := res["repository local"]; got.Status != brr.HealthWarn {
		t.Errorf("local a day later = %+v, want warn", got)
	}
	if got := res["repository offsite"]; got.Status != brr.HealthOK {
		t.Errorf("offsite 23h after its verify = %+v, want ok", got)
	}
}

func TestDLQAndDiskChecks(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	dlq := &health.DLQCheck{JS: b.js}
	out, err := dlq.Run(ctx, health.Tick{})
	if err != nil || len(out.Results) != 1 || out.Results[0].Status != brr.HealthOK {
		t.Fatalf("empty DLQ: %+v %v", out.Results, err)
	}
	if _, err := b.js.Publish(ctx, brr.Subjects{}.DLQ("default", brr.KindBackup), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	out, err = dlq.Run(ctx, health.Tick{})
	if err != nil || out.Results[0].Status != brr.HealthWarn || out.Results[0].Value != 1 {
		t.Fatalf("one dead letter: %+v %v", out.Results, err)
	}
	// A removed dead letter (brr dlq rm) no longer counts, though the stream's sequence
	// has moved on.
	ack, err := b.js.Publish(ctx, brr.Subjects{}.DLQ("default", brr.KindPing), []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	st, _ := b.js.Stream(ctx, brr.Subjects{}.DLQStream())
	if err := st.DeleteMsg(ctx, ack.Sequence-1); err != nil {
		t.Fatal(err)
	}
	out, err = dlq.Run(ctx, health.Tick{})
	if err != nil || out.Results[0].Value != 1 || !strings.Contains(out.Results[0].Message, "1 job(s)") {
		t.Fatalf("after a removal: %+v %v, want a count of 1", out.Results, err)
	}
	if err := st.Purge(ctx); err != nil {
		t.Fatal(err)
	}
	out, err = dlq.Run(ctx, health.Tick{})
	if err != nil || out.Results[0].Status != brr.HealthOK || out.Results[0].Value != 0 {
		t.Fatalf("after a purge: %+v %v, want ok", out.Results, err)
	}

	const gib = 1 << 30
	disk := &health.DiskCheck{Workers: func() []brr.WorkerInfo {
		return []brr.WorkerInfo{
			{ID: "roomy", DiskFreeBytes: 50 * gib, DiskTotalBytes: 100 * gib},
			{ID: "tight", DiskFreeBytes: 8 * gib, DiskTotalBytes: 100 * gib},
			{ID: "full", DiskFreeBytes: 1 * gib, DiskTotalBytes: 100 * gib},
			{ID: "gone", DiskFreeBytes: 0, DiskTotalBytes: 100 * gib, Missing: true},
			{ID: "unmeasured"},
		}
	}}
	out, _ = disk.Run(ctx, health.Tick{})
	res := byKey(out.Results)
	if len(res) != 3 || res["disk roomy"].Status != brr.HealthOK || res["disk tight"].Status != brr.HealthWarn ||
		res["disk full"].Status != brr.HealthCritical || res["disk full"].Value != 1 {
		t.Fatalf("disk results = %+v", out.Results)
	}
}

func TestRepoRegistryCheck(t *testing.T) {
	const why = "repo local refused: this worker's repo local is another repository; to fix: ..."
	check := &health.RepoRegistryCheck{Workers: func() []brr.WorkerInfo {
		return []brr.WorkerInfo{
			{ID: "agrees", Host: "h1"},
			{ID: "splits", Host: "h2", RefusedRepos: []brr.RefusedRepo{{Repo: "local", Pool: "default", Message: why}}},
			{ID: "gone", RefusedRepos: []brr.RefusedRepo{{Repo: "local"}}, Missing: true},
			{ID: "lacks", Host: "h3", RefusedRepos: []brr.RefusedRepo{{Repo: "offsite", Reason: brr.RefusedUnavailable, Message: "lacks OFFSITE_PW"}}},
		}
	}}
	if got, want := check.Name(), brr.CheckRepoRegistry; got != want {
		t.Fatalf("Name = %q, want %q", got, want)
	}
	out, err := check.Run(context.Background(), health.Tick{})
	res := byKey(out.Results)
	if err != nil || len(res) != 3 || res["repo_registry agrees"].Status != brr.HealthOK {
		t.Fatalf("results = %+v, %v", out.Results, err)
	}
	split := res["repo_registry splits"]
	if split.Status != brr.HealthCritical || split.Value != 1 || !strings.Contains(split.Message, "worker splits (host h2) refuses 1 repo(s)") || !strings.Contains(split.Message, why) {
		t.Fatalf("worker that refuses a repo: %+v, want critical with its message", split)
	}
	// One that only cannot open a repo leaves its jobs to the others: a warning.
	if lacks := res["repo_registry lacks"]; lacks.Status != brr.HealthWarn || !strings.Contains(lacks.Message, "lacks OFFSITE_PW") {
		t.Fatalf("worker that cannot open a repo: %+v, want warn with its message", lacks)
	}
}

func TestCanaryCheck(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	canary := &health.CanaryCheck{Client: b.client, Pools: []string{"default"}, Warn: 5 * time.Second}

	// No worker: the ping does not end within the turn.
	short, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	out, err := canary.Run(short, health.Tick{Time: epoch})
	cancel()
	if err != nil || len(out.Results) != 1 || out.Results[0].Status != brr.HealthCritical || !strings.Contains(out.Results[0].Message, "did not end") {
		t.Fatalf("canary with no worker: %+v %v", out.Results, err)
	}

	// A real consume loop takes it (and the one left from the first turn).
	runPipeline(t, b)
	out, err = canary.Run(ctx, health.Tick{Time: epoch.Add(interval)})
	if err != nil || out.Results[0].Status != brr.HealthOK || out.Results[0].Value <= 0 {
		t.Fatalf("canary with a worker: %+v %v", out.Results, err)
	}
}

// runPipeline runs a worker's consume loop (state, outbox, job engine) until the test ends.
func runPipeline(t *testing.T, b *bundle) *events.Consumer {
	t.Helper()
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ob := events.NewOutbox(b.js, db, zerolog.Nop())
	cfg := events.Config{Worker: "w1", Host: "h1"}
	c := events.NewConsumer(b.js, db, &jobs.Engine{Worker: "w1"}, ob, cfg, zerolog.Nop())
	done := make(chan struct{}, 2)
	go func() { _ = ob.Run(ctx); done <- struct{}{} }()
	go func() { _ = c.Run(ctx); done <- struct{}{} }()
	t.Cleanup(func() {
		cancel()
		<-done
		<-done
		_ = db.Close()
	})
	return c
}
