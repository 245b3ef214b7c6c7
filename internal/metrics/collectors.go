package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/health"
	"github.com/brr-dev/brr/internal/state"
)

// collector is a prometheus.Collector whose metrics fn makes at each scrape.
type collector struct {
	descs []*prometheus.Desc
	fn    func(ch chan<- prometheus.Metric)
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) { c.fn(ch) }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

// gauge and counter make a metric at scrape time; desc is known to fit, so errors
// cannot happen and MustNew... is safe.
func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}

// SetRepos replaces the open repositories WatchRepos was given: the worker serves the
// repos its pool's registry gains and stops serving those it loses while it runs.
func (m *Metrics) SetRepos(repos map[string]RepoStats) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.repos = make(map[string]RepoStats, len(repos))
	for name, r := range repos {
		m.repos[name] = r
	}
}

// WatchRepos registers the metrics of the open repositories, by name, and sets the
// repos the job metrics' repo label may name; defaultRepo is the repo of a job that
// names none.
func (m *Metrics) WatchRepos(repos map[string]RepoStats, defaultRepo string) {
	m.mu.Lock()
	for name, r := range repos {
		m.repos[name] = r
	}
	m.defaultRepo = defaultRepo
	m.mu.Unlock()
	var (
		stored     = desc("brr_repo_stored_bytes", "Size of the packs in the repo's index as this worker has loaded it.", "repo")
		rawAdded   = desc("brr_repo_raw_bytes_added_total", "Plaintext bytes of the blobs this worker added to the repo since it opened it.", "repo")
		added      = desc("brr_repo_stored_bytes_added_total", "Bytes (compressed and encrypted) of the blobs this worker added to the repo since it opened it.", "repo")
		compressed = desc("brr_repo_compression_ratio", "Plaintext bytes per stored byte of the blobs this worker added to the repo; absent until it added one.", "repo")
		dedup      = desc("brr_backup_dedup_ratio", "Bytes that backups on this worker read per byte of new plaintext the repo stored since the worker opened it (1: nothing was deduplicated); absent until a backup stored something.", "repo")
	)
	m.reg.MustRegister(collector{descs: []*prometheus.Desc{stored, rawAdded, added, compressed, dedup}, fn: func(ch chan<- prometheus.Metric) {
		m.mu.Lock()
		defer m.mu.Unlock()
		for _, name := range sortedNames(m.repos) {
			s := m.repos[name].Stats()
			gauge(ch, stored, float64(s.StoredBytes), name)
			counter(ch, rawAdded, float64(s.RawBytesAdded), name)
			counter(ch, added, float64(s.BytesAdded), name)
			if s.BytesAdded > 0 {
				gauge(ch, compressed, float64(s.RawBytesAdded)/float64(s.BytesAdded), name)
			}
			if s.RawBytesAdded > 0 && m.read[name] > 0 {
				gauge(ch, dedup, float64(m.read[name])/float64(s.RawBytesAdded), name)
			}
		}
	}})
}

// WatchOutbox registers the outbox depth; depth is called at each scrape.
func (m *Metrics) WatchOutbox(depth func() (int, error)) {
	d := desc("brr_outbox_messages", "Events waiting in this worker's outbox (its state database) to be published to NATS; grows while NATS is unreachable.")
	m.reg.MustRegister(collector{descs: []*prometheus.Desc{d}, fn: func(ch chan<- prometheus.Metric) {
		if n, err := depth(); err == nil {
			gauge(ch, d, float64(n))
		}
	}})
}

// streamRefresh is how long figures read from the server serve scrapes before they are
// read again, and streamTimeout how long a scrape waits for them.
const (
	streamRefresh = 5 * time.Second
	streamTimeout = 2 * time.Second
)

// natsFigures are what WatchNATS reads from the server.
type natsFigures struct {
	read     time.Time
	dlq      uint64
	dlqOK    bool
	pools    map[string]*jetstream.ConsumerInfo
	scraping sync.Mutex
}

// WatchNATS registers the connection's state and, read from the server at most every 5
// seconds while connected, the depth of the dead-letter stream and the pending and
// unacknowledged jobs of each pool's consumer. Those are the pool's, the same on every
// worker.
func (m *Metrics) WatchNATS(nc *nats.Conn, js jetstream.JetStream, subj brr.Subjects, pools []string) {
	var (
		connected  = desc("brr_nats_connected", "1 while this worker's NATS connection is up, else 0.")
		reconnects = desc("brr_nats_reconnects_total", "Times this worker's NATS connection reconnected.")
		dlq        = desc("brr_dlq_messages", "Jobs in the dead-letter stream (the pool's; the same on every worker).")
		pending    = desc("brr_consumer_pending", "Jobs of the pool waiting in the stream for a worker (the consumer's pending count).", "pool")
		ackPending = desc("brr_consumer_ack_pending", "Jobs of the pool delivered to workers and not yet acknowledged.", "pool")
		redeliv    = desc("brr_consumer_redelivered", "Jobs of the pool delivered more than once and not yet acknowledged.", "pool")
	)
	f := &natsFigures{pools: map[string]*jetstream.ConsumerInfo{}}
	m.reg.MustRegister(collector{descs: []*prometheus.Desc{connected, reconnects, dlq, pending, ackPending, redeliv}, fn: func(ch chan<- prometheus.Metric) {
		up := nc.IsConnected()
		gauge(ch, connected, bool01(up))
		counter(ch, reconnects, float64(nc.Stats().Reconnects))
		f.scraping.Lock()
		defer f.scraping.Unlock()
		if up && time.Since(f.read) > streamRefresh {
			f.refresh(js, subj, pools)
		}
		if f.dlqOK {
			gauge(ch, dlq, float64(f.dlq))
		}
		for _, pool := range pools {
			if ci := f.pools[pool]; ci != nil {
				gauge(ch, pending, float64(ci.NumPending), pool)
				gauge(ch, ackPending, float64(ci.NumAckPending), pool)
				gauge(ch, redeliv, float64(ci.NumRedelivered), pool)
			}
		}
	}})
}

// refresh reads the figures; what cannot be read within the timeout is left out of
// this scrape rather than shown stale.
func (f *natsFigures) refresh(js jetstream.JetStream, subj brr.Subjects, pools []string) {
	ctx, cancel := context.WithTimeout(context.Background(), streamTimeout)
	defer cancel()
	f.read = time.Now()
	f.dlqOK = false
	if s, err := js.Stream(ctx, subj.DLQStream()); err == nil {
		f.dlq, f.dlqOK = s.CachedInfo().State.Msgs, true
	}
	for _, pool := range pools {
		f.pools[pool] = nil
		if c, err := js.Consumer(ctx, subj.JobsStream(), subj.Consumer(pool)); err == nil {
			f.pools[pool] = c.CachedInfo()
		}
	}
}

// PoolView is the pool's health as one worker sees it; *health.Monitor implements it.
type PoolView interface {
	Report() brr.HealthReport
	Inventory() (health.Inventory, bool)
}

// WatchPool registers the pool-wide figures of view: snapshots and the age of the newest
// per repo and source, replication lag per target, heartbeat age per worker, workers
// live and missing, and the status of each health check. They are the same on every
// worker of the pool.
func (m *Metrics) WatchPool(view PoolView) {
	var (
		snapshots = desc("brr_snapshots", "Snapshots in the repo of the source, as the snapshots health check last listed them.", "repo", "source")
		newest    = desc("brr_snapshot_newest_age_seconds", "Age of the newest snapshot of the source in the repo.", "repo", "source")
		behind    = desc("brr_replication_lag_snapshots", "Snapshots of repo from that replication target to lacks.", "from", "to")
		lagAge    = desc("brr_replication_lag_seconds", "Age of the oldest snapshot of repo from that target to lacks; 0 when it lacks none.", "from", "to")
		hbAge     = desc("brr_heartbeat_age_seconds", "Time since the worker's last heartbeat, for the workers heard from recently (missing ones included).", "worker")
		workers   = desc("brr_workers", "Workers of the pool by state: live, or missing (no heartbeat for three intervals).", "state")
		status    = desc("brr_health_status", "Worst status of the health check's results: 0 ok, 1 warn, 2 critical.", "check")
	)
	m.reg.MustRegister(collector{descs: []*prometheus.Desc{snapshots, newest, behind, lagAge, hbAge, workers, status}, fn: func(ch chan<- prometheus.Metric) {
		r := view.Report()
		now := r.Time
		if inv, ok := view.Inventory(); ok {
			for _, s := range inv.Sources {
				gauge(ch, snapshots, float64(s.Count), s.Repo, s.Source)
				gauge(ch, newest, max(now.Sub(s.Newest).Seconds(), 0), s.Repo, s.Source)
			}
			for _, l := range inv.Lags {
				age := l.AgeSeconds
				if l.Behind > 0 {
					age += max(now.Sub(inv.Time).Seconds(), 0)
				}
				gauge(ch, behind, float64(l.Behind), l.From, l.To)
				gauge(ch, lagAge, age, l.From, l.To)
			}
		}
		live, missing := 0, 0
		for _, w := range r.Workers {
			gauge(ch, hbAge, max(now.Sub(w.Time).Seconds(), 0), w.ID)
			if w.Missing {
				missing++
			} else {
				live++
			}
		}
		gauge(ch, workers, float64(live), "live")
		gauge(ch, workers, float64(missing), "missing")
		worst := map[string]brr.HealthStatus{}
		for _, c := range r.Checks {
			worst[c.Check] = worst[c.Check].Worse(c.Status)
		}
		for _, name := range sortedNames(worst) {
			gauge(ch, status, statusValue(worst[name]), name)
		}
	}})
}

// WatchRunner registers how many turns of each check this worker's runner took; runs
// is called at each scrape.
func (m *Metrics) WatchRunner(runs func() map[string]int64) {
	d := desc("brr_health_check_runs_total", "Turns of the health check that this worker took (each turn runs on one worker of the pool).", "check")
	m.reg.MustRegister(collector{descs: []*prometheus.Desc{d}, fn: func(ch chan<- prometheus.Metric) {
		counts := runs()
		for _, name := range sortedNames(counts) {
			counter(ch, d, float64(counts[name]), name)
		}
	}})
}

func statusValue(s brr.HealthStatus) float64 {
	switch s {
	case brr.HealthCritical:
		return 2
	case brr.HealthWarn:
		return 1
	}
	return 0
}

// WatchState registers the state database's commit figures (state.DB.CommitStats): how
// many commits, how long they took and how much of it was the disk, how long a write
// waited for its commit, and how many writes shared one. stats is called at each scrape.
func (m *Metrics) WatchState(stats func() state.CommitStats) {
	commits := desc("brr_state_commits_total", "Write transactions of this worker's state database (bbolt): each one fsyncs.")
	writes := desc("brr_state_writes_total", "Writes to the state database (job records with their events, outbox removals); concurrent writes share a commit.")
	commit := desc("brr_state_commit_seconds", "Latency of the state database's commits: applying the writes, writing the pages, fsync.")
	disk := desc("brr_state_commit_disk_seconds", "The part of each state database commit spent writing to the file and syncing it (bbolt's write time: pwrites and two fdatasyncs).")
	wait := desc("brr_state_write_wait_seconds", "Per write, the time from its request to the end of the commit that carried it (a job's settle waits this long before its ack).")
	per := desc("brr_state_writes_per_commit", "How many writes shared one state database commit.")
	bounds := make([]float64, len(state.CommitLatencyBounds))
	for i, b := range state.CommitLatencyBounds {
		bounds[i] = b.Seconds()
	}
	perBounds := make([]float64, len(state.CommitWritesBounds))
	for i, b := range state.CommitWritesBounds {
		perBounds[i] = float64(b)
	}
	m.reg.MustRegister(collector{descs: []*prometheus.Desc{commits, writes, commit, disk, wait, per}, fn: func(ch chan<- prometheus.Metric) {
		s := stats()
		counter(ch, commits, float64(s.Commits))
		counter(ch, writes, float64(s.Writes))
		histogram(ch, commit, s.Commit, bounds)
		histogram(ch, disk, s.Disk, bounds)
		histogram(ch, wait, s.Wait, bounds)
		histogram(ch, per, s.PerCommit, perBounds)
	}})
}

// histogram sends h, whose Counts are per bucket of bounds and one above them, as a
// Prometheus histogram (cumulative buckets).
func histogram(ch chan<- prometheus.Metric, d *prometheus.Desc, h state.Histogram, bounds []float64) {
	buckets := make(map[float64]uint64, len(bounds))
	var n uint64
	for i, b := range bounds {
		if i < len(h.Counts) {
			n += h.Counts[i]
		}
		buckets[b] = n
	}
	if len(h.Counts) > len(bounds) {
		n += h.Counts[len(bounds)]
	}
	ch <- prometheus.MustNewConstHistogram(d, n, h.Sum, buckets)
}
