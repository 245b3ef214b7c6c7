package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// openRepos opens every configured repository, creating those whose location holds none
// yet, and checks each against what the worker's pools registered under its name
// (claims; nil checks nothing). A repo that a pool registered as another repository is
// refused: it is closed, or not created in the first place, and returned among refused
// instead of repos. A repo that does not open (its key or password file is missing, the
// key is wrong, its storage does not answer) is refused too, as RefusedUnavailable,
// with why: the worker serves its other repos, and the repo manager tries it again.
// Only the default repo (defaultRepoName) stops start-up with an error that names it:
// most jobs name no repo, and a worker that cannot run them should not look healthy.
func openRepos(ctx context.Context, cfg Config, js jetstream.JetStream, leases jobs.Leaser, claims *repoClaims, log zerolog.Logger) (repos map[string]*repo.Repository, refused []brr.RefusedRepo, err error) {
	repos = map[string]*repo.Repository{}
	// Packs are filled in files here (unlinked at once) and saved from them, not in memory.
	if err := os.MkdirAll(packTempDir(cfg), 0o700); err != nil {
		return nil, nil, fmt.Errorf("create the directory for packs being written: %w", err)
	}
	for _, name := range cfg.repoNames() {
		rc := cfg.Repos[name]
		rlog := log.With().Str("repo", name).Logger()
		r, err := openRepo(ctx, cfg, name, rc, js, leases, claims, rlog)
		var ref *refusedError
		if errors.As(err, &ref) {
			refused = append(refused, ref.RefusedRepo)
			continue
		}
		if err != nil && name != cfg.defaultRepoName() && ctx.Err() == nil {
			refused = append(refused, brr.RefusedRepo{Repo: name, Reason: brr.RefusedUnavailable, Location: rc.URL,
				Message: unavailableMessage(name, err, true)})
			continue
		}
		if err != nil {
			for _, r := range repos {
				_ = r.Close()
			}
			return nil, nil, err
		}
		repos[name] = r
	}
	return repos, refused, nil
}

// unavailableMessage says that this worker cannot open repo name, of its config (mine) or
// of its pool's registry, why (err), and what it does meanwhile.
func unavailableMessage(name string, err error, mine bool) string {
	where := "is in the pool's registry"
	if mine {
		where = "is in this worker's config"
	}
	return fmt.Sprintf("repo %s %s but this worker cannot open it: %v. "+
		"This worker runs no job on repo %s and leaves them to the workers that can; it tries again every %s and at each change of the registry",
		name, where, err, name, retryUnavailable)
}

// defaultRepoName is the repo a job that names none goes to: default_repo, else local
// when configured, else the only repo (as jobs.Engine.Repo chooses it).
func (c Config) defaultRepoName() string {
	names := c.repoNames()
	switch {
	case c.DefaultRepo != "":
		return c.DefaultRepo
	case slices.Contains(names, LocalRepo):
		return LocalRepo
	case len(names) == 1:
		return names[0]
	}
	return ""
}

// packTempDir is where the worker's repositories fill their packs: <data_dir>/tmp.
func packTempDir(cfg Config) string { return filepath.Join(cfg.DataDir, "tmp") }

// repoClaims checks the worker's repos against the registry of its pools.
type repoClaims struct {
	registry     *events.Registry
	pools        []string
	worker, host string
	// seed is the replication policy of the worker's config, which a claim writes into
	// a registration that has none.
	seed map[string][]string
}

// refusedError is what opening a repo that the registry refuses returns.
type refusedError struct{ brr.RefusedRepo }

func (e *refusedError) Error() string { return e.Message }

// claim registers the repository id at location under name in the pools that registered
// nothing under it, or returns a *refusedError when one registered another repository (or
// any, when id is empty: this worker has none and would create another).
//
// The registration it writes holds the spec (rc, which holds no secret) and the
// policy of the worker's config, so that the other workers of the pool can open the repo
// too (repoManager).
func (c *repoClaims) claim(ctx context.Context, name, id, location string, rc RepoConfig) error {
	if c == nil {
		return nil
	}
	spec := brr.RepoSpec(rc)
	mine := brr.RepoRegistration{
		Repo: name, ID: id, Location: location, Worker: c.worker, Host: c.host, Time: time.Now().UTC(), Spec: &spec,
	}
	if to, ok := c.seed[name]; ok {
		to = slices.Clone(to)
		mine.ReplicateTo = &to
	}
	ref, err := c.registry.Claim(ctx, c.pools, mine)
	if err != nil {
		return fmt.Errorf("repo %s: %w", name, err)
	}
	if ref != nil {
		return &refusedError{*ref}
	}
	return nil
}

func openRepo(ctx context.Context, cfg Config, name string, rc RepoConfig, js jetstream.JetStream, leases jobs.Leaser, claims *repoClaims, log zerolog.Logger) (*repo.Repository, error) {
	be, err := openBackend(ctx, cfg, name, rc, js)
	if err != nil {
		return nil, err
	}
	// Before creating a repository (or its key), ask whether the pools mean another one by
	// the name: a worker that joined a pool with a "local" of its own used to make one.
	mayCreate := func(ctx context.Context) error { return claims.claim(ctx, name, "", be.Location(), rc) }

	password, err := repoPassword(ctx, cfg, name, rc, be, mayCreate, log)
	if err != nil {
		_ = be.Close()
		return nil, err
	}

	opts := repo.Options{AppendOnly: rc.AppendOnly, TempDir: packTempDir(cfg)}
	r, err := repo.Open(ctx, be, password, opts)
	switch {
	case errors.Is(err, repo.ErrNoRepository):
		var created bool
		r, created, err = initRepo(ctx, be, password, opts, leases, mayCreate)
		if err != nil {
			_ = be.Close()
			return nil, fmt.Errorf("create repo %s at %s: %w", name, be.Location(), err)
		}
		if created {
			log.Info().Str("location", be.Location()).Msg("created repository")
		}
	case errors.Is(err, repo.ErrWrongPassword):
		_ = be.Close()
		how := "the key in " + rc.KeyFile
		if rc.PasswordEnv != "" {
			how = "the password in $" + rc.PasswordEnv
		}
		return nil, fmt.Errorf("repo %s at %s: %s does not open it (wrong key); configure one of the repository's keys: the one it was created with, or one added since with `brr key add` (`brr key list --repo %s` lists them, from a worker that opens it; a removed key opens it no more)", name, be.Location(), how, name)
	case err != nil:
		_ = be.Close()
		return nil, fmt.Errorf("open repo %s at %s: %w", name, be.Location(), err)
	default:
		log.Debug().Str("location", be.Location()).Msg("opened repository")
	}
	if err := claims.claim(ctx, name, r.ID(), be.Location(), rc); err != nil {
		_ = r.Close()
		return nil, err
	}
	if err := upgradeRepo(ctx, r, leases, log); err != nil {
		_ = r.Close()
		return nil, fmt.Errorf("repo %s at %s: %w", name, be.Location(), err)
	}
	return r, nil
}

// upgradeRepo brings a repository written by an older brr to the current format (see
// repo.Upgrade), holding the repository's lease so that no prune runs meanwhile and no
// other worker upgrades it at the same time. A repository in the current format costs
// nothing; one that another worker is upgrading is opened as it is (it reads either way)
// and this worker learns the new format at its next index reload. An append-only one is
// not upgraded (repo.ErrAppendOnly): it is opened as it is, with a warning.
func upgradeRepo(ctx context.Context, r *repo.Repository, leases jobs.Leaser, log zerolog.Logger) error {
	from := r.Config().Version
	if from >= repo.FormatVersion {
		return nil
	}
	if leases != nil {
		_, release, err := leases.Acquire(ctx, jobs.RepoLeaseKey(r))
		if _, busy := brr.SnoozeDelay(err); busy {
			log.Info().Int("format", from).Msg("repository is in an older format and another worker holds its lease; opening it as it is")
			return nil
		}
		if err != nil {
			return fmt.Errorf("take the lease to upgrade it: %w", err)
		}
		defer release()
	}
	st, err := r.Upgrade(ctx)
	if errors.Is(err, repo.ErrAppendOnly) {
		// It stays in its format, which this worker reads and adds to as before.
		log.Warn().Err(err).Int("format", from).Msg("repository is in an older format and append_only: not upgraded")
		return nil
	}
	if err != nil {
		return fmt.Errorf("upgrade from format %d: %w", from, err)
	}
	if st.To != st.From {
		log.Warn().Int("from", st.From).Int("to", st.To).Int("objects", st.Objects).Int("index_files", st.IndexFiles).Int("damaged", st.Damaged).
			Msg("upgraded the repository's format: every object is now bound to its name; workers of an older brr can no longer read it")
	}
	return nil
}

// initWait bounds how long a worker waits for another to finish creating a repository.
const initWait = time.Minute

// initRepo creates the repository in be, under a lease on its location so that two
// workers starting at once on a new shared repository do not both create one (each with
// its own master key): the one that takes the lease creates it, the others wait for the
// lease and open what it created. created is false when another worker made it. Before it
// creates one, mayCreate (nil: always) may say no with an error, which it returns.
func initRepo(ctx context.Context, be repo.Backend, password []byte, opts repo.Options, leases jobs.Leaser, mayCreate func(context.Context) error) (r *repo.Repository, created bool, err error) {
	create := func() (*repo.Repository, bool, error) {
		if mayCreate != nil {
			if err := mayCreate(ctx); err != nil {
				return nil, false, err
			}
		}
		r, err := repo.Init(ctx, be, password, opts)
		return r, err == nil, err
	}
	if leases == nil {
		return create()
	}
	key := events.LeaseKey("init", be.Location())
	deadline := time.Now().Add(initWait)
	for {
		_, release, err := leases.Acquire(ctx, key)
		if err == nil {
			defer release()
			// Another worker may have created it between our Open and the lease.
			r, err = repo.Open(ctx, be, password, opts)
			if !errors.Is(err, repo.ErrNoRepository) {
				return r, false, err
			}
			return create()
		}
		if _, ok := brr.SnoozeDelay(err); !ok || time.Now().After(deadline) {
			return nil, false, fmt.Errorf("take the lease to create it: %w", err)
		}
		select {
		case <-ctx.Done():
			return nil, false, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		r, err = repo.Open(ctx, be, password, opts)
		if !errors.Is(err, repo.ErrNoRepository) {
			return r, false, err
		}
	}
}

// repoPassword reads a repository's key: the trimmed contents of key_file, or the
// environment variable named by password_env. For the local repository under the data
// dir it creates the key file on first start, when there is no repository to lock out and
// mayCreate says yes (it returns mayCreate's error otherwise).
func repoPassword(ctx context.Context, cfg Config, name string, rc RepoConfig, be repo.Backend, mayCreate func(context.Context) error, log zerolog.Logger) ([]byte, error) {
	if rc.PasswordEnv != "" {
		v := strings.TrimSpace(os.Getenv(rc.PasswordEnv))
		if v == "" {
			return nil, fmt.Errorf("repo %s: environment variable %s is empty; set it to the repository's password", name, rc.PasswordEnv)
		}
		return []byte(v), nil
	}
	data, err := os.ReadFile(rc.KeyFile)
	if errors.Is(err, fs.ErrNotExist) && name == LocalRepo && rc == cfg.localRepo() {
		_, statErr := be.Stat(ctx, repo.Handle{Type: repo.ConfigFile, Name: "config"})
		if statErr == nil {
			return nil, fmt.Errorf("repo %s at %s exists but its key file %s is missing; put back the key file from your backup", name, be.Location(), rc.KeyFile)
		}
		if !repo.IsNotExist(statErr) {
			return nil, fmt.Errorf("repo %s: look for a repository at %s: %w", name, be.Location(), statErr)
		}
		if err := mayCreate(ctx); err != nil {
			return nil, err
		}
		if err := createKeyFile(rc.KeyFile); err != nil {
			return nil, fmt.Errorf("repo %s: %w", name, err)
		}
		log.Warn().Str("key_file", rc.KeyFile).Msg("generated the key of repository local; back this file up: without it the repository cannot be read")
		data, err = os.ReadFile(rc.KeyFile)
	}
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("repo %s: key file %s does not exist; put the repository's key in it (for a new repository, any long random string)", name, rc.KeyFile)
	}
	if err != nil {
		return nil, fmt.Errorf("repo %s: read key file: %w", name, err)
	}
	key := strings.TrimSpace(string(data))
	if key == "" {
		return nil, fmt.Errorf("repo %s: key file %s is empty; put the repository's key in it", name, rc.KeyFile)
	}
	return []byte(key), nil
}

// createKeyFile writes 32 random bytes, hex-encoded, to path with mode 0600. It never
// replaces an existing file.
func createKeyFile(path string) error {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("generate key: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	if _, err := f.WriteString(hex.EncodeToString(key[:]) + "\n"); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write key file: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("sync key file: %w", err)
	}
	return f.Close()
}
