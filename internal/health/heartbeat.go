package health

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
)

// WorkerStats is what a heartbeat reports of the worker's jobs since it started.
type WorkerStats struct {
	InFlight int
	// Done counts jobs that succeeded; Failed those that failed for good or are dead.
	Done, Failed int64
}

// Worker describes this worker for its heartbeats.
type Worker struct {
	Version     string
	Pools       []string
	Concurrency int
	// DataDir is where the worker keeps its state; heartbeats carry the free space of its
	// file system.
	DataDir string
	// Started is when the worker started.
	Started time.Time
	// Stats returns the job counts; nil reports zeros.
	Stats func() WorkerStats
	// Refused are the repos the worker has and does not serve (see brr.RefusedRepo).
	// Nil refuses none.
	Refused func() []brr.RefusedRepo
	// Repos are the repos the worker serves; nil says nothing of them.
	Repos func() []string
	// RepoKeys are the ids of the keys the worker opened its repos with, by repo; nil
	// says nothing of them.
	RepoKeys func() map[string]string
	// Sources are the named sources of the worker's config; nil says nothing of them.
	Sources func() []brr.SourceInfo
}

// Heartbeat publishes this worker's heartbeat on brr.events.health.worker every interval.
type Heartbeat struct {
	nc  *nats.Conn
	js  jetstream.JetStream
	cfg Config
	w   Worker
	log zerolog.Logger
}

// NewHeartbeat returns the heartbeat of worker w, published over nc.
func NewHeartbeat(nc *nats.Conn, js jetstream.JetStream, cfg Config, w Worker, log zerolog.Logger) *Heartbeat {
	return &Heartbeat{nc: nc, js: js, cfg: cfg.withDefaults(), w: w, log: log.With().Str("component", "heartbeat").Logger()}
}

// Info returns the heartbeat as it would be sent now.
func (h *Heartbeat) Info() brr.WorkerInfo {
	now := h.cfg.Now().UTC()
	info := brr.WorkerInfo{
		ID:              h.cfg.Worker,
		Host:            h.cfg.Host,
		Version:         h.w.Version,
		Pools:           h.w.Pools,
		Concurrency:     h.w.Concurrency,
		Started:         h.w.Started.UTC(),
		UptimeSeconds:   max(now.Sub(h.w.Started).Seconds(), 0),
		IntervalSeconds: h.cfg.Interval.Seconds(),
		Time:            now,
		RefusedRepos:    h.w.refused(),
	}
	if h.w.Repos != nil {
		info.Repos = h.w.Repos()
	}
	if h.w.RepoKeys != nil {
		info.RepoKeys = h.w.RepoKeys()
	}
	if h.w.Sources != nil {
		info.Sources = h.w.Sources()
	}
	if h.w.Stats != nil {
		s := h.w.Stats()
		info.InFlight, info.JobsDone, info.JobsFailed = s.InFlight, s.Done, s.Failed
	}
	if h.w.DataDir != "" {
		if free, total, err := diskUsage(h.w.DataDir); err == nil {
			info.DiskFreeBytes, info.DiskTotalBytes = free, total
		}
	}
	// RTT waits for the server's answer; while reconnecting it would wait long, and the
	// heartbeat could not go out anyway.
	if h.nc.IsConnected() {
		if rtt, err := h.nc.RTT(); err == nil {
			info.NATSRTTMS = float64(rtt.Microseconds()) / 1000
		}
	}
	return info
}

// Publish sends one heartbeat now.
func (h *Heartbeat) Publish(ctx context.Context) error {
	info := h.Info()
	e := h.cfg.newEvent(brr.CheckWorker, info.Time)
	e.Heartbeat = &info
	return h.cfg.publish(ctx, h.js, e)
}

// Run sends a heartbeat at once and then every interval until ctx is done; then it
// returns nil. A heartbeat that cannot be sent (NATS is away) is skipped, not queued:
// the next one says the same, newer.
func (h *Heartbeat) Run(ctx context.Context) error {
	t := time.NewTicker(h.cfg.Interval)
	defer t.Stop()
	failing := false
	for {
		pctx, cancel := context.WithTimeout(ctx, h.cfg.Interval)
		err := h.Publish(pctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && !failing:
			h.log.Warn().Err(err).Msg("publish heartbeat; trying again every interval")
			failing = true
		case err == nil && failing:
			h.log.Info().Msg("heartbeats published again")
			failing = false
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// refused are the repos the worker refuses now.
func (w Worker) refused() []brr.RefusedRepo {
	if w.Refused == nil {
		return nil
	}
	return w.Refused()
}
