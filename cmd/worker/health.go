package main

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	for _, path := range sortedKeys(h.RPO) {
		if !filepath.IsAbs(path) || filepath.Clean(path) != path {
			p.bad("health.rpo: %q: must be an absolute, clean source path", path)
		}
		if d := h.RPO[path]; d <= 0 {
			p.bad("health.rpo.%s: must be a positive duration such as 26h, got %s", path, d)
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

// healthParts are the worker's running health components.
type healthParts struct {
	monitor *health.Monitor
	stop    context.CancelFunc
	running sync.WaitGroup
	mu      sync.Mutex
	live    map[string]bool // components not stopped yet, by name
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

// watchAndCheck adds the metrics of NATS, the repos and the outbox, and starts the pool's
// health: the monitor, this worker's heartbeat and its share of the pool's checks. They
// run on ctx until stopHealth.
func (w *worker) watchAndCheck(ctx context.Context, js jetstream.JetStream, engine *jobs.Engine) error {
	cfg := w.cfg
	subj := brr.Subjects{Prefix: cfg.Prefix}
	_, defaultRepo, err := engine.Repo("")
	if err != nil {
		defaultRepo = ""
	}
	repoStats := make(map[string]metrics.RepoStats, len(w.repos))
	for name, r := range w.repos {
		repoStats[name] = r
	}
	w.metrics.WatchNATS(w.nc, js, subj, cfg.Pools)
	w.metrics.WatchRepos(repoStats, defaultRepo)
	w.metrics.WatchOutbox(w.db.OutboxLen)

	hcfg := health.Config{
		Subjects:     subj,
		Worker:       w.id,
		Host:         w.host,
		Interval:     cfg.Health.Interval,
		SummaryEvery: cfg.Health.SummaryEvery,
	}
	monitor := health.NewMonitor(js, hcfg, w.log)
	repos := sortedKeys(w.repos)
	checks := []health.Check{
		&health.SnapshotCheck{Lister: engine, Repos: repos, RPO: cfg.Health.RPO, Replicate: cfg.Replicate,
			LagWarn: cfg.Health.LagWarn, LagCritical: cfg.Health.LagCritical},
		&health.RepositoryCheck{JS: js, Subjects: subj, Repos: repos, DefaultRepo: defaultRepo, MaxAge: cfg.Health.VerifyMaxAge},
		&health.DiskCheck{Workers: monitor.Workers, Warn: float64(cfg.Health.DiskWarn), Critical: float64(cfg.Health.DiskCritical)},
		&health.DLQCheck{JS: js, Subjects: subj},
	}
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
	}, w.log)
	w.metrics.WatchPool(monitor)
	w.metrics.WatchRunner(runner.Runs)

	hctx, stop := context.WithCancel(ctx) // ctx is the workers' base, detached from start-up
	w.health.monitor, w.health.stop = monitor, stop
	w.health.live = map[string]bool{}
	for name, run := range map[string]func(context.Context) error{"health monitor": monitor.Run, "heartbeat": heartbeat.Run, "health checks": runner.Run} {
		w.health.running.Add(1)
		w.health.mu.Lock()
		w.health.live[name] = true
		w.health.mu.Unlock()
		go func() {
			defer w.health.running.Done()
			w.report(name, run(hctx))
			w.health.mu.Lock()
			delete(w.health.live, name)
			w.health.mu.Unlock()
		}()
	}
	w.ready.pool.Store(monitor)
	return nil
}

// stopHealth stops the heartbeat, the checks and the monitor, and waits up to 10s for
// them: a canary may be waiting for its ping.
func (w *worker) stopHealth() error {
	if w.health.stop == nil {
		return nil
	}
	w.health.stop()
	done := make(chan struct{})
	go func() {
		w.health.running.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-time.After(10 * time.Second):
		w.health.mu.Lock()
		names := slices.Sorted(maps.Keys(w.health.live))
		w.health.mu.Unlock()
		return fmt.Errorf("health components did not stop within 10s: %s", strings.Join(names, ", "))
	}
}
