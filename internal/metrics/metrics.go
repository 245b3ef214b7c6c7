// Package metrics is the worker's Prometheus endpoint: counters and histograms of the
// jobs this worker settles (fed by the consume loop as an events.Observer), and
// collectors that read the rest when scraped: the consumer's counts, the repositories'
// write statistics, NATS and the pool's consumers and dead letters, the outbox, and the
// pool's health as the health Monitor sees it (snapshots per source, replication lag,
// heartbeats, check statuses). Every label has a bounded set of values: kinds, statuses,
// configured repos and pools, live workers, and at most 200 sources.
package metrics

import (
	"net/http"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/repo"
)

// Options describe the worker; Ready and Stats are read at every scrape.
type Options struct {
	Worker, Host, Version string
	// Ready reports whether the worker is ready (/readyz answers 200); nil means never.
	Ready func() bool
	// Stats returns the consume loop's counts; nil, or a zero value before the consumer
	// starts, reports zeros.
	Stats func() events.ConsumerStats
}

// otherRepo is the repo label of a job that named a repo this worker does not have.
const otherRepo = "other"

// Metrics holds the worker's registry and the metrics fed by the consume loop.
type Metrics struct {
	reg  *prometheus.Registry
	opts Options

	jobs       *prometheus.CounterVec
	duration   *prometheus.HistogramVec
	leaseWaits *prometheus.CounterVec

	backupRead, backupStored, backupDedup *prometheus.CounterVec
	verifyFailures, restoreBytes          *prometheus.CounterVec

	mu sync.Mutex
	// repos are the configured repos, as WatchRepos was given them; defaultRepo names the
	// repo of a job that names none.
	repos       map[string]RepoStats
	defaultRepo string
	// read is what backups read per repo; raw the repo's RawBytesAdded at the last backup
	// end, to split what backups read into new and deduplicated bytes.
	read, raw map[string]int64
}

// RepoStats is an open repository's counters; *repo.Repository implements it.
type RepoStats interface {
	Stats() repo.Stats
}

// durationBuckets span a ping (milliseconds) to a large backup (hours), in seconds.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60, 300, 900, 3600, 4 * 3600}

// New returns the metrics of a worker, with the Go and process collectors, the worker's
// identity and readiness, and the job metrics registered.
func New(o Options) *Metrics {
	m := &Metrics{
		reg:  prometheus.NewRegistry(),
		opts: o,
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brr_jobs_total",
			Help: "Job attempts this worker settled, by kind and status: succeeded, failed (for good at once), dead (out of attempts), cancelled (on request; not a failure), retrying (will be tried again; includes lease waits).",
		}, []string{"kind", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "brr_job_duration_seconds",
			Help:    "Time from the start of a job attempt on this worker to its end, by kind, for attempts that succeeded, failed, died or were cancelled.",
			Buckets: durationBuckets,
		}, []string{"kind"}),
		leaseWaits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brr_lease_waits_total",
			Help: "Jobs this worker put back because another worker held the lease of their repo or source (not failures), by kind.",
		}, []string{"kind"}),
		backupRead: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brr_backup_read_bytes_total",
			Help: "Bytes that backups on this worker read from their sources, by repo.",
		}, []string{"repo"}),
		backupStored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brr_backup_stored_bytes_total",
			Help: "Bytes that backups on this worker added to the repo (new data, compressed and encrypted), by repo.",
		}, []string{"repo"}),
		backupDedup: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brr_backup_deduplicated_bytes_total",
			Help: "Bytes that backups on this worker read and did not store again because the repo had them, by repo: bytes read less the new plaintext the repo stored meanwhile (an estimate when other writes to the repo overlap).",
		}, []string{"repo"}),
		verifyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brr_verify_failures_total",
			Help: "Verify jobs on this worker that found damage or failed for good, by repo.",
		}, []string{"repo"}),
		restoreBytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "brr_restore_bytes_total",
			Help: "Bytes of files that restores on this worker wrote, by the repo they read.",
		}, []string{"repo"}),
		repos: map[string]RepoStats{},
		read:  map[string]int64{},
		raw:   map[string]int64{},
	}
	stats := func() events.ConsumerStats {
		if o.Stats == nil {
			return events.ConsumerStats{}
		}
		return o.Stats()
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.jobs, m.duration, m.leaseWaits,
		m.backupRead, m.backupStored, m.backupDedup, m.verifyFailures, m.restoreBytes,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "brr_worker_info",
			Help:        "Always 1; its labels name the worker and its version.",
			ConstLabels: prometheus.Labels{"worker": o.Worker, "host": o.Host, "version": o.Version},
		}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "brr_worker_ready",
			Help: "1 while the worker is ready (/readyz answers 200), else 0.",
		}, func() float64 { return bool01(o.Ready != nil && o.Ready()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "brr_jobs_done_total",
			Help: "Jobs this worker finished successfully since it started.",
		}, func() float64 { return float64(stats().Done) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "brr_jobs_failed_total",
			Help: "Jobs that failed for good on this worker (bad request or permanent error) since it started.",
		}, func() float64 { return float64(stats().Failed) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "brr_jobs_dead_total",
			Help: "Jobs that ran out of attempts on this worker since it started.",
		}, func() float64 { return float64(stats().Dead) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "brr_jobs_cancelled_total",
			Help: "Jobs this worker ended on a cancel request (brr cancel), running or not yet run, since it started.",
		}, func() float64 { return float64(stats().Cancelled) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "brr_jobs_retried_total",
			Help: "Job attempts on this worker that ended in a transient error and will be retried.",
		}, func() float64 { return float64(stats().Retried) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "brr_jobs_in_flight",
			Help: "Jobs this worker holds now: received and not yet settled.",
		}, func() float64 { return float64(stats().InFlight) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "brr_jobs_running",
			Help: "Job handlers running on this worker now (at most its concurrency).",
		}, func() float64 { return float64(stats().Running) }),
	)
	return m
}

// Registry returns the registry, for collectors of other packages.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// kindLabel bounds the kind label to the known kinds.
func kindLabel(k brr.Kind) string {
	if k.Valid() {
		return string(k)
	}
	return "invalid"
}

// repoLabel bounds the repo label to the configured repos: a job may name any repo,
// and one that is not configured fails without ever being a repo here.
func (m *Metrics) repoLabel(name string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if name == "" {
		name = m.defaultRepo
	}
	if _, ok := m.repos[name]; ok {
		return name
	}
	return otherRepo
}

// JobSettled counts one settled job attempt; the consume loop calls it.
func (m *Metrics) JobSettled(o events.Settled) {
	kind := kindLabel(o.Kind)
	m.jobs.WithLabelValues(kind, string(o.Status)).Inc()
	if o.Snoozed {
		m.leaseWaits.WithLabelValues(kind).Inc()
	}
	if o.Status == brr.StatusRetrying {
		return
	}
	m.duration.WithLabelValues(kind).Observe(o.Duration.Seconds())
	res := o.Result
	switch {
	case o.Kind == brr.KindVerify && o.Status != brr.StatusSucceeded && o.Status != brr.StatusCancelled:
		name := o.Repo
		if res != nil && res.Verify != nil && res.Verify.Repo != "" {
			name = res.Verify.Repo
		}
		m.verifyFailures.WithLabelValues(m.repoLabel(name)).Inc()
	case o.Status != brr.StatusSucceeded || res == nil:
	case res.Backup != nil && res.Backup.DryRun:
		// A dry run stored nothing and read no content: it is no backup to count.
	case res.Backup != nil:
		m.backupDone(res.Backup)
	case res.Restore != nil:
		m.restoreBytes.WithLabelValues(m.repoLabel(res.Restore.Repo)).Add(float64(max(res.Restore.Bytes, 0)))
	}
}

// backupDone counts what a backup read and stored, and estimates what it deduplicated:
// what it read less the plaintext its repo gained since the last backup into it ended.
func (m *Metrics) backupDone(b *brr.BackupResult) {
	name := m.repoLabel(b.Repo)
	read := max(b.BytesRead, 0)
	m.backupRead.WithLabelValues(name).Add(float64(read))
	m.backupStored.WithLabelValues(name).Add(float64(max(b.BytesAdded, 0)))
	m.mu.Lock()
	r, ok := m.repos[name]
	var dedup int64
	if ok {
		raw := r.Stats().RawBytesAdded
		dedup = max(read-(raw-m.raw[name]), 0)
		m.raw[name] = raw
		m.read[name] += read
	}
	m.mu.Unlock()
	if ok {
		m.backupDedup.WithLabelValues(name).Add(float64(dedup))
	}
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// sortedNames returns the keys of m in order.
func sortedNames[V any](m map[string]V) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	slices.Sort(names)
	return names
}
