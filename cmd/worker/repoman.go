package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/metrics"
	"github.com/brr-dev/brr/internal/repo"
)

// retryUnavailable is how often a worker tries again to open the registered repos it
// could not open (a secret put in place, a server back up) when the registry is quiet.
const retryUnavailable = time.Minute

// repoManager keeps the repos a worker serves in step with its pools' registry: a repo
// added with `brr repo add` is opened (created when its location holds none), one removed
// with `brr repo rm` is dropped, and a changed replication policy applies to the next
// commit, all within seconds and without a restart. The repos of the worker's own config
// are opened at start (openRepos) and seed the registry; for them the worker's config
// wins over the registry's spec, since key files and limits may differ per worker.
//
// A registered repo the worker cannot open, most often for lack of its secret, is
// refused with the reason RefusedUnavailable: logged once, shown in /readyz, the
// heartbeats and `brr workers`, its jobs left to the workers that can. It is tried again
// at each change of the registry and every retryUnavailable.
type repoManager struct {
	w        *worker
	engine   *jobs.Engine
	registry *events.Registry
	claims   *repoClaims
	js       jetstream.JetStream
	leases   jobs.Leaser
	log      zerolog.Logger

	// reconciling lets one reconcile run at a time; mu guards what follows.
	reconciling sync.Mutex
	mu          sync.Mutex
	open        map[string]openedRepo           // what the worker serves
	refused     map[string]brr.RefusedRepo      // what it does not, and why
	config      map[string]RepoConfig           // the repos of the worker's config
	policy      map[string][]string             // the replication policy of the worker's config
	regs        map[string]brr.RepoRegistration // the registry at the last reconcile
}

// openedRepo is a repository the worker serves and the spec it was opened with.
type openedRepo struct {
	r    *repo.Repository
	spec RepoConfig
}

func newRepoManager(w *worker, registry *events.Registry, claims *repoClaims, js jetstream.JetStream, leases jobs.Leaser,
	repos map[string]*repo.Repository, refused []brr.RefusedRepo) *repoManager {
	m := &repoManager{
		w: w, registry: registry, claims: claims, js: js, leases: leases, log: w.log,
		open: map[string]openedRepo{}, refused: map[string]brr.RefusedRepo{},
		config: w.cfg.Repos, policy: w.cfg.Replicate,
	}
	for name, r := range repos {
		m.open[name] = openedRepo{r: r, spec: w.cfg.Repos[name]}
	}
	for _, ref := range refused {
		m.refused[ref.Repo] = ref
	}
	m.publishRefused() // /readyz says why from the start, not from the first reconcile
	return m
}

// Run watches the registry of each pool and reconciles at every change, and every
// retryUnavailable, until ctx is done.
func (m *repoManager) Run(ctx context.Context) error {
	changed := make(chan struct{}, 1)
	for _, pool := range m.w.cfg.Pools {
		watcher, err := m.registry.Watch(ctx, pool)
		if err != nil {
			return err
		}
		defer func() { _ = watcher.Stop() }()
		go func() {
			for range watcher.Updates() {
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		}()
	}
	tick := time.NewTicker(retryUnavailable)
	defer tick.Stop()
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return nil
			case <-changed:
			case <-tick.C:
			}
		}
		if err := m.reconcile(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn().Err(err).Msg("read the pool's repo registry; trying again at its next change")
		}
	}
}

// registered reads the registry of the worker's pools: the first pool's entry of each
// name.
func (m *repoManager) registered(ctx context.Context) (map[string]brr.RepoRegistration, error) {
	regs := map[string]brr.RepoRegistration{}
	for _, pool := range m.w.cfg.Pools {
		list, err := m.registry.List(ctx, pool)
		if err != nil {
			return nil, err
		}
		for _, reg := range list {
			if _, ok := regs[reg.Repo]; !ok {
				regs[reg.Repo] = reg
			}
		}
	}
	return regs, nil
}

// openTimeout bounds the opening of one registered repo, so that a server that does not
// answer holds up neither the other repos nor the next change.
const openTimeout = 2 * time.Minute

// toOpen is a repo reconcile opens, and the spec it opens it with.
type toOpen struct {
	name string
	spec RepoConfig
	reg  brr.RepoRegistration // zero when the pool has none
}

// reconcile brings the served repos and the policy in line with the registry. Only one
// runs at a time; the opening of repos, which may take long, is done without m.mu, so
// that heartbeats and /readyz never wait for it.
func (m *repoManager) reconcile(ctx context.Context) error {
	m.reconciling.Lock()
	defer m.reconciling.Unlock()
	regs, err := m.registered(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	todo := m.plan(regs)
	m.mu.Unlock()

	for _, o := range todo {
		octx, cancel := context.WithTimeout(ctx, openTimeout)
		r, err := m.openSpec(octx, o.name, o.spec)
		cancel()
		m.mu.Lock()
		m.settle(o, r, err)
		m.mu.Unlock()
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	m.engine.SetReplicateTo(m.policyOf(regs))
	m.publishRefused()
	if m.w.metrics != nil {
		m.w.metrics.SetRepos(m.statsLocked())
	}
	return nil
}

// pending marks, before the first reconcile, every repo of the registry that the worker
// has not opened as one it does not serve yet, so that a job on it taken meanwhile is
// snoozed rather than failed as a repo nobody configured.
func (m *repoManager) pending(ctx context.Context) error {
	regs, err := m.registered(ctx)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.regs = regs
	for name, reg := range regs {
		if _, ok := m.open[name]; ok || reg.Spec == nil {
			continue
		}
		if _, ok := m.refused[name]; !ok {
			m.engine.SetRefused(name, fmt.Sprintf("repo %s: this worker is still opening it (it is in the pool's registry)", name))
		}
	}
	return nil
}

// plan drops what the registry lost and returns what to open.
func (m *repoManager) plan(regs map[string]brr.RepoRegistration) []toOpen {
	m.regs = regs
	// Removed from the registry: no longer served, by anyone.
	for name := range m.open {
		if _, ok := regs[name]; !ok {
			m.drop(name, "removed from the pool's registry; no longer served")
		}
	}
	names := map[string]bool{}
	for name := range regs {
		names[name] = true
	}
	for name, ref := range m.refused {
		_, mine := m.config[name]
		switch _, registered := regs[name]; {
		case registered:
		case mine && ref.Reason == brr.RefusedConflict:
			// What it disagreed with is gone: claim the name now.
			names[name] = true
		case mine && ref.Reason == brr.RefusedUnavailable:
			// A repo of the config that did not open: try it again.
			names[name] = true
		default:
			delete(m.refused, name)
			m.engine.SetRefused(name, "")
		}
	}

	var todo []toOpen
	for _, name := range slices.Sorted(maps.Keys(names)) {
		reg, registered := regs[name]
		spec, mine := m.config[name]
		if !mine {
			if reg.Spec == nil {
				continue // a registration of another worker's config, from before specs
			}
			spec = RepoConfig(*reg.Spec)
		}
		if o, ok := m.open[name]; ok {
			switch {
			case registered && reg.ID != "" && reg.ID != o.r.ID():
				// Removed and registered again, for another repository: what the pool
				// means by the name now decides, as at start.
				m.drop(name, "the pool's registry now names another repository by it; checking it again")
			case mine || o.spec == spec:
				continue
			default:
				// Removed and added again with another spec.
				m.drop(name, "its spec in the registry changed; opening it again")
			}
		}
		if ref, ok := m.refused[name]; ok && registered && ref.Reason == brr.RefusedConflict && sameRegistration(ref.Registered, reg) {
			continue // the same disagreement; a change of the registration is tried again
		}
		todo = append(todo, toOpen{name, spec, reg})
	}
	return todo
}

// sameRegistration reports whether a and b register the same thing.
func sameRegistration(a, b brr.RepoRegistration) bool {
	return a.ID == b.ID && a.Location == b.Location && (a.Spec == nil) == (b.Spec == nil) && (a.Spec == nil || *a.Spec == *b.Spec)
}

// openSpec opens repo name as spec says (creating it when its location holds none and the
// pool lets it), checking it against the registry.
func (m *repoManager) openSpec(ctx context.Context, name string, spec RepoConfig) (*repo.Repository, error) {
	if err := spec.validate("repo " + name); err != nil {
		return nil, err
	}
	return openRepo(ctx, m.w.cfg, name, spec, m.js, m.leases, m.claims, m.log.With().Str("repo", name).Logger())
}

// settle serves r under name, or refuses name for err and says why (once per reason).
func (m *repoManager) settle(o toOpen, r *repo.Repository, err error) {
	name, spec := o.name, o.spec
	log := m.log.With().Str("repo", name).Logger()
	var conflict *refusedError
	switch {
	case errors.As(err, &conflict):
		ref := conflict.RefusedRepo
		ref.Reason = brr.RefusedConflict
		if old, ok := m.refused[name]; !ok || old.Message != ref.Message {
			m.w.logRefused(ref)
		}
		m.refused[name] = ref
		m.engine.SetRefused(name, ref.Message)
	case err != nil:
		_, mine := m.config[name]
		msg := unavailableMessage(name, err, mine)
		if old, ok := m.refused[name]; !ok || old.Message != msg {
			log.Error().Str("url", spec.URL).Msg(msg)
		}
		m.refused[name] = brr.RefusedRepo{Repo: name, Reason: brr.RefusedUnavailable, Pool: o.reg.Pool, Location: spec.URL, Registered: o.reg, Message: msg}
		m.engine.SetRefused(name, msg)
	default:
		if _, was := m.refused[name]; was {
			log.Info().Msg("repo is served now")
		}
		delete(m.refused, name)
		m.open[name] = openedRepo{r: r, spec: spec}
		m.engine.SetRepo(name, r)
		log.Info().Str("location", r.Backend().Location()).Msg("serving repo from the pool's registry")
	}
}

// drop stops serving repo name; the engine closes it once no job holds it.
func (m *repoManager) drop(name, why string) {
	delete(m.open, name)
	m.engine.DropRepo(name)
	m.log.Warn().Str("repo", name).Msg(why)
}

// policyOf is the replication policy: the registry's for each repo that has one, else
// the worker's config's.
func (m *repoManager) policyOf(regs map[string]brr.RepoRegistration) map[string][]string {
	out := map[string][]string{}
	for from, to := range m.policy {
		out[from] = slices.Clone(to)
	}
	for name, reg := range regs {
		if reg.ReplicateTo != nil {
			if len(*reg.ReplicateTo) == 0 {
				delete(out, name)
			} else {
				out[name] = slices.Clone(*reg.ReplicateTo)
			}
		}
	}
	return out
}

// publishRefused tells /readyz and the heartbeats what the worker refuses.
func (m *repoManager) publishRefused() {
	list := make([]brr.RefusedRepo, 0, len(m.refused))
	for _, name := range slices.Sorted(maps.Keys(m.refused)) {
		list = append(list, m.refused[name])
	}
	m.w.ready.refused.Store(&list)
}

// Refused is what the worker refuses now, by name.
func (m *repoManager) Refused() []brr.RefusedRepo {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.SortedFunc(maps.Values(m.refused), func(a, b brr.RefusedRepo) int { return strings.Compare(a.Repo, b.Repo) })
}

// Names are the names of every repo the worker knows of: those it serves, those it
// refuses and those its pools registered, sorted.
func (m *repoManager) Names() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	set := map[string]bool{}
	for name := range m.open {
		set[name] = true
	}
	for name := range m.refused {
		set[name] = true
	}
	for name := range m.regs {
		set[name] = true
	}
	return slices.Sorted(maps.Keys(set))
}

// Close closes the repositories the worker serves and those dropped while jobs ran.
func (m *repoManager) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(m.open)) {
		if err := m.open[name].r.Close(); err != nil {
			errs = append(errs, fmt.Errorf("repo %s: %w", name, err))
		}
	}
	m.open = map[string]openedRepo{}
	m.engine.Close()
	return errors.Join(errs...)
}

// Registrations are the pools' registrations at the last reconcile, by name (the first
// pool's of each name).
func (m *repoManager) Registrations() []brr.RepoRegistration {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]brr.RepoRegistration, 0, len(m.regs))
	for _, name := range slices.Sorted(maps.Keys(m.regs)) {
		out = append(out, m.regs[name])
	}
	return out
}

// Stats are the repositories the worker serves, for the metrics.
func (m *repoManager) Stats() map[string]metrics.RepoStats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.statsLocked()
}

func (m *repoManager) statsLocked() map[string]metrics.RepoStats {
	out := make(map[string]metrics.RepoStats, len(m.open))
	for name, o := range m.open {
		out[name] = o.r
	}
	return out
}
