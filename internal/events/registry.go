package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
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
	key := r.cfg.Subjects.RepoKey(pool, repo)
	entry, err := r.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s in %s: %w", key, r.cfg.Subjects.ReposBucket(), err)
	}
	var reg brr.RepoRegistration
	if err := json.Unmarshal(entry.Value(), &reg); err != nil || reg.ID == "" {
		return nil, fmt.Errorf("the registration of repo %s in pool %s (%s in %s) does not decode (%v); remove it with %s and start again",
			repo, pool, key, r.cfg.Subjects.ReposBucket(), err, r.deleteCommand(pool, repo))
	}
	reg.Pool, reg.Repo = pool, repo
	return &reg, nil
}

// Claim checks the repository mine has under the name mine.Repo against what each of
// pools registered under that name, and registers it in those that registered nothing.
// It returns a refusal, and registers nothing, when a pool registered another repository
// under the name, or any repository when mine.ID is empty: a worker that has no
// repository of that name yet would create another one. mine.Pool is ignored.
func (r *Registry) Claim(ctx context.Context, pools []string, mine brr.RepoRegistration) (*brr.RefusedRepo, error) {
	var free []string
	for _, pool := range pools {
		reg, err := r.Lookup(ctx, pool, mine.Repo)
		if err != nil {
			return nil, err
		}
		if reg == nil {
			free = append(free, pool)
			continue
		}
		if mine.ID == "" || reg.ID != mine.ID {
			return r.refusal(pool, mine, *reg), nil
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

// deleteCommand is the command that removes the registration of repo in pool.
func (r *Registry) deleteCommand(pool, repo string) string {
	return "`nats kv del " + r.cfg.Subjects.ReposBucket() + " " + r.cfg.Subjects.RepoKey(pool, repo) + "`"
}

// refusal is the refusal of mine, which pool registered as reg, with what to do about it.
func (r *Registry) refusal(pool string, mine, reg brr.RepoRegistration) *brr.RefusedRepo {
	name := mine.Repo
	registered := fmt.Sprintf("repository %s at %s, registered by worker %s on host %s at %s",
		reg.ID, reg.Location, reg.Worker, reg.Host, reg.Time.UTC().Format(time.RFC3339))
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
		Pool:       pool,
		ID:         mine.ID,
		Location:   mine.Location,
		Registered: reg,
		Message: fmt.Sprintf("repo %s refused: %s. This worker runs no job on repo %s and leaves them to the workers of pool %s that serve the registered repository. "+
			"To fix: configure repos.%s with the registered repository's url (%s) and key, as worker %s has them, or give this worker's repo another name; "+
			"if the registered repository is gone for good, remove its registration with %s; then restart this worker",
			name, what, name, pool, name, reg.Location, reg.Worker, r.deleteCommand(pool, name)),
	}
}
