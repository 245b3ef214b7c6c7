package health

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
)

// Check is one of the pool's health checks. It runs once per interval across the pool,
// on whichever worker takes that turn, with a context that ends after one interval.
type Check interface {
	// Name names the check's turns and its state. A check may report results under
	// other check names: the snapshots check reports rpo and replication_lag.
	Name() string
	// Run measures and returns a result per subject (a source, a target, a repo). An
	// error means the check could not measure at all; the runner reports it as warn.
	Run(ctx context.Context, t Tick) (Outcome, error)
}

// Sitter is a check that may sit a turn out: while SitOut says so, the runner does not
// take its turns, and another worker of the pool does.
type Sitter interface {
	SitOut() bool
}

// Tick is one turn of a check.
type Tick struct {
	// Time is the start of the interval this turn is for; Now is the clock's time when
	// the turn started, what ages are measured against.
	Time, Now time.Time
	// Memo is what the check kept from its last turn, on whichever worker that ran.
	Memo json.RawMessage
}

// Outcome is what a check found: its results, without Time and Since (the runner sets
// those), and what it keeps for its next turn.
type Outcome struct {
	Results []brr.HealthCheck
	Memo    json.RawMessage
}

// checkState is the value of a check's key in the BRR_HEALTH bucket.
type checkState struct {
	// Tick is the last turn taken, by Worker; Ran is when Results were measured.
	Tick    time.Time         `json:"tick"`
	Worker  string            `json:"worker"`
	Ran     time.Time         `json:"ran,omitzero"`
	Results []brr.HealthCheck `json:"results"`
	Memo    json.RawMessage   `json:"memo,omitempty"`
}

// stateKey is the key of check name's state in the BRR_HEALTH bucket.
func stateKey(name string) string { return "check." + name }

// stateKeys is the filter for every check's key.
const stateKeys = "check.*"

// Runner runs the pool's checks: at every interval it tries to take the turn of each
// check and runs those it got. Taking a turn is a compare-and-set of the check's key in
// the BRR_HEALTH bucket to the new interval: one worker of the pool succeeds per turn,
// the others see the key already there and skip it. The key also holds the check's last
// results, so that the next turn, on any worker, publishes a brr.events.health.<check>
// event exactly for the results whose status changed, and every result on a summary turn.
type Runner struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	cfg    Config
	checks []Check
	log    zerolog.Logger

	mu   sync.Mutex
	runs map[string]int64
}

// NewRunner returns a Runner of checks; the BRR_HEALTH bucket must exist
// (events.EnsureStreams). Check names must be distinct.
func NewRunner(ctx context.Context, js jetstream.JetStream, cfg Config, log zerolog.Logger, checks ...Check) (*Runner, error) {
	cfg = cfg.withDefaults()
	kv, err := cfg.bucket(ctx, js)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	for _, c := range checks {
		if seen[c.Name()] {
			return nil, fmt.Errorf("health check %q given twice", c.Name())
		}
		seen[c.Name()] = true
	}
	return &Runner{js: js, kv: kv, cfg: cfg, checks: checks, log: log.With().Str("component", "health").Logger(), runs: map[string]int64{}}, nil
}

// Runs returns how many turns of each check this runner took since it was made.
func (r *Runner) Runs() map[string]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make(map[string]int64, len(r.runs))
	for _, c := range r.checks {
		out[c.Name()] = r.runs[c.Name()]
	}
	return out
}

// Run tries the current turn at once, then each next one at the start of its interval,
// until ctx is done; then it returns nil.
func (r *Runner) Run(ctx context.Context) error {
	for {
		r.RunTick(ctx, r.cfg.Now())
		next := r.cfg.tick(r.cfg.Now()).Add(r.cfg.Interval)
		t := time.NewTimer(max(time.Until(next), 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// RunTick tries to take the turn of every check for the interval that now falls in, runs
// those it got at once, and returns when they are done. It returns the names of the
// checks it ran.
func (r *Runner) RunTick(ctx context.Context, now time.Time) []string {
	tick := r.cfg.tick(now)
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		ran []string
	)
	for _, c := range r.checks {
		if s, ok := c.(Sitter); ok && s.SitOut() {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			took, err := r.turn(ctx, c, tick, now)
			if err != nil {
				if ctx.Err() == nil {
					r.log.Warn().Err(err).Str("check", c.Name()).Msg("health check turn")
				}
				return
			}
			if took {
				mu.Lock()
				ran = append(ran, c.Name())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	slices.Sort(ran)
	return ran
}

// turn takes check c's turn for tick if no worker has, runs it, publishes what changed
// (everything on a summary turn) and stores the results. It reports whether it ran c.
func (r *Runner) turn(ctx context.Context, c Check, tick, now time.Time) (bool, error) {
	key := stateKey(c.Name())
	prev, rev, took, err := r.take(ctx, key, tick)
	if err != nil || !took {
		return false, err
	}
	r.mu.Lock()
	r.runs[c.Name()]++
	r.mu.Unlock()

	cctx, cancel := context.WithTimeout(ctx, r.cfg.Interval)
	out, err := c.Run(cctx, Tick{Time: tick, Now: now, Memo: prev.Memo})
	cancel()
	if err != nil {
		out = Outcome{
			Results: []brr.HealthCheck{{Check: c.Name(), Status: brr.HealthWarn,
				Message: fmt.Sprintf("the %s check could not run: %v; it runs again next interval", c.Name(), err)}},
			Memo: prev.Memo,
		}
	}
	results, changed := transitions(prev.Results, out.Results, now)
	if r.cfg.summary(tick) {
		changed = results
	}
	for _, res := range changed {
		if err := r.cfg.publish(ctx, r.js, r.event(res)); err != nil {
			// Keep the old state: the next turn finds the same change and publishes it.
			return true, fmt.Errorf("publish %s result of %q: %w", res.Check, res.Subject, err)
		}
	}
	next := checkState{Tick: tick, Worker: r.cfg.Worker, Ran: now.UTC(), Results: results, Memo: out.Memo}
	data, err := json.Marshal(next)
	if err != nil {
		return true, fmt.Errorf("encode state of check %s: %w", c.Name(), err)
	}
	if _, err := r.kv.Update(ctx, key, data, rev); err != nil {
		if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			// The check took longer than an interval and another worker took the next
			// turn; its results are newer than these.
			return true, nil
		}
		return true, fmt.Errorf("store state of check %s: %w", c.Name(), err)
	}
	return true, nil
}

// take tries to move key to tick. It succeeds when the key is absent or holds an older
// tick, and nobody else moved it in between; it returns the state before, and the
// revision that the final write must update.
func (r *Runner) take(ctx context.Context, key string, tick time.Time) (checkState, uint64, bool, error) {
	var prev checkState
	entry, err := r.kv.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
		data, err := json.Marshal(checkState{Tick: tick, Worker: r.cfg.Worker})
		if err != nil {
			return prev, 0, false, err
		}
		rev, err := r.kv.Create(ctx, key, data)
		if errors.Is(err, jetstream.ErrKeyExists) {
			return prev, 0, false, nil
		}
		if err != nil {
			return prev, 0, false, fmt.Errorf("take turn %s: %w", key, err)
		}
		return prev, rev, true, nil
	case err != nil:
		return prev, 0, false, fmt.Errorf("read %s: %w", key, err)
	}
	if err := json.Unmarshal(entry.Value(), &prev); err != nil {
		// A value this code cannot read (a newer worker's?) is overwritten, not obeyed.
		r.log.Warn().Err(err).Str("key", key).Msg("health state does not decode; starting it over")
		prev = checkState{}
	}
	if !prev.Tick.Before(tick) {
		return prev, 0, false, nil
	}
	taken := prev
	taken.Tick, taken.Worker = tick, r.cfg.Worker
	data, err := json.Marshal(taken)
	if err != nil {
		return prev, 0, false, err
	}
	rev, err := r.kv.Update(ctx, key, data, entry.Revision())
	if errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return prev, 0, false, nil
	}
	if err != nil {
		return prev, 0, false, fmt.Errorf("take turn %s: %w", key, err)
	}
	return prev, rev, true, nil
}

// resultKey identifies a result across turns.
func resultKey(h brr.HealthCheck) string { return h.Check + "\x00" + h.Subject }

// transitions stamps results with now and with Since: carried over from the previous
// result of the same check and subject when the status is the same, now when it is new
// or changed. It returns them sorted by check and subject, and those that changed.
func transitions(prev, results []brr.HealthCheck, now time.Time) (all, changed []brr.HealthCheck) {
	before := make(map[string]brr.HealthCheck, len(prev))
	for _, p := range prev {
		before[resultKey(p)] = p
	}
	all = make([]brr.HealthCheck, 0, len(results))
	for _, res := range results {
		res.Time = now.UTC()
		if p, ok := before[resultKey(res)]; ok && p.Status == res.Status && !p.Since.IsZero() {
			res.Since = p.Since
		} else {
			res.Since = res.Time
			changed = append(changed, res)
		}
		all = append(all, res)
	}
	order := func(a, b brr.HealthCheck) int {
		return cmp.Or(cmp.Compare(a.Check, b.Check), cmp.Compare(a.Subject, b.Subject))
	}
	slices.SortFunc(all, order)
	slices.SortFunc(changed, order)
	return all, changed
}

// event is the brr.events.health.<check> event of res, with the source or repo it is
// about in the fields subscribers filter on.
func (r *Runner) event(res brr.HealthCheck) *brr.Event {
	e := r.cfg.newEvent(res.Check, res.Time)
	switch res.Check {
	case brr.CheckRPO:
		e.Source = res.Subject
	case brr.CheckRepository:
		e.Repo = res.Subject
	case brr.CheckReplicationLag:
		if _, to, ok := cutArrow(res.Subject); ok {
			e.Repo = to
		}
	}
	e.Check = &res
	return e
}
