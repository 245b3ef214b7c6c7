package health

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
)

// staleTurns is how many intervals a check's last turn may lie behind before the report
// says that no worker runs it.
const staleTurns = 3

// Monitor is one worker's view of the pool's health: the state of every check, which it
// follows in the BRR_HEALTH bucket, and the workers' heartbeats, which it follows in the
// event stream from WorkersWindow back. It runs no check itself, so every worker can
// answer /readyz, the HTTP API and the metrics with the same figures.
type Monitor struct {
	js  jetstream.JetStream
	cfg Config
	log zerolog.Logger

	mu      sync.Mutex
	workers map[string]brr.WorkerInfo
	checks  map[string]checkState // by check name
	loaded  bool                  // the bucket's initial values are in
	// local are results this worker found about itself that the pool's bucket cannot
	// carry (its own JetStream store is full), by check and subject; see SetLocal.
	local map[[2]string]brr.HealthCheck
}

// NewMonitor returns a Monitor; Run starts it following the pool.
func NewMonitor(js jetstream.JetStream, cfg Config, log zerolog.Logger) *Monitor {
	return &Monitor{
		js:      js,
		cfg:     cfg.withDefaults(),
		log:     log.With().Str("component", "health-monitor").Logger(),
		workers: map[string]brr.WorkerInfo{},
		checks:  map[string]checkState{},
		local:   map[[2]string]brr.HealthCheck{},
	}
}

// SetLocal adds res to every Report of this monitor, in place of an earlier local
// result of the same check and subject, until ClearLocal. It is for what the worker
// finds about itself when the pool's health cannot be shared: a full JetStream store
// takes the BRR_HEALTH bucket and the event stream with it, and this worker's /readyz,
// API and dashboard must still say so.
func (m *Monitor) SetLocal(res brr.HealthCheck) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.local[[2]string{res.Check, res.Subject}] = res
}

// ClearLocal removes the local result of check and subject, if any.
func (m *Monitor) ClearLocal(check, subject string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.local, [2]string{check, subject})
}

// Run follows the check states and the heartbeats until ctx is done; then it returns
// nil. It returns an error only when it cannot start following them.
func (m *Monitor) Run(ctx context.Context) error {
	kv, err := m.cfg.bucket(ctx, m.js)
	if err != nil {
		return err
	}
	watch, err := kv.Watch(ctx, stateKeys)
	if err != nil {
		return fmt.Errorf("watch %s: %w", m.cfg.Subjects.HealthBucket(), err)
	}
	defer func() { _ = watch.Stop() }()

	since := m.cfg.Now().Add(-brr.WorkersWindow(m.cfg.Interval))
	cons, err := m.js.OrderedConsumer(ctx, m.cfg.Subjects.EventsStream(), jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{m.cfg.Subjects.Event(&brr.Event{Type: brr.EventHealth, Status: brr.CheckWorker})},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
		// Not nats.go's default (no limit), which can leave the monitor deaf for good
		// after a SIGKILL of the node it was connected to: see orderedResetAttempts in
		// the root package's subscribe.go.
		MaxResetAttempts: 2,
	})
	if err != nil {
		return fmt.Errorf("follow heartbeats: %w", err)
	}
	cc, err := cons.Consume(func(msg jetstream.Msg) {
		if e, err := brr.DecodeEvent(msg.Data()); err == nil {
			m.Observe(e)
		}
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		m.log.Debug().Err(err).Msg("follow heartbeats")
	}))
	if err != nil {
		return fmt.Errorf("follow heartbeats: %w", err)
	}
	// Stop is not waited for: right after a reconnect the ordered consumer recreates its
	// server-side consumer under the lock Stop takes, which can last until JetStream
	// answers, and a worker shutting down must not wait for that.
	defer func() { go cc.Stop() }()

	for {
		select {
		case <-ctx.Done():
			return nil
		case entry, ok := <-watch.Updates():
			if !ok {
				return nil
			}
			m.apply(entry)
		}
	}
}

// apply takes in one update of the bucket; nil marks the end of the initial values.
func (m *Monitor) apply(entry jetstream.KeyValueEntry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if entry == nil {
		m.loaded = true
		return
	}
	name := strings.TrimPrefix(entry.Key(), "check.")
	if entry.Operation() != jetstream.KeyValuePut {
		delete(m.checks, name)
		return
	}
	var st checkState
	if err := json.Unmarshal(entry.Value(), &st); err != nil {
		m.log.Warn().Err(err).Str("key", entry.Key()).Msg("health state does not decode; ignoring it")
		return
	}
	m.checks[name] = st
}

// Observe takes in a health event: heartbeats update the worker list. Run calls it for
// each heartbeat; tests may call it directly.
func (m *Monitor) Observe(e *brr.Event) {
	if e.Type != brr.EventHealth || e.Heartbeat == nil || e.Heartbeat.ID == "" {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if cur, ok := m.workers[e.Heartbeat.ID]; !ok || e.Heartbeat.Time.After(cur.Time) {
		m.workers[e.Heartbeat.ID] = *e.Heartbeat
	}
}

// Workers returns the latest heartbeat of each worker seen within the WorkersWindow,
// sorted by id, those silent for more than three intervals marked Missing.
func (m *Monitor) Workers() []brr.WorkerInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	beats := make([]brr.WorkerInfo, 0, len(m.workers))
	for _, w := range m.workers {
		beats = append(beats, w)
	}
	out := brr.LatestWorkers(beats, m.cfg.Now())
	if len(out) < len(m.workers) {
		// Forget the workers that fell out of the window.
		keep := make(map[string]brr.WorkerInfo, len(out))
		for _, w := range out {
			keep[w.ID] = m.workers[w.ID]
		}
		m.workers = keep
	}
	return out
}

// Loaded reports whether the monitor has read the checks' state once, so that an empty
// report means that no check has run yet rather than that it does not know.
func (m *Monitor) Loaded() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loaded
}

// Report returns the pool's health: every check's last results, sorted by check and
// subject, the workers, and the worst status of the checks. A check whose last turn
// is more than three intervals old adds a warn result saying so: its results are
// out of date because no worker runs it.
func (m *Monitor) Report() brr.HealthReport {
	workers := m.Workers()
	now := m.cfg.Now()
	m.mu.Lock()
	names := make([]string, 0, len(m.checks))
	for name := range m.checks {
		names = append(names, name)
	}
	slices.Sort(names)
	r := brr.HealthReport{Status: brr.HealthOK, Checks: []brr.HealthCheck{}, Workers: workers, Time: now.UTC()}
	for _, name := range names {
		st := m.checks[name]
		r.Checks = append(r.Checks, st.Results...)
		if age := now.Sub(st.Tick); age > staleTurns*m.cfg.Interval {
			r.Checks = append(r.Checks, brr.HealthCheck{
				Check:  name,
				Status: brr.HealthWarn,
				Message: fmt.Sprintf("no worker has run the %s check since %s (%s ago): its results are out of date; "+
					"check that workers are running and see their logs for health check errors",
					name, st.Tick.UTC().Format(time.RFC3339), age.Round(time.Second)),
				Value: age.Seconds(),
				Time:  now.UTC(),
				Since: st.Tick.Add(staleTurns * m.cfg.Interval).UTC(),
			})
		}
	}
	for _, res := range m.local {
		r.Checks = append(r.Checks, res)
	}
	m.mu.Unlock()
	slices.SortStableFunc(r.Checks, func(a, b brr.HealthCheck) int {
		return cmp.Or(cmp.Compare(a.Check, b.Check), cmp.Compare(a.Subject, b.Subject))
	})
	for _, c := range r.Checks {
		r.Status = r.Status.Worse(c.Status)
	}
	return r
}

// Inventory returns the snapshot figures the snapshots check measured last, and
// whether it has measured any.
func (m *Monitor) Inventory() (Inventory, bool) {
	m.mu.Lock()
	st, ok := m.checks[SnapshotsCheckName]
	m.mu.Unlock()
	if !ok || len(st.Memo) == 0 {
		return Inventory{}, false
	}
	var inv Inventory
	if err := json.Unmarshal(st.Memo, &inv); err != nil {
		return Inventory{}, false
	}
	return inv, true
}
