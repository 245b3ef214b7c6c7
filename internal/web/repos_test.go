package web

import (
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/health"
	"github.com/brr-dev/brr/internal/testkit"
)

// beat publishes a heartbeat of worker id in the default pool that serves repos and
// refuses refused. Its interval is a minute, so that it stays live through the test.
func (f *fixture) beat(id string, repos []string, refused ...brr.RefusedRepo) {
	f.t.Helper()
	hb := health.NewHeartbeat(f.nc, f.js, health.Config{Worker: id, Host: "host-" + id, Interval: time.Minute}, health.Worker{
		Version: "v-test", Pools: []string{brr.DefaultPool}, Concurrency: 1, Started: time.Now(),
		Repos:   func() []string { return repos },
		Refused: func() []brr.RefusedRepo { return refused },
	}, zerolog.Nop())
	if err := hb.Publish(testkit.Context(f.t, 10*time.Second)); err != nil {
		f.t.Fatalf("heartbeat of %s: %v", id, err)
	}
}

// addOffsite registers the repo "offsite" in the default pool as `brr repo add` does:
// a spec and no repository id yet. "local" replicates to it.
func (f *fixture) addOffsite() brr.RepoSpec {
	f.t.Helper()
	ctx := testkit.Context(f.t, 10*time.Second)
	spec := brr.RepoSpec{URL: "s3://s3.example.com/backups/brr", PasswordEnv: "BRR_OFFSITE_PASSWORD", AppendOnly: true, Region: "eu-west-1"}
	err := f.registry.Add(ctx, brr.RepoRegistration{Pool: brr.DefaultPool, Repo: "offsite", Worker: "alice", Host: "laptop", Time: time.Now().UTC(), Spec: &spec})
	if err != nil {
		f.t.Fatalf("add repo offsite: %v", err)
	}
	if err := f.registry.SetPolicy(ctx, brr.DefaultPool, "local", []string{"offsite"}); err != nil {
		f.t.Fatalf("replicate local to offsite: %v", err)
	}
	return spec
}

// unavailable is the refusal of "offsite" by a worker that lacks its password; msg is
// its message.
func unavailable(msg string) brr.RefusedRepo {
	return brr.RefusedRepo{Repo: "offsite", Reason: brr.RefusedUnavailable, Pool: brr.DefaultPool, Location: "s3://s3.example.com/backups/brr", Message: msg}
}

// TestRepos reads the pool's repos from a real registry joined with real heartbeats: a
// repo the worker registered, served by two workers, and one added at runtime that no
// worker created yet, served by one and refused by the other; then the same after the
// registry lost a repo, and 503 from a worker with no view of the registry.
func TestRepos(t *testing.T) {
	const why = "repo offsite: the environment variable BRR_OFFSITE_PASSWORD is not set on this worker; set it and the worker opens the repo within a minute"
	var mu sync.Mutex
	var refusedNow []brr.RefusedRepo
	f := setup(t, func(c *Config) {
		c.Refused = func() []brr.RefusedRepo {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(refusedNow)
		}
	})

	// Before anything: "local" as the fixture registered it, and nothing refused.
	var list RepoList
	decode(t, f.get("/api/v1/repos"), http.StatusOK, &list)
	if len(list.Repos) != 1 || list.Repos[0].Name != "local" || list.Repos[0].ID != f.repoID || list.Repos[0].Pool != brr.DefaultPool {
		t.Fatalf("repos = %+v, want local (%s)", list.Repos, f.repoID)
	}
	if list.Worker.ID != "w-test" || list.Worker.Refused == nil || len(list.Worker.Refused) != 0 {
		t.Fatalf("worker = %+v, want w-test refusing nothing (an empty list, not null)", list.Worker)
	}

	spec := f.addOffsite()
	mu.Lock()
	refusedNow = []brr.RefusedRepo{unavailable(why)}
	mu.Unlock()
	f.beat("w-test", []string{"local"}, unavailable(why))
	f.beat("w-other", []string{"local", "offsite"})

	var raw response
	if !testkit.WaitFor(10*time.Second, func() bool {
		raw, list = f.get("/api/v1/repos"), RepoList{}
		decode(t, raw, http.StatusOK, &list)
		return len(list.Repos) == 2 && len(list.Repos[1].ServedBy) == 1 && len(list.Repos[0].ServedBy) == 2
	}) {
		t.Fatalf("repos never showed both heartbeats: %s", raw)
	}
	local, offsite := list.Repos[0], list.Repos[1]
	if local.Name != "local" || local.ID != f.repoID || local.Spec == nil || !strings.HasPrefix(local.Spec.URL, "file://") {
		t.Errorf("local = %+v", local)
	}
	if got, want := local.ReplicateTo, []string{"offsite"}; !slices.Equal(got, want) {
		t.Errorf("local replicate_to = %v, want %v", got, want)
	}
	if got, want := local.ServedBy, []string{"w-other", "w-test"}; !slices.Equal(got, want) || local.RefusedBy != nil {
		t.Errorf("local served by %v, refused by %v; want %v and nobody", got, local.RefusedBy, want)
	}
	if offsite.Name != "offsite" || offsite.ID != "" || offsite.Location != "" || offsite.Spec == nil || *offsite.Spec != spec {
		t.Errorf("offsite = %+v, want no id yet and the spec it was added with", offsite)
	}
	if got, want := offsite.ServedBy, []string{"w-other"}; !slices.Equal(got, want) {
		t.Errorf("offsite served by %v, want %v", got, want)
	}
	if got, want := offsite.RefusedBy, map[string]string{"w-test": why}; !maps.Equal(got, want) {
		t.Errorf("offsite refused by %v, want %v", got, want)
	}
	if len(list.Worker.Refused) != 1 || list.Worker.Refused[0].Repo != "offsite" || list.Worker.Refused[0].Reason != brr.RefusedUnavailable ||
		list.Worker.Refused[0].Message != why {
		t.Errorf("worker refuses %+v, want offsite, unavailable", list.Worker.Refused)
	}
	// The wire form: replicate_to is a list even when empty, id and refused_by are left
	// out when there are none.
	var wire struct {
		Repos []map[string]json.RawMessage `json:"repos"`
	}
	decode(t, raw, http.StatusOK, &wire)
	if got := string(wire.Repos[1]["replicate_to"]); got != "[]" {
		t.Errorf("offsite replicate_to on the wire = %s, want []", got)
	}
	if _, ok := wire.Repos[1]["id"]; ok {
		t.Errorf("offsite has an id on the wire: %s", raw)
	}
	if _, ok := wire.Repos[0]["refused_by"]; ok {
		t.Errorf("local has refused_by on the wire: %s", raw)
	}

	// The registry loses offsite: the next request says so.
	if err := f.registry.Remove(testkit.Context(t, 10*time.Second), brr.DefaultPool, "offsite"); err != nil {
		t.Fatalf("remove offsite: %v", err)
	}
	list = RepoList{}
	decode(t, f.get("/api/v1/repos"), http.StatusOK, &list)
	if len(list.Repos) != 1 || list.Repos[0].Name != "local" || len(list.Repos[0].ReplicateTo) != 0 {
		t.Fatalf("repos after removing offsite = %+v, want local alone, replicating nowhere", list.Repos)
	}

	f = setup(t, func(c *Config) { c.RepoInfos = nil })
	var eb errorBody
	decode(t, f.get("/api/v1/repos"), http.StatusServiceUnavailable, &eb)
	if !strings.Contains(eb.Error, "no view of its pools' repo registry") {
		t.Errorf("/repos without a registry: %q", eb.Error)
	}
}

// TestReposFollowTheWorker changes the repos and the replication policy that the
// Server's Config funcs return between requests: /info, /replication and the repo
// parameter of the reads see each change at the next request.
func TestReposFollowTheWorker(t *testing.T) {
	var mu sync.Mutex
	repos := []string{"local"}
	policy := map[string][]string{}
	f := setup(t, func(c *Config) {
		c.Repos = func() []string {
			mu.Lock()
			defer mu.Unlock()
			return slices.Clone(repos)
		}
		c.Replicate = func() map[string][]string {
			mu.Lock()
			defer mu.Unlock()
			return maps.Clone(policy)
		}
	})
	check := func(wantRepos []string, wantPairs int) {
		t.Helper()
		var info Info
		decode(t, f.get("/api/v1/info"), http.StatusOK, &info)
		if !slices.Equal(info.Repos, wantRepos) || len(info.Replicate) != wantPairs {
			t.Errorf("info repos %v, replicate %v; want %v and %d pairs", info.Repos, info.Replicate, wantRepos, wantPairs)
		}
		var repl ReplicationList
		decode(t, f.get("/api/v1/replication"), http.StatusOK, &repl)
		if len(repl.Pairs) != wantPairs {
			t.Errorf("replication pairs = %+v, want %d", repl.Pairs, wantPairs)
		}
		var eb errorBody
		decode(t, f.get("/api/v1/snapshots?repo=nosuch"), http.StatusNotFound, &eb)
		if want := "(configured: " + strings.Join(wantRepos, ", ") + ")"; !strings.Contains(eb.Error, want) {
			t.Errorf("unknown repo: %q, want it to list %s", eb.Error, want)
		}
	}
	check([]string{"local"}, 0)
	var eb errorBody
	decode(t, f.get("/api/v1/checkpoints?repo=offsite"), http.StatusNotFound, &eb)

	mu.Lock()
	repos = []string{"offsite", "local"}
	policy = map[string][]string{"local": {"offsite"}}
	mu.Unlock()
	check([]string{"local", "offsite"}, 1)
	var repl ReplicationList
	decode(t, f.get("/api/v1/replication"), http.StatusOK, &repl)
	if p := repl.Pairs[0]; p.From != "local" || p.To != "offsite" || !p.Configured {
		t.Errorf("pair = %+v, want local → offsite, configured", p)
	}

	mu.Lock()
	repos = []string{"local"}
	policy = nil
	mu.Unlock()
	check([]string{"local"}, 0)
}
