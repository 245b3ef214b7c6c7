package main

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/health"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/metrics"
)

// The fits between the health and metrics packages and what the worker hands them.
var (
	_ events.Observer       = (*metrics.Metrics)(nil)
	_ health.SnapshotLister = (*jobs.Engine)(nil)
	_ metrics.PoolView      = (*health.Monitor)(nil)
)

// defaultHealthConfig is the health section of DefaultConfig.
func defaultHealthConfig() HealthConfig {
	return HealthConfig{
		Interval:     health.DefaultInterval,
		SummaryEvery: 4,
		Canary:       true,
		CanaryWarn:   5 * time.Second,
		LagWarn:      15 * time.Minute,
		LagCritical:  time.Hour,
		VerifyMaxAge: 8 * 24 * time.Hour,
		DiskWarn:     10,
		DiskCritical: 5,
	}
}

// validate checks the health section, one problem per line.
func (h HealthConfig) validate() error {
	var p problems
	if h.Interval <= 0 {
		p.bad("health.interval: must be a positive duration such as 15s, got %s", h.Interval)
	}
	for _, key := range sortedKeys(h.RPO) {
		if name, ok := strings.CutPrefix(key, jobs.SourceKey("")); ok {
			if brr.ValidateSourceName(name) != nil {
				p.bad("health.rpo: %q: the name of a source: must be 1-64 letters, digits, '-' or '_'", key)
			}
		} else if !filepath.IsAbs(key) || filepath.Clean(key) != key {
			p.bad("health.rpo: %q: must be an absolute, clean source path, or source:NAME for a command or sqlite source", key)
		}
		if d := h.RPO[key]; d <= 0 {
			p.bad("health.rpo.%s: must be a positive duration such as 26h, got %s", key, d)
		}
	}
	if h.SummaryEvery < 1 {
		p.bad("health.summary_every: must be 1 or more (every how many intervals each check publishes all its results), got %d", h.SummaryEvery)
	}
	for _, d := range []struct {
		key string
		v   time.Duration
	}{{"canary_warn", h.CanaryWarn}, {"lag_warn", h.LagWarn}, {"lag_critical", h.LagCritical}, {"verify_max_age", h.VerifyMaxAge}} {
		if d.v <= 0 {
			p.bad("health.%s: must be a positive duration, got %s", d.key, d.v)
		}
	}
	if h.LagCritical < h.LagWarn {
		p.bad("health.lag_critical (%s) must not be shorter than health.lag_warn (%s)", h.LagCritical, h.LagWarn)
	}
	if h.DiskWarn < 0 || h.DiskWarn > 100 || h.DiskCritical < 0 || h.DiskCritical > 100 {
		p.bad("health.disk_warn and health.disk_critical: must be percentages 0-100, got %d and %d", h.DiskWarn, h.DiskCritical)
	}
	if h.DiskCritical > h.DiskWarn {
		p.bad("health.disk_critical (%d%%) must not be above health.disk_warn (%d%%)", h.DiskCritical, h.DiskWarn)
	}
	return p.err()
}

// validateRPOSources checks the source:NAME keys of health.rpo against the sources of
// the config. A path source's snapshots are of its path, so source:NAME of a path source
// would never be met: that is an error that names the key to write. A name this worker
// does not configure is accepted: the RPO check is the pool's, and the source may be
// another worker's (a database on its own host); rpoWarnings says so at start.
func (c *Config) validateRPOSources() error {
	var p problems
	for _, key := range sortedKeys(c.Health.RPO) {
		name, ok := strings.CutPrefix(key, jobs.SourceKey(""))
		if !ok {
			continue
		}
		if sc, ok := c.Sources[name]; ok && sc.Path != "" {
			p.bad("health.rpo: %q: source %s is a path source, whose snapshots are of its path: write %q instead", key, name, sc.Path)
		}
	}
	return p.err()
}

// rpoWarnings are what the worker logs at start about health.rpo: the source:NAME keys
// whose source this worker does not configure (a typo, or a source of other workers).
func (c *Config) rpoWarnings() []string {
	var out []string
	for _, key := range sortedKeys(c.Health.RPO) {
		name, ok := strings.CutPrefix(key, jobs.SourceKey(""))
		if !ok {
			continue
		}
		if _, ok := c.Sources[name]; !ok {
			out = append(out, fmt.Sprintf("health.rpo: %q names a source that is not in this worker's sources: (its RPO is checked all the same, against the snapshots of %s in the pool's repos; if it is a typo, fix it)", key, key))
		}
	}
	return out
}

// newMetrics returns the worker's metrics; the collectors that need NATS, repos and the
// health monitor are added by watchAndCheck once those are up.
func (w *worker) newMetrics() *metrics.Metrics {
	return metrics.New(metrics.Options{
		Worker:  w.id,
		Host:    w.host,
		Version: w.version,
		Ready:   func() bool { return w.ready.reason() == "" },
		Stats:   w.consumerStats,
	})
}

// consumerStats are the consume loop's counts, zeros before it starts.
func (w *worker) consumerStats() events.ConsumerStats {
	if c := w.consumer.Load(); c != nil {
		return c.Stats()
	}
	return events.ConsumerStats{}
}

// healthConfig is the worker's config for the health package.
func (w *worker) healthConfig() health.Config {
	return health.Config{
		Subjects:     brr.Subjects{Prefix: w.cfg.Prefix},
		Worker:       w.id,
		Host:         w.host,
		Interval:     w.cfg.Health.Interval,
		SummaryEvery: w.cfg.Health.SummaryEvery,
	}
}

// watchAndCheck adds the metrics of NATS, the repos and the outbox, and starts the pool's
// health: the monitor, this worker's heartbeat and its share of the pool's checks.
func (w *worker) watchAndCheck(ctx context.Context, js jetstream.JetStream, engine *jobs.Engine, hcfg health.Config, monitor *health.Monitor) error {
	cfg := w.cfg
	subj := hcfg.Subjects
	_, defaultRepo, err := engine.Repo("")
	if err != nil {
		defaultRepo = ""
	}
	w.metrics.WatchNATS(w.nc, js, subj, cfg.Pools)
	w.metrics.WatchRepos(w.repos.Stats(), defaultRepo)
	w.metrics.WatchOutbox(w.db.OutboxLen)
	w.metrics.WatchState(w.db.CommitStats)

	// A worker that refuses a repo would see the pool's repositories wrongly (an RPO
	// missed for want of the snapshots in the repo it refuses): it leaves the checks that
	// read them to the workers that serve them all, for as long as it refuses one.
	partial := func() bool { return len(w.repos.Refused()) > 0 }
	checks := []health.Check{
		&health.DiskCheck{Workers: monitor.Workers, Warn: float64(cfg.Health.DiskWarn), Critical: float64(cfg.Health.DiskCritical)},
		&health.DLQCheck{JS: js, Subjects: subj},
		&health.RepoRegistryCheck{Workers: monitor.Workers},
	}
	checks = append(checks,
		&health.SnapshotCheck{Lister: engine, Repos: engine.RepoNames, Partial: partial, RPO: cfg.rpo(), Watched: cfg.watched(), Workers: monitor.Workers, Replicate: engine.Policy,
			LagWarn: cfg.Health.LagWarn, LagCritical: cfg.Health.LagCritical},
		&health.RepositoryCheck{JS: js, Subjects: subj, Repos: engine.RepoNames, Partial: partial, DefaultRepo: defaultRepo, MaxAge: cfg.Health.VerifyMaxAge})
	if cfg.Health.Canary {
		client, err := brr.NewClient(w.nc, brr.WithPrefix(cfg.Prefix))
		if err != nil {
			return fmt.Errorf("health canary: %w", err)
		}
		checks = append(checks, &health.CanaryCheck{Client: client, Pools: cfg.Pools, Warn: cfg.Health.CanaryWarn})
	}
	runner, err := health.NewRunner(ctx, js, hcfg, w.log, checks...)
	if err != nil {
		return fmt.Errorf("health checks: %w", err)
	}
	heartbeat := health.NewHeartbeat(w.nc, js, hcfg, health.Worker{
		Version:     w.version,
		Pools:       cfg.Pools,
		Concurrency: cfg.Concurrency,
		DataDir:     cfg.DataDir,
		Started:     w.started,
		Stats: func() health.WorkerStats {
			s := w.consumerStats()
			return health.WorkerStats{InFlight: int(s.InFlight), Done: s.Done, Failed: s.Failed + s.Dead}
		},
		Refused:  w.repos.Refused,
		Repos:    engine.RepoNames,
		RepoKeys: func() map[string]string { return repoKeys(engine) },
		Sources:  w.sourceInfos,
	}, w.log)
	w.metrics.WatchPool(monitor)
	w.metrics.WatchRunner(runner.Runs)

	// 10s each: a canary may be waiting for its ping.
	w.start(ctx, component{name: "health monitor", run: monitor.Run, timeout: 10 * time.Second})
	w.start(ctx, component{name: "heartbeat", run: heartbeat.Run, timeout: 10 * time.Second})
	w.start(ctx, component{name: "health checks", run: runner.Run, timeout: 10 * time.Second})
	w.ready.pool.Store(monitor)
	return nil
}

// repoKeys are the ids of the keys engine opened its repos with, by repo.
func repoKeys(engine *jobs.Engine) map[string]string {
	keys := map[string]string{}
	for _, name := range engine.RepoNames() {
		if r, _, err := engine.Repo(name); err == nil {
			keys[name] = r.KeyID()
		}
	}
	return keys
}

// keyUsers are, by key id, the live workers of workers that opened repo with that key,
// sorted.
func keyUsers(workers []brr.WorkerInfo, repo string) map[string][]string {
	users := map[string][]string{}
	for _, w := range workers {
		if id := w.RepoKeys[repo]; id != "" && !w.Missing {
			users[id] = append(users[id], w.ID)
		}
	}
	for _, ids := range users {
		slices.Sort(ids)
	}
	return users
}
