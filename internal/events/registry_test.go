package events

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
)

func openRegistry(t *testing.T, cfg Config) *Registry {
	t.Helper()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	ctx := context.Background()
	if err := EnsureStreams(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	r, err := OpenRegistry(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestRegistryClaim(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := openRegistry(t, Config{})
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	first := brr.RepoRegistration{Repo: "local", ID: "id-first", Location: "file:///data/w1/repo", Worker: "vm-1", Host: "vm", Time: at}

	// Nothing registered: a worker without the repository may create it; nothing is written.
	if ref, err := r.Claim(ctx, []string{"default"}, brr.RepoRegistration{Repo: "local", Location: "file:///data/w1/repo"}); ref != nil || err != nil {
		t.Fatalf("Claim with no id and nothing registered = %+v, %v; want nil, nil", ref, err)
	}
	if reg, err := r.Lookup(ctx, "default", "local"); reg != nil || err != nil {
		t.Fatalf("Lookup after a claim with no id = %+v, %v; want nothing registered", reg, err)
	}

	// The first to claim registers, in each pool; the same repository again is fine.
	if ref, err := r.Claim(ctx, []string{"default", "db1"}, first); ref != nil || err != nil {
		t.Fatalf("first Claim = %+v, %v", ref, err)
	}
	for _, pool := range []string{"default", "db1"} {
		reg, err := r.Lookup(ctx, pool, "local")
		if err != nil || reg == nil || reg.ID != "id-first" || reg.Pool != pool || reg.Worker != "vm-1" || !reg.Time.Equal(at) {
			t.Fatalf("Lookup(%s) = %+v, %v", pool, reg, err)
		}
	}
	same := first
	same.Worker, same.Location = "vm-2", "file:///mnt/shared/repo"
	if ref, err := r.Claim(ctx, []string{"default"}, same); ref != nil || err != nil {
		t.Fatalf("Claim of the same repository from another worker = %+v, %v; want it accepted", ref, err)
	}

	// Another repository under the name is refused, with both ids, both locations, who
	// registered it and when, and the fixes; a worker without one may not create one.
	other := brr.RepoRegistration{Repo: "local", ID: "id-second", Location: "file:///data/w2/repo", Worker: "vm-2", Host: "vm"}
	ref, err := r.Claim(ctx, []string{"edge", "default"}, other)
	if err != nil || ref == nil {
		t.Fatalf("Claim of another repository = %+v, %v; want a refusal", ref, err)
	}
	if ref.Repo != "local" || ref.Pool != "default" || ref.ID != "id-second" || ref.Registered.ID != "id-first" {
		t.Errorf("refusal = %+v", ref)
	}
	for _, want := range []string{"id-first", "id-second", "file:///data/w1/repo", "file:///data/w2/repo", "vm-1", "2026-11-26T12:00:00Z",
		"repos.local", "another name", "`nats kv del BRR_REPOS default.local`", "restart this worker"} {
		if !strings.Contains(ref.Message, want) {
			t.Errorf("refusal message lacks %q:\n%s", want, ref.Message)
		}
	}
	if reg, _ := r.Lookup(ctx, "edge", "local"); reg != nil {
		t.Errorf("a refused claim registered the repository in pool edge: %+v", reg)
	}
	ref, err = r.Claim(ctx, []string{"default"}, brr.RepoRegistration{Repo: "local", Location: "file:///data/w3/repo"})
	if err != nil || ref == nil || ref.ID != "" || !strings.Contains(ref.Message, "did not create one") {
		t.Fatalf("Claim with no id of a registered name = %+v, %v; want a refusal saying it creates none", ref, err)
	}

	// In a pool that registered nothing, the same name is free.
	if ref, err := r.Claim(ctx, []string{"edge"}, other); ref != nil || err != nil {
		t.Fatalf("Claim in another pool = %+v, %v", ref, err)
	}

	// Once the registration is removed (nats kv del BRR_REPOS default.local), the next
	// claim registers its repository.
	if err := r.kv.Delete(ctx, "default.local"); err != nil {
		t.Fatal(err)
	}
	if ref, err := r.Claim(ctx, []string{"default"}, other); ref != nil || err != nil {
		t.Fatalf("Claim after the registration was removed = %+v, %v", ref, err)
	}
	if reg, err := r.Lookup(ctx, "default", "local"); err != nil || reg == nil || reg.ID != "id-second" {
		t.Fatalf("Lookup after a new claim = %+v, %v", reg, err)
	}
}

// TestRegistryClaimRace has workers with different repositories of one name claim it at
// once: exactly one registers it, every other one is refused.
func TestRegistryClaimRace(t *testing.T) {
	t.Parallel()
	r := openRegistry(t, Config{Subjects: brr.Subjects{Prefix: "acme"}})
	const n = 6
	var (
		wg      sync.WaitGroup
		refused = make([]*brr.RefusedRepo, n)
		errs    = make([]error, n)
	)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			refused[i], errs[i] = r.Claim(context.Background(), []string{"default"},
				brr.RepoRegistration{Repo: "local", ID: "id-" + string(rune('a'+i)), Location: "file:///w/repo"})
		}()
	}
	wg.Wait()
	reg, err := r.Lookup(context.Background(), "default", "local")
	if err != nil || reg == nil {
		t.Fatalf("Lookup = %+v, %v", reg, err)
	}
	winners := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("Claim %d: %v", i, errs[i])
		}
		if refused[i] == nil {
			winners++
			if want := "id-" + string(rune('a'+i)); reg.ID != want {
				t.Errorf("claim %d was accepted but %s is registered", i, reg.ID)
			}
			continue
		}
		if !strings.Contains(refused[i].Message, "`nats kv del ACME_REPOS default.local`") {
			t.Errorf("refusal %d names the wrong bucket or key: %s", i, refused[i].Message)
		}
	}
	if winners != 1 {
		t.Fatalf("%d claims accepted, want exactly 1", winners)
	}
}

// TestRegistryRuntimeRepos walks a repo added at runtime through its life: added with a
// spec and no id, created by the first worker that claims it at that url (which fills in
// the id), refused to a worker with another url or another repository, given a policy,
// and removed, which also drops it from the policies that named it.
func TestRegistryRuntimeRepos(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	r := openRegistry(t, Config{})
	spec := &brr.RepoSpec{URL: "s3:http://127.0.0.1:9000/bucket/brr", PasswordEnv: "OFFSITE_PW", AccessKeyEnv: "A", SecretKeyEnv: "S"}
	added := brr.RepoRegistration{Pool: "default", Repo: "offsite", Spec: spec, Worker: "brr-cli", Host: "laptop"}
	if err := r.Add(ctx, added); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(ctx, added); !errors.Is(err, ErrRepoExists) || !strings.Contains(err.Error(), "brr repo rm offsite") {
		t.Fatalf("Add of a name the pool has = %v; want ErrRepoExists saying how to remove it", err)
	}
	if err := r.Add(ctx, brr.RepoRegistration{Pool: "default", Repo: "bare"}); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("Add with no spec = %v; want ErrInvalid", err)
	}
	reg, err := r.Lookup(ctx, "default", "offsite")
	if err != nil || reg == nil || reg.ID != "" || reg.Spec == nil || reg.Spec.PasswordEnv != "OFFSITE_PW" {
		t.Fatalf("Lookup of an added repo = %+v, %v", reg, err)
	}

	// A worker with no repository there yet may create it; one at another url may not.
	sameURL := &brr.RepoSpec{URL: "s3:http://127.0.0.1:9000/bucket/brr/", PasswordEnv: "OTHER"}
	if ref, err := r.Claim(ctx, []string{"default"}, brr.RepoRegistration{Repo: "offsite", Spec: sameURL}); ref != nil || err != nil {
		t.Fatalf("Claim with no id at the added url = %+v, %v; want it may create", ref, err)
	}
	elsewhere := &brr.RepoSpec{URL: "s3:http://127.0.0.1:9000/other", PasswordEnv: "OTHER"}
	if ref, err := r.Claim(ctx, []string{"default"}, brr.RepoRegistration{Repo: "offsite", ID: "id-x", Spec: elsewhere}); err != nil || ref == nil || ref.Reason != brr.RefusedConflict {
		t.Fatalf("Claim at another url = %+v, %v; want a conflict", ref, err)
	}
	// The creator fills in the id; its own spec does not replace the added one.
	if ref, err := r.Claim(ctx, []string{"default"}, brr.RepoRegistration{Repo: "offsite", ID: "id-1", Location: "s3:http://127.0.0.1:9000/bucket/brr", Worker: "w1", Spec: sameURL}); ref != nil || err != nil {
		t.Fatalf("Claim of the created repository = %+v, %v", ref, err)
	}
	reg, _ = r.Lookup(ctx, "default", "offsite")
	if reg.ID != "id-1" || reg.Worker != "w1" || reg.Spec.PasswordEnv != "OFFSITE_PW" {
		t.Fatalf("after the creator's claim: %+v (spec %+v)", reg, reg.Spec)
	}
	if ref, _ := r.Claim(ctx, []string{"default"}, brr.RepoRegistration{Repo: "offsite", ID: "id-2", Spec: sameURL}); ref == nil {
		t.Fatal("a second repository at the added url was accepted")
	}

	// A config's policy seeds a registration that has none, and only then.
	local := brr.RepoRegistration{Repo: "local", ID: "id-local", Location: "file:///data/repo", Spec: &brr.RepoSpec{URL: "file:///data/repo", KeyFile: "/data/local.key"},
		ReplicateTo: &[]string{"offsite"}}
	if ref, err := r.Claim(ctx, []string{"default"}, local); ref != nil || err != nil {
		t.Fatal(ref, err)
	}
	if err := r.SetPolicy(ctx, "default", "local", []string{"nowhere"}); !errors.Is(err, brr.ErrNotFound) || !strings.Contains(err.Error(), "brr repo add nowhere") {
		t.Fatalf("SetPolicy to a repo the pool lacks = %v", err)
	}
	if err := r.SetPolicy(ctx, "default", "local", []string{"local"}); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("SetPolicy to itself = %v", err)
	}
	if err := r.SetPolicy(ctx, "default", "local", nil); err != nil {
		t.Fatal(err)
	}
	if ref, err := r.Claim(ctx, []string{"default"}, local); ref != nil || err != nil {
		t.Fatal(ref, err)
	}
	if reg, _ := r.Lookup(ctx, "default", "local"); reg.ReplicateTo == nil || len(*reg.ReplicateTo) != 0 {
		t.Fatalf("a config's policy replaced a policy removed at runtime: %+v", reg.ReplicateTo)
	}
	if err := r.SetPolicy(ctx, "default", "local", []string{"offsite"}); err != nil {
		t.Fatal(err)
	}

	regs, err := r.List(ctx, "default")
	if err != nil || len(regs) != 2 || regs[0].Repo != "local" || regs[1].Repo != "offsite" || *regs[0].ReplicateTo != nil && (*regs[0].ReplicateTo)[0] != "offsite" {
		t.Fatalf("List = %+v, %v", regs, err)
	}

	// Removing offsite drops it from local's policy.
	if err := r.Remove(ctx, "default", "offsite"); err != nil {
		t.Fatal(err)
	}
	if err := r.Remove(ctx, "default", "offsite"); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("second Remove = %v; want ErrNotFound", err)
	}
	reg, _ = r.Lookup(ctx, "default", "local")
	if reg.ReplicateTo == nil || len(*reg.ReplicateTo) != 0 {
		t.Fatalf("local's policy after offsite was removed: %+v", reg.ReplicateTo)
	}
	if regs, _ := r.List(ctx, "default"); len(regs) != 1 {
		t.Fatalf("List after Remove = %+v", regs)
	}
}
