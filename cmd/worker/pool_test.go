package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestPoolAgreesOnRepos is issue 11's defect 5: workers that join one NATS, each with a
// repo "local" of its own, used to split the pool's backups between unrelated
// repositories, so that `brr snapshots` showed some of them and `restore latest` gave
// whatever the answering worker had. Now the first worker registers its local for the
// pool; a second one whose local is another repository (it made it when it ran alone) and
// a third that joins with no config (it makes none) refuse local, loudly: a log line with
// the fix, /readyz, their heartbeats (`brr workers`) and a critical health check. Every
// backup lands in the first worker's repository and every restore reads it.
func TestPoolAgreesOnRepos(t *testing.T) {
	const cfg = "health: {interval: 1s, canary: false}\n"
	// The second worker ran alone first, with its own embedded server: it has a local.
	alone := bins.StartWorker(t, testkit.WorkerOptions{Config: cfg})
	if code := alone.Stop(30 * time.Second); code != 0 {
		t.Fatalf("lone worker exited %d", code)
	}
	w1 := bins.StartWorker(t, testkit.WorkerOptions{Config: cfg})
	w2 := bins.StartWorker(t, testkit.WorkerOptions{NATS: w1.NATSURL, DataDir: alone.DataDir, Config: cfg})
	w3 := bins.StartWorker(t, testkit.WorkerOptions{NATS: w1.NATSURL, Config: cfg})
	url := w1.NATSURL
	nc, c := testkit.Connect(t, url)
	ctx := testkit.Context(t, 3*time.Minute)

	// Six sources backed up at once, then the first one changed and backed up again: the
	// newest snapshot.
	srcs := make([]string, 6)
	for i := range srcs {
		srcs[i] = t.TempDir()
		testkit.WriteFile(t, filepath.Join(srcs[i], "v.txt"), []byte(fmt.Sprintf("source %d, version 1", i)), 0o644)
	}
	var ids []string
	var wg sync.WaitGroup
	results := make([]*brr.Event, len(srcs))
	for i, src := range srcs {
		pub, err := c.Publish(ctx, brr.BackupJob{Path: src})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, pub.ID)
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], _ = c.Wait(ctx, pub.ID, nil)
		}()
	}
	wg.Wait()
	testkit.WriteFile(t, filepath.Join(srcs[0], "v.txt"), []byte("source 0, version 2, the newest"), 0o644)
	pub, err := c.Publish(ctx, brr.BackupJob{Path: srcs[0]})
	if err != nil {
		t.Fatal(err)
	}
	ids = append(ids, pub.ID)
	last, err := c.Wait(ctx, pub.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	results = append(results, last)
	for i, e := range results {
		if e == nil || e.Status != brr.StatusSucceeded {
			t.Fatalf("backup %s: %+v", ids[i], e)
		}
		if e.Worker != w1.ID {
			t.Errorf("backup %s ran on worker %s, not on %s, the one that serves the pool's local", ids[i], e.Worker, w1.ID)
		}
	}

	// `brr snapshots` lists them all, whichever worker is asked.
	for range 3 {
		stdout, stderr, code := bins.RunCLI(t, nil, "--nats", url, "snapshots", "--json")
		if code != 0 {
			t.Fatalf("brr snapshots: exit %d: %s", code, stderr)
		}
		got := map[string]bool{}
		for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
			var s brr.Snapshot
			if err := json.Unmarshal([]byte(line), &s); err == nil {
				got[s.JobID] = true
			}
		}
		for _, id := range ids {
			if !got[id] {
				t.Fatalf("brr snapshots lacks the snapshot of backup %s (lists %d of %d):\n%s", id, len(got), len(ids), stdout)
			}
		}
	}
	// `brr restore latest` restores the newest, whichever worker takes it.
	for i := range 3 {
		target := filepath.Join(t.TempDir(), "out")
		if _, stderr, code := bins.RunCLI(t, nil, "--nats", url, "restore", "latest", target, "--wait"); code != 0 {
			t.Fatalf("brr restore latest (%d): exit %d: %s", i, code, stderr)
		}
		if got, err := os.ReadFile(filepath.Join(target, "v.txt")); err != nil || string(got) != "source 0, version 2, the newest" {
			t.Fatalf("restore latest (%d) gave %q, %v; want the newest snapshot", i, got, err)
		}
	}

	// What the pool registered: the first worker's repository.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "BRR_REPOS")
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, "default.local")
	if err != nil {
		t.Fatal(err)
	}
	var reg brr.RepoRegistration
	if err := json.Unmarshal(entry.Value(), &reg); err != nil {
		t.Fatal(err)
	}
	w1Repo := openLocal(t, w1.DataDir)
	if reg.ID != w1Repo.ID() || reg.Location != "file://"+filepath.Join(w1.DataDir, "repo") || reg.Worker != w1.ID || reg.Time.IsZero() {
		t.Fatalf("registration of default.local = %+v, want worker %s's repository %s", reg, w1.ID, w1Repo.ID())
	}
	if sns, err := w1Repo.Snapshots(ctx); err != nil || len(sns) != len(ids) {
		t.Fatalf("the pool's repository has %d snapshots (%v), want %d", len(sns), err, len(ids))
	}
	w2Repo := openLocal(t, w2.DataDir)
	if sns, err := w2Repo.Snapshots(ctx); err != nil || len(sns) != 0 {
		t.Fatalf("the second worker's own local has %d snapshots (%v), want none", len(sns), err)
	}
	// The third worker made no repository and no key of its own.
	for _, name := range []string{"repo/config", "local.key"} {
		if _, err := os.Stat(filepath.Join(w3.DataDir, name)); !os.IsNotExist(err) {
			t.Errorf("the worker that joined with no config made %s in its data dir (%v)", name, err)
		}
	}

	// Loud: the log line has both ids, both locations, who registered it and the fix.
	wantInMessage := []string{reg.ID, reg.Location, w1.ID, "`nats kv del BRR_REPOS default.local`", "repos.local", "another name"}
	for _, w := range []*testkit.Worker{w2, w3} {
		line := logLine(t, w, "repo local refused")
		want := append(wantInMessage, `"level":"error"`, `"registered_id":"`+reg.ID+`"`)
		if w == w2 {
			want = append(want, w2Repo.ID(), "file://"+filepath.Join(w2.DataDir, "repo"))
		} else {
			want = append(want, "did not create one")
		}
		for _, s := range want {
			if !strings.Contains(line, s) {
				t.Errorf("worker %s's log line lacks %q:\n%s", w.ID, s, line)
			}
		}
	}
	if strings.Contains(w1.Logs(), "refused") {
		t.Errorf("the first worker refuses something:\n%s", w1.Logs())
	}
	// /readyz: still ready (they serve the pool's other jobs), with the refusal.
	for _, w := range []*testkit.Worker{w2, w3} {
		code, body, err := get("http://" + w.HTTP + "/readyz")
		var ready struct {
			Status  string            `json:"status"`
			Refused []brr.RefusedRepo `json:"refused_repos"`
		}
		if err != nil || code != http.StatusOK || json.Unmarshal([]byte(body), &ready) != nil || ready.Status != "ready" ||
			len(ready.Refused) != 1 || ready.Refused[0].Repo != "local" || ready.Refused[0].Registered.ID != reg.ID ||
			!strings.Contains(ready.Refused[0].Message, "nats kv del BRR_REPOS default.local") {
			t.Errorf("worker %s /readyz = %d %s %v; want 200 naming the refused local", w.ID, code, body, err)
		}
	}
	if _, body, _ := get("http://" + w1.HTTP + "/readyz"); strings.Contains(body, "refused") {
		t.Errorf("first worker's /readyz = %s", body)
	}
	// `brr workers`: a REFUSED column, the refusals below, and in the heartbeats.
	stdout, stderr, code := bins.RunCLI(t, nil, "--nats", url, "workers")
	if code != 0 || !strings.Contains(stdout, "REFUSED") || strings.Count(stderr, "refuses repo local: repo local refused") != 2 ||
		!strings.Contains(stderr, "worker "+w2.ID) || !strings.Contains(stderr, "worker "+w3.ID) {
		t.Errorf("brr workers: exit %d\n%s\n%s", code, stdout, stderr)
	}
	workers, err := c.Workers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range workers {
		if refuses := len(w.RefusedRepos) > 0; refuses != (w.ID != w1.ID) {
			t.Errorf("worker %s's heartbeat: refused repos %+v", w.ID, w.RefusedRepos)
		}
	}
	// The pool's health: critical for each worker that refuses, ok for the first.
	testkit.Eventually(t, 30*time.Second, "repo_registry health events for the three workers", func() bool {
		evs, err := c.Events(ctx, "brr.events.health.repo_registry", time.Time{}, 0)
		if err != nil {
			return false
		}
		status := map[string]brr.HealthStatus{}
		for _, e := range evs {
			if e.Check != nil {
				status[e.Check.Subject] = e.Check.Status
			}
		}
		return status[w1.ID] == brr.HealthOK && status[w2.ID] == brr.HealthCritical && status[w3.ID] == brr.HealthCritical
	})
}

// openLocal opens the repo local under a worker's data dir with its key.
func openLocal(t *testing.T, dataDir string) *repo.Repository {
	t.Helper()
	key, err := os.ReadFile(filepath.Join(dataDir, "local.key"))
	if err != nil {
		t.Fatal(err)
	}
	be, err := file.Open(filepath.Join(dataDir, "repo"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(context.Background(), be, []byte(strings.TrimSpace(string(key))), repo.Options{})
	if err != nil {
		t.Fatalf("open the local repository of %s: %v", dataDir, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// logLine is the first line of w's log that contains s.
func logLine(t *testing.T, w *testkit.Worker, s string) string {
	t.Helper()
	for _, line := range strings.Split(w.Logs(), "\n") {
		if strings.Contains(line, s) {
			return line
		}
	}
	t.Fatalf("worker %s logged no line with %q:\n%s", w.ID, s, w.Logs())
	return ""
}
