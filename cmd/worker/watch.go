package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"sync"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/repo/location"
	"github.com/brr-dev/brr/internal/watch"
)

var _ watch.Leaser = (*events.Leases)(nil)

// watchSources is the run of the "watch" component: a watch.Watcher for each source of
// the config with a watch, each watching its source while this worker holds the
// source's lease, and standing by to take it over while another worker does.
func (w *worker) watchSources(leases watch.Leaser) func(context.Context) error {
	return func(ctx context.Context) error {
		watchers, err := w.watchers(leases)
		if err != nil {
			return err
		}
		w.watching.Store(&watchers)
		var wg sync.WaitGroup
		for _, wr := range watchers {
			wg.Go(func() { _ = wr.Run(ctx) })
		}
		wg.Wait()
		<-ctx.Done()
		return nil
	}
}

// watchers are the watchers of the sources with a watch. Their backup jobs go to the
// worker's first pool, and one lease per pool and source makes one worker of the pool
// watch each: the other pools of the worker may have other workers, which may lack the
// source.
func (w *worker) watchers(leases watch.Leaser) ([]*watch.Watcher, error) {
	cfg := w.cfg
	sources, err := cfg.engineSources()
	if err != nil {
		return nil, err
	}
	pool := cfg.Pools[0]
	client, err := brr.NewClient(w.nc, brr.WithPrefix(cfg.Prefix), brr.WithPool(pool))
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	by := "watch on worker " + w.id
	publish := func(ctx context.Context, name, id string) error {
		_, err := client.Publish(ctx, brr.BackupJob{SourceName: name}, brr.WithID(id), brr.WithBy(by))
		return err
	}
	// A watch's backup job has succeeded once its latest event (BRR_RESULTS) says so.
	committed := func(ctx context.Context, id string) (bool, error) {
		e, err := client.Job(ctx, id)
		if errors.Is(err, brr.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		return e.Status == brr.StatusSucceeded, nil
	}
	own := w.ownPaths()
	var out []*watch.Watcher
	for _, name := range sortedKeys(sources) {
		src := sources[name]
		if src.Watch == nil {
			continue
		}
		out = append(out, &watch.Watcher{
			Source: watch.Source{
				Name: name, Path: src.Path, SQLite: src.SQLite, Excludes: src.Excludes, Ignore: own,
				Delay: src.Watch.Delay, MaxDelay: src.Watch.MaxDelay,
			},
			Key:       watchLeaseKey(pool, name),
			Leases:    leases,
			Publish:   publish,
			Committed: committed,
			JobID:     watchJobID(pool, name),
			// Those standing by try the lease about every half TTL; one whose holder
			// stopped renewing is told to come back when it expires.
			Retry: cfg.Jobs.LeaseTTL / 2,
			Log:   w.log,
		})
	}
	return out, nil
}

// watchLeaseKey is the key of the lease on the watch of source name in pool:
// "watch.POOL/NAME".
func watchLeaseKey(pool, name string) string { return events.LeaseKey("watch", pool+"/"+name) }

// watchJobID gives the id of the backup job of a burst of changes to source name that
// began at first: "watch-POOL-NAME-<unix ms>", so that a burst published again (a
// publish whose ack was lost) is one job, and two pools that watch a source of one name
// (a pool per host) never share an id. Too long an id has a hash of the pool and name
// instead.
func watchJobID(pool, name string) func(first time.Time) string {
	stem := "watch-" + pool + "-" + name
	if len(stem) > 100 {
		sum := sha256.Sum256([]byte(pool + "/" + name))
		stem = "watch-" + hex.EncodeToString(sum[:8])
	}
	return func(first time.Time) string { return fmt.Sprintf("%s-%d", stem, first.UnixMilli()) }
}

// ownPaths are the paths the worker writes to itself, whose changes in a watched tree
// are not the source's: its data dir (state, scratch, the default repo) and the
// directories of its file:// repos.
func (w *worker) ownPaths() []string {
	own := []string{w.cfg.DataDir, w.cfg.ScratchDir()}
	for _, name := range sortedKeys(w.cfg.Repos) {
		if loc, err := location.Parse(w.cfg.Repos[name].URL); err == nil && loc.Scheme == "file" {
			own = append(own, loc.Path)
		}
	}
	return own
}

// watchRPOMargin is what the RPO of a watched source allows beyond its max_delay and
// rescan interval: time for the backup job to be taken and to run.
const watchRPOMargin = time.Minute

// watchRPO is the RPO of a watched source without one in health.rpo: its max_delay, plus
// its rescan interval (watch.RescanInterval: a source that did not change is backed up
// that long after its last backup, which is what keeps its newest snapshot young), plus
// a minute. For {delay: 5s, max_delay: 1m}: 1m + 10m + 1m = 12m.
func watchRPO(w jobs.Watch) time.Duration {
	return w.MaxDelay + watch.RescanInterval(w.MaxDelay) + watchRPOMargin
}

// watchExpectation is how long a change to a watched source may wait for a snapshot that
// holds it before the RPO check is critical: its max_delay, plus a minute for the backup
// job to be taken and run, and for the watching worker's heartbeat to tell.
func watchExpectation(w jobs.Watch) time.Duration { return w.MaxDelay + watchRPOMargin }

// watched are the watched sources of the config, by the source their snapshots name,
// each with its watchExpectation.
func (c *Config) watched() map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, sc := range c.Sources {
		if sc.Watch == nil {
			continue
		}
		key := sc.Path
		if key == "" {
			key = jobs.SourceKey(name)
		}
		out[key] = watchExpectation(jobs.Watch{Delay: sc.Watch.Delay, MaxDelay: sc.Watch.MaxDelay})
	}
	return out
}

// sourceInfos are the config's sources as the heartbeats carry them, with what the
// watches this worker holds now say of their sources.
func (w *worker) sourceInfos() []brr.SourceInfo {
	infos := w.cfg.sourceInfos()
	ws := w.watching.Load()
	if ws == nil {
		return infos
	}
	for _, wr := range *ws {
		st := wr.State()
		if !st.Watching {
			continue
		}
		for i := range infos {
			if infos[i].Name != wr.Source.Name {
				continue
			}
			infos[i].Watching = &brr.SourceWatching{}
			if !st.UnprotectedSince.IsZero() {
				since := st.UnprotectedSince.UTC()
				infos[i].Watching.UnprotectedSince = &since
			}
		}
	}
	return infos
}

// rpo is the recovery point objective of each source for the health checks, by the
// source its snapshots name (its path, or source:NAME for a database): health.rpo, and
// watchRPO for each watched source it does not name.
func (c *Config) rpo() map[string]time.Duration {
	out := maps.Clone(c.Health.RPO)
	for _, name := range sortedKeys(c.Sources) {
		sc := c.Sources[name]
		if sc.Watch == nil {
			continue
		}
		key := sc.Path
		if key == "" {
			key = jobs.SourceKey(name)
		}
		if _, ok := out[key]; ok {
			continue
		}
		if out == nil {
			out = make(map[string]time.Duration)
		}
		out[key] = watchRPO(jobs.Watch{Delay: sc.Watch.Delay, MaxDelay: sc.Watch.MaxDelay})
	}
	return out
}
