package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo/location"
)

// Registry is what the workers of each pool agree a repo name means: in the KV bucket
// BRR_REPOS (EnsureStreams creates it), under <pool>.<repo>, the id and location of the
// repository that the first worker of the pool to serve a repo of that name registered.
// Each worker opens its repos from its own config, so without it a worker that joined a
// pool with a "local" of its own took half the pool's backups into a repository nobody
// else reads. A worker whose repo is another repository than the one registered refuses
// to serve it (cmd/worker) and leaves its jobs to the workers that serve the pool's.
type Registry struct {
	kv  jetstream.KeyValue
	cfg Config
}

// OpenRegistry opens the registry bucket.
func OpenRegistry(ctx context.Context, js jetstream.JetStream, cfg Config) (*Registry, error) {
	cfg = cfg.withDefaults()
	kv, err := js.KeyValue(ctx, cfg.Subjects.ReposBucket())
	if err != nil {
		return nil, fmt.Errorf("open bucket %s (are the streams ensured?): %w", cfg.Subjects.ReposBucket(), err)
	}
	return &Registry{kv: kv, cfg: cfg}, nil
}

// Lookup returns what pool registered under the repo name, or nil when nothing.
func (r *Registry) Lookup(ctx context.Context, pool, repo string) (*brr.RepoRegistration, error) {
	reg, _, err := r.lookup(ctx, pool, repo)
	return reg, err
}

// lookup is Lookup with the revision of the entry, for an update.
func (r *Registry) lookup(ctx context.Context, pool, repo string) (*brr.RepoRegistration, uint64, error) {
	key := r.cfg.Subjects.RepoKey(pool, repo)
	entry, err := r.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read %s in %s: %w", key, r.cfg.Subjects.ReposBucket(), err)
	}
	reg, err := r.decode(pool, repo, entry.Value())
	if err != nil {
		return nil, 0, err
	}
	return reg, entry.Revision(), nil
}

// decode decodes the registration of repo in pool.
func (r *Registry) decode(pool, repo string, data []byte) (*brr.RepoRegistration, error) {
	var reg brr.RepoRegistration
	err := json.Unmarshal(data, &reg)
	if err == nil && reg.ID == "" && reg.Spec == nil {
		err = errors.New("it names neither a repository nor how to open one")
	}
	if err != nil {
		return nil, fmt.Errorf("the registration of repo %s in pool %s (%s in %s) does not decode (%v); remove it with %s and start again",
			repo, pool, r.cfg.Subjects.RepoKey(pool, repo), r.cfg.Subjects.ReposBucket(), err, r.deleteCommand(pool, repo))
	}
	reg.Pool, reg.Repo = pool, repo
	return &reg, nil
}

// Claim checks the repository mine has under the name mine.Repo against what each of
// pools registered under that name, and registers it in those that registered nothing.
// It returns a refusal, and registers nothing, when a pool registered another repository
// under the name, or any repository when mine.ID is empty: a worker that has no
// repository of that name yet would create another one. mine.Pool is ignored.
//
// A repo added with `brr repo add` names no repository until a worker opens or creates
// it at the URL of its Spec: a claim with that URL (or with no Spec) fills in the id;
// one with another URL is refused. A claim seeds what the registration lacks: the Spec,
// and the replication policy when none was ever set; it changes nothing else.
func (r *Registry) Claim(ctx context.Context, pools []string, mine brr.RepoRegistration) (*brr.RefusedRepo, error) {
	var free []string
	for _, pool := range pools {
		for {
			reg, rev, err := r.lookup(ctx, pool, mine.Repo)
			if err != nil {
				return nil, err
			}
			if reg == nil {
				free = append(free, pool)
				break
			}
			switch {
			case reg.ID == "" && !sameURL(reg.Spec, mine.Spec):
				return r.refusal(pool, mine, *reg), nil
			case reg.ID == "" && mine.ID == "":
				// Added, not created yet: this worker may create it.
			case reg.ID != "" && reg.ID != mine.ID:
				return r.refusal(pool, mine, *reg), nil
			}
			next, changed := seed(*reg, mine)
			if !changed {
				break
			}
			err = r.update(ctx, next, rev)
			if errors.Is(err, jetstream.ErrKeyExists) {
				continue // changed since read: look again
			}
			if err != nil {
				return nil, err
			}
			break
		}
	}
	if mine.ID == "" {
		return nil, nil
	}
	for _, pool := range free {
		reg := mine
		reg.Pool = pool
		data, err := json.Marshal(reg)
		if err != nil {
			return nil, fmt.Errorf("encode the registration of repo %s: %w", mine.Repo, err)
		}
		key := r.cfg.Subjects.RepoKey(pool, mine.Repo)
		_, err = r.kv.Create(ctx, key, data)
		if errors.Is(err, jetstream.ErrKeyExists) {
			// Another worker of the pool registered the name since the lookup.
			got, err := r.Lookup(ctx, pool, mine.Repo)
			if err != nil {
				return nil, err
			}
			if got != nil && got.ID != mine.ID {
				return r.refusal(pool, mine, *got), nil
			}
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("register repo %s of pool %s (%s in %s): %w", mine.Repo, pool, key, r.cfg.Subjects.ReposBucket(), err)
		}
	}
	return nil, nil
}

// seed is reg with what mine adds to it: the id and location of a repo added at runtime
// once a worker has it, the Spec of a registration from before specs, and the
// replication policy when none was ever set.
func seed(reg, mine brr.RepoRegistration) (brr.RepoRegistration, bool) {
	changed := false
	if reg.ID == "" && mine.ID != "" {
		reg.ID, reg.Location, reg.Worker, reg.Host, reg.Time = mine.ID, mine.Location, mine.Worker, mine.Host, mine.Time
		changed = true
	}
	if reg.Spec == nil && mine.Spec != nil {
		reg.Spec = mine.Spec
		changed = true
	}
	if reg.ReplicateTo == nil && mine.ReplicateTo != nil {
		reg.ReplicateTo = mine.ReplicateTo
		changed = true
	}
	return reg, changed
}

// sameURL reports whether a and b open the same place: both URLs parse to the same
// location. A nil spec names no place, and agrees with any.
func sameURL(a, b *brr.RepoSpec) bool {
	if a == nil || b == nil {
		return true
	}
	la, errA := location.Parse(a.URL)
	lb, errB := location.Parse(b.URL)
	if errA != nil || errB != nil {
		return a.URL == b.URL
	}
	return la.String() == lb.String()
}

// update writes reg over the entry at revision rev; jetstream.ErrKeyExists when it
// changed since.
func (r *Registry) update(ctx context.Context, reg brr.RepoRegistration, rev uint64) error {
	data, err := json.Marshal(reg)
	if err != nil {
		return fmt.Errorf("encode the registration of repo %s: %w", reg.Repo, err)
	}
	key := r.cfg.Subjects.RepoKey(reg.Pool, reg.Repo)
	if _, err := r.kv.Update(ctx, key, data, rev); err != nil {
		var apiErr *jetstream.APIError
		if errors.As(err, &apiErr) && apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence {
			return jetstream.ErrKeyExists
		}
		return fmt.Errorf("update %s in %s: %w", key, r.cfg.Subjects.ReposBucket(), err)
	}
	return nil
}

// List returns what pool registered, by repo name.
func (r *Registry) List(ctx context.Context, pool string) ([]brr.RepoRegistration, error) {
	lister, err := r.kv.ListKeysFiltered(ctx, pool+".*")
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", r.cfg.Subjects.ReposBucket(), err)
	}
	var names []string
	for key := range lister.Keys() {
		names = append(names, strings.TrimPrefix(key, pool+"."))
	}
	sort.Strings(names)
	out := make([]brr.RepoRegistration, 0, len(names))
	for _, name := range names {
		reg, err := r.Lookup(ctx, pool, name)
		if err != nil {
			return nil, err
		}
		if reg != nil {
			out = append(out, *reg)
		}
	}
	return out, nil
}

// ErrRepoExists is what Add returns when the pool has a repo of that name.
var ErrRepoExists = errors.New("repo exists")

// Add registers a repo added at runtime: reg.Spec says how to open it; reg.ID is empty
// until a worker opens or creates it. A name the pool has is refused (ErrRepoExists).
func (r *Registry) Add(ctx context.Context, reg brr.RepoRegistration) error {
	if reg.Spec == nil {
		return fmt.Errorf("%w: add repo %s: no url", brr.ErrInvalid, reg.Repo)
	}
	data, err := json.Marshal(reg)
	if err != nil {
		return fmt.Errorf("encode the registration of repo %s: %w", reg.Repo, err)
	}
	key := r.cfg.Subjects.RepoKey(reg.Pool, reg.Repo)
	if _, err := r.kv.Create(ctx, key, data); errors.Is(err, jetstream.ErrKeyExists) {
		return fmt.Errorf("%w: pool %s has a repo %s; remove it first with `brr repo rm %s`, or add this one under another name", ErrRepoExists, reg.Pool, reg.Repo, reg.Repo)
	} else if err != nil {
		return fmt.Errorf("register repo %s of pool %s (%s in %s): %w", reg.Repo, reg.Pool, key, r.cfg.Subjects.ReposBucket(), err)
	}
	return nil
}

// Remove removes pool's registration of repo, and repo from the replication policies of
// the pool's other repos. Workers stop serving it; its data stays where it is.
func (r *Registry) Remove(ctx context.Context, pool, repo string) error {
	reg, err := r.Lookup(ctx, pool, repo)
	if err != nil {
		return err
	}
	if reg == nil {
		return fmt.Errorf("%w: pool %s has no repo %s", brr.ErrNotFound, pool, repo)
	}
	regs, err := r.List(ctx, pool)
	if err != nil {
		return err
	}
	for _, other := range regs {
		if other.ReplicateTo != nil && slices.Contains(*other.ReplicateTo, repo) {
			to := slices.DeleteFunc(slices.Clone(*other.ReplicateTo), func(s string) bool { return s == repo })
			if err := r.SetPolicy(ctx, pool, other.Repo, to); err != nil {
				return err
			}
		}
	}
	key := r.cfg.Subjects.RepoKey(pool, repo)
	if err := r.kv.Delete(ctx, key); err != nil {
		return fmt.Errorf("remove %s from %s: %w", key, r.cfg.Subjects.ReposBucket(), err)
	}
	return nil
}

// SetPolicy sets the replication policy of repo from in pool: each snapshot committed to
// it is replicated to each of to, repos of the pool. An empty to removes the policy (and a
// worker's config no longer seeds one).
func (r *Registry) SetPolicy(ctx context.Context, pool, from string, to []string) error {
	for _, name := range to {
		if name == from {
			return fmt.Errorf("%w: repo %s cannot replicate to itself", brr.ErrInvalid, from)
		}
		reg, err := r.Lookup(ctx, pool, name)
		if err != nil {
			return err
		}
		if reg == nil {
			return fmt.Errorf("%w: pool %s has no repo %s to replicate to; add it first with `brr repo add %s URL`", brr.ErrNotFound, pool, name, name)
		}
	}
	for {
		reg, rev, err := r.lookup(ctx, pool, from)
		if err != nil {
			return err
		}
		if reg == nil {
			return fmt.Errorf("%w: pool %s has no repo %s", brr.ErrNotFound, pool, from)
		}
		policy := slices.Clone(to)
		if policy == nil {
			policy = []string{}
		}
		reg.ReplicateTo = &policy
		err = r.update(ctx, *reg, rev)
		if errors.Is(err, jetstream.ErrKeyExists) {
			continue
		}
		return err
	}
}

// Watch watches the registrations of pool: every one there is, then each change (a nil
// entry marks the end of those there were; an entry whose Operation is not KeyValuePut
// is a removal).
func (r *Registry) Watch(ctx context.Context, pool string) (jetstream.KeyWatcher, error) {
	w, err := r.kv.Watch(ctx, pool+".*")
	if err != nil {
		return nil, fmt.Errorf("watch %s: %w", r.cfg.Subjects.ReposBucket(), err)
	}
	return w, nil
}

// Decode decodes the value of a watched entry of pool.
func (r *Registry) Decode(pool string, entry jetstream.KeyValueEntry) (*brr.RepoRegistration, error) {
	return r.decode(pool, strings.TrimPrefix(entry.Key(), pool+"."), entry.Value())
}

// deleteCommand is the command that removes the registration of repo in pool.
func (r *Registry) deleteCommand(pool, repo string) string {
	return "`nats kv del " + r.cfg.Subjects.ReposBucket() + " " + r.cfg.Subjects.RepoKey(pool, repo) + "`"
}

// refusal is the refusal of mine, which pool registered as reg, with what to do about it.
func (r *Registry) refusal(pool string, mine, reg brr.RepoRegistration) *brr.RefusedRepo {
	name := mine.Repo
	url := reg.Location
	registered := fmt.Sprintf("repository %s at %s, registered by worker %s on host %s at %s",
		reg.ID, reg.Location, reg.Worker, reg.Host, reg.Time.UTC().Format(time.RFC3339))
	if reg.ID == "" && reg.Spec != nil {
		url = reg.Spec.URL
		registered = fmt.Sprintf("repo at %s that %s on host %s added at %s (no worker has created it yet)",
			reg.Spec.URL, reg.Worker, reg.Host, reg.Time.UTC().Format(time.RFC3339))
	}
	var what string
	if mine.ID == "" {
		what = fmt.Sprintf("this worker has no repository at %s and did not create one there, since pool %s already means by repo %s the %s",
			mine.Location, pool, name, registered)
	} else {
		what = fmt.Sprintf("this worker's repo %s is repository %s at %s, but pool %s means by that name the %s",
			name, mine.ID, mine.Location, pool, registered)
	}
	return &brr.RefusedRepo{
		Repo:       name,
		Reason:     brr.RefusedConflict,
		Pool:       pool,
		ID:         mine.ID,
		Location:   mine.Location,
		Registered: reg,
		Message: fmt.Sprintf("repo %s refused: %s. This worker runs no job on repo %s and leaves them to the workers of pool %s that serve the registered repository. "+
			"To fix: configure repos.%s with the registered repository's url (%s) and key, as worker %s has them, or give this worker's repo another name, then restart this worker; "+
			"if the registered repository is gone for good, remove its registration with `brr repo rm %s --pool %s` (or %s), and this worker registers its own within seconds",
			name, what, name, pool, name, url, reg.Worker, name, pool, r.deleteCommand(pool, name)),
	}
}
