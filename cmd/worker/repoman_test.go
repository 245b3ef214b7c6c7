package main

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
	"github.com/brr-dev/brr/internal/web"
)

// TestReposManagedAtRuntime is issue 12's item 8: two workers of one pool, one of which
// has the password of repo vault in its environment. A repo added to the pool's
// registry is served by the worker that can open it within seconds and refused, loudly,
// by the one that cannot (log, /readyz, heartbeat), which leaves it every job on it; a
// replication policy set at runtime replicates the next backup; a repo removed is no
// longer served, and a job on it fails saying so. No worker restarts.
func TestReposManagedAtRuntime(t *testing.T) {
	const cfg = "health: {interval: 1s, canary: false}\n"
	const password = "correct horse battery staple"
	w1 := bins.StartWorker(t, testkit.WorkerOptions{Config: cfg, Env: []string{"VAULT_PW=" + password}})
	w2 := bins.StartWorker(t, testkit.WorkerOptions{NATS: w1.NATSURL, Config: cfg})
	ctx := testkit.Context(t, 3*time.Minute)
	c, _, registry := connectRegistry(t, ctx, w1.NATSURL)
	dir := t.TempDir()
	add := func(name string) {
		t.Helper()
		err := registry.Add(ctx, brr.RepoRegistration{Pool: brr.DefaultPool, Repo: name, Worker: "test", Time: time.Now().UTC(),
			Spec: &brr.RepoSpec{URL: "file://" + filepath.Join(dir, name), PasswordEnv: "VAULT_PW"}})
		if err != nil {
			t.Fatal(err)
		}
	}
	// served waits until w serves (or, with serves false, stops serving) repo name, by
	// its heartbeat.
	served := func(w *testkit.Worker, name string, serves bool) brr.WorkerInfo {
		t.Helper()
		var info brr.WorkerInfo
		testkit.Eventually(t, 20*time.Second, "worker "+w.ID+" serving "+name+" to be "+map[bool]string{true: "on", false: "off"}[serves], func() bool {
			workers, err := c.Workers(ctx)
			if err != nil {
				return false
			}
			for _, wi := range workers {
				if wi.ID == w.ID && slices.Contains(wi.Repos, name) == serves {
					info = wi
					return true
				}
			}
			return false
		})
		return info
	}

	added := time.Now()
	add("vault")
	served(w1, "vault", true)
	t.Logf("worker %s served the added repo %s after it was added", w1.ID, time.Since(added).Round(100*time.Millisecond))
	var refusal brr.RefusedRepo
	testkit.Eventually(t, 20*time.Second, "worker 2 to refuse vault in its heartbeat", func() bool {
		for _, ref := range served(w2, "vault", false).RefusedRepos {
			if ref.Repo == "vault" {
				refusal = ref
				return true
			}
		}
		return false
	})
	if refusal.Reason != brr.RefusedUnavailable || !strings.Contains(refusal.Message, "VAULT_PW") || !strings.Contains(refusal.Message, "cannot open it") {
		t.Errorf("worker 2's refusal of vault = %+v; want it unavailable, naming the variable it lacks", refusal)
	}
	if line := logLine(t, w2, "cannot open it"); !strings.Contains(line, "VAULT_PW") || !strings.Contains(line, `"repo":"vault"`) {
		t.Errorf("worker 2's log line: %s", line)
	}
	code, body, err := get("http://" + w2.HTTP + "/readyz")
	var ready struct {
		Status  string            `json:"status"`
		Refused []brr.RefusedRepo `json:"refused_repos"`
	}
	// (It refuses local too: it joined with a local of its own; see TestPoolAgreesOnRepos.)
	if err != nil || code != http.StatusOK || json.Unmarshal([]byte(body), &ready) != nil || ready.Status != "ready" ||
		!slices.ContainsFunc(ready.Refused, func(r brr.RefusedRepo) bool { return r.Repo == "vault" && r.Reason == brr.RefusedUnavailable }) {
		t.Errorf("worker 2 /readyz = %d %s %v; want ready, naming vault", code, body, err)
	}
	stdout, stderr, exit := bins.RunCLI(t, nil, "--nats", w1.NATSURL, "workers")
	if exit != 0 || !strings.Contains(stderr, "vault") {
		t.Errorf("brr workers does not show the refusal of vault: exit %d\n%s\n%s", exit, stdout, stderr)
	}

	// Every backup into vault runs on the worker that has its password.
	src := t.TempDir()
	for i := range 4 {
		testkit.WriteFile(t, filepath.Join(src, "v.txt"), []byte(strings.Repeat("version ", i+1)), 0o644)
		pub, err := c.Publish(ctx, brr.BackupJob{Path: src, Repo: "vault"})
		if err != nil {
			t.Fatal(err)
		}
		e, err := c.Wait(ctx, pub.ID, nil)
		if err != nil || e.Status != brr.StatusSucceeded || e.Worker != w1.ID {
			t.Fatalf("backup %d into vault: %+v, %v; want it succeeded on worker %s", i, e, err, w1.ID)
		}
	}
	reg, err := registry.Lookup(ctx, brr.DefaultPool, "vault")
	if err != nil || reg == nil || reg.ID == "" || reg.Worker != w1.ID {
		t.Fatalf("vault's registration after its creation = %+v, %v; want the id its creator filled in", reg, err)
	}
	if r := openWithPassword(t, filepath.Join(dir, "vault"), password); r.ID() != reg.ID {
		t.Fatalf("the repository at vault's url is %s, the registry says %s", r.ID(), reg.ID)
	}

	// A policy set at runtime replicates the next backup.
	add("vault2")
	served(w1, "vault2", true)
	if err := registry.SetPolicy(ctx, brr.DefaultPool, "vault", []string{"vault2"}); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "worker 1 to show the policy set in the registry", func() bool {
		_, body, err := get("http://" + w1.HTTP + "/api/v1/info")
		var info web.Info
		return err == nil && json.Unmarshal([]byte(body), &info) == nil && slices.Equal(info.Replicate["vault"], []string{"vault2"})
	})
	testkit.WriteFile(t, filepath.Join(src, "v.txt"), []byte("after the policy"), 0o644)
	pub, err := c.Publish(ctx, brr.BackupJob{Path: src, Repo: "vault"})
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Wait(ctx, pub.ID, nil)
	if err != nil || e.Status != brr.StatusSucceeded {
		t.Fatalf("backup after the policy: %+v, %v", e, err)
	}
	snap := e.Result.Backup.Snapshot
	testkit.Eventually(t, 30*time.Second, "the policy to replicate snapshot "+snap+" to vault2", func() bool {
		snaps, err := c.Snapshots(ctx, "vault2", "")
		return err == nil && slices.ContainsFunc(snaps, func(s brr.Snapshot) bool { return s.ID == snap })
	})

	// Removed: no longer served, out of vault's policy, and a job on it fails saying so.
	if err := registry.Remove(ctx, brr.DefaultPool, "vault2"); err != nil {
		t.Fatal(err)
	}
	served(w1, "vault2", false)
	pub, err = c.Publish(ctx, brr.BackupJob{Path: src, Repo: "vault2"})
	if err != nil {
		t.Fatal(err)
	}
	e, err = c.Wait(ctx, pub.ID, nil)
	if e == nil || e.Status != brr.StatusFailed || !strings.Contains(e.Error, `repo "vault2" is not configured`) {
		t.Fatalf("backup into a removed repo: %+v, %v; want it failed, saying vault2 is not configured", e, err)
	}
	if reg, _ := registry.Lookup(ctx, brr.DefaultPool, "vault"); reg == nil || reg.ReplicateTo == nil || len(*reg.ReplicateTo) != 0 {
		t.Errorf("vault's policy after vault2 was removed: %+v", reg)
	}
	if _, err := os.Stat(filepath.Join(dir, "vault2", "config")); err != nil {
		t.Errorf("removing vault2 from the registry touched its data: %v", err)
	}
}

// openWithPassword opens the file repository at dir.
func openWithPassword(t *testing.T, dir, password string) *repo.Repository {
	t.Helper()
	be, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(context.Background(), be, []byte(password), repo.Options{})
	if err != nil {
		t.Fatalf("open the repository at %s: %v", dir, err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// TestRegistrationChangesUnderAServedRepo: the pool's registration of a repo a worker
// serves is replaced by one of another repository (removed and registered again by
// another worker, seen by this one as one change). The worker stops serving its own and
// refuses the name, as at start; once that registration is removed, it registers its own
// again and serves it, with no restart.
func TestRegistrationChangesUnderAServedRepo(t *testing.T) {
	const cfg = "health: {interval: 1s, canary: false}\n"
	w := bins.StartWorker(t, testkit.WorkerOptions{Config: cfg})
	ctx := testkit.Context(t, 2*time.Minute)
	c, js, registry := connectRegistry(t, ctx, w.NATSURL)
	own, err := registry.Lookup(ctx, brr.DefaultPool, "local")
	if err != nil || own == nil {
		t.Fatalf("the worker's local is not registered: %+v, %v", own, err)
	}
	heartbeat := func(what string, ok func(brr.WorkerInfo) bool) {
		t.Helper()
		testkit.Eventually(t, 20*time.Second, what, func() bool {
			workers, err := c.Workers(ctx)
			return err == nil && len(workers) == 1 && ok(workers[0])
		})
	}

	other := *own
	other.ID, other.Location, other.Worker = "0123456789abcdef0123456789abcdef", "file:///elsewhere/repo", "another"
	data, err := json.Marshal(other)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, "BRR_REPOS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "default.local", data); err != nil {
		t.Fatal(err)
	}
	heartbeat("the worker to refuse local as another repository", func(wi brr.WorkerInfo) bool {
		return !slices.Contains(wi.Repos, "local") && len(wi.RefusedRepos) == 1 && wi.RefusedRepos[0].Reason == brr.RefusedConflict &&
			wi.RefusedRepos[0].Registered.ID == other.ID
	})

	if err := registry.Remove(ctx, brr.DefaultPool, "local"); err != nil {
		t.Fatal(err)
	}
	heartbeat("the worker to serve its local again", func(wi brr.WorkerInfo) bool {
		return slices.Contains(wi.Repos, "local") && len(wi.RefusedRepos) == 0
	})
	if reg, err := registry.Lookup(ctx, brr.DefaultPool, "local"); err != nil || reg == nil || reg.ID != own.ID {
		t.Fatalf("local's registration after the other was removed = %+v, %v; want the worker's own (%s)", reg, err, own.ID)
	}
	pub, err := c.Publish(ctx, brr.BackupJob{Path: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if e, err := c.Wait(ctx, pub.ID, nil); err != nil || e.Status != brr.StatusSucceeded {
		t.Fatalf("backup into local once served again: %+v, %v", e, err)
	}
}

// connectRegistry connects a client to the NATS at url and opens the pools' repo
// registry there.
func connectRegistry(t *testing.T, ctx context.Context, url string) (*brr.Client, jetstream.JetStream, *events.Registry) {
	t.Helper()
	nc, c := testkit.Connect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	registry, err := events.OpenRegistry(ctx, js, events.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return c, js, registry
}
