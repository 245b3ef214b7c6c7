package events

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

func TestBackoff(t *testing.T) {
	const s = time.Second
	tests := []struct {
		n    int
		r    float64
		want time.Duration
	}{
		{1, 0.5, 1 * s},
		{2, 0.5, 2 * s},
		{3, 0.5, 4 * s},
		{9, 0.5, 256 * s},
		{10, 0.5, 5 * time.Minute}, // 512s capped at 300s
		{1000, 0.5, 5 * time.Minute},
		{0, 0.5, 1 * s},
		{1, 0, 800 * time.Millisecond},  // -20%
		{1, 1, 1200 * time.Millisecond}, // +20% (r approaches 1)
		{10, 0, 4 * time.Minute},
		{4, 0.25, 7200 * time.Millisecond}, // 8s -10%
	}
	for _, tt := range tests {
		if got := backoff(tt.n, s, 5*time.Minute, tt.r); got != tt.want {
			t.Errorf("backoff(%d, r=%v) = %v, want %v", tt.n, tt.r, got, tt.want)
		}
	}
}

// TestReplaceable is the rule noteRetrying and endAttempt share for a BRR_RESULTS entry:
// this worker replaces its own attempts' entries and another worker's retrying one, never
// a final result, another worker's running attempt, or an entry it cannot read.
func TestReplaceable(t *testing.T) {
	const me, other = "w1", "w2"
	entry := func(status brr.Status, worker string) []byte {
		data, err := json.Marshal(brr.Event{V: brr.Version, ID: "e", Type: "job", Status: status, Worker: worker, JobID: "j"})
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	tests := []struct {
		name  string
		value []byte
		want  bool
	}{
		{"our started attempt", entry(brr.StatusStarted, me), true},
		{"another worker's started attempt", entry(brr.StatusStarted, other), false},
		{"our retrying", entry(brr.StatusRetrying, me), true},
		{"another worker's retrying", entry(brr.StatusRetrying, other), true},
		{"retrying with no worker", entry(brr.StatusRetrying, ""), true},
		{"our success", entry(brr.StatusSucceeded, me), false},
		{"another worker's success", entry(brr.StatusSucceeded, other), false},
		{"failed", entry(brr.StatusFailed, other), false},
		{"dead", entry(brr.StatusDead, me), false},
		{"cancelled", entry(brr.StatusCancelled, other), false},
		{"not JSON", []byte("{"), false},
		{"unknown version", []byte(`{"v":99,"status":"retrying","worker":"w1"}`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			last, ok := replaceable(tt.value, me)
			if ok != tt.want {
				t.Fatalf("replaceable = %v, want %v", ok, tt.want)
			}
			if ok && last == nil {
				t.Fatal("replaceable = true with no event")
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.Concurrency != 4 || c.AckWait != 5*time.Second || c.MaxDeliver != 10 || c.BackoffBase != time.Second ||
		c.BackoffMax != 5*time.Minute || c.DrainTimeout != 30*time.Second || c.StreamReplicas != 1 ||
		c.EventsMaxAge != 7*24*time.Hour || c.DLQMaxAge != 30*24*time.Hour || c.DedupWindow != 10*time.Minute ||
		c.LeaseTTL != 5*time.Second || c.ResultsTTL != 7*24*time.Hour || len(c.Pools) != 1 || c.Pools[0] != "default" {
		t.Errorf("defaults = %+v", c)
	}
	c = Config{Concurrency: 7, Pools: []string{"a", "b"}, BackoffBase: time.Minute, BackoffMax: time.Second}.withDefaults()
	if c.Concurrency != 7 || len(c.Pools) != 2 || c.BackoffMax != time.Minute {
		t.Errorf("withDefaults changed set fields: %+v", c)
	}
}

func TestTransientErrorThenSuccess(t *testing.T) {
	b := setup(t, Config{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		if attempt == 1 {
			return nil, errors.New("repository busy")
		}
		return &brr.Result{Ping: &brr.PingResult{Worker: "w"}}, nil
	}
	c := b.start(t, b.db)
	publishJob(t, b.js, pingJob("job-retry"))

	e := b.ev.wait(t, "job-retry", brr.StatusSucceeded)
	if got, want := e.Attempt, 2; got != want {
		t.Errorf("succeeded attempt = %d, want %d", got, want)
	}
	r := b.ev.wait(t, "job-retry", brr.StatusRetrying)
	if r.Attempt != 1 || r.RetryInMS <= 0 || !strings.Contains(r.Error, "repository busy") {
		t.Errorf("retrying event = attempt %d, retry in %d ms, error %q", r.Attempt, r.RetryInMS, r.Error)
	}
	if got := b.h.count("job-retry"); got != 2 {
		t.Errorf("handler ran %d times, want 2", got)
	}
	waitJobsEmpty(t, b.js)
	if s := c.Stats(); s.Retried != 1 || s.Done != 1 {
		t.Errorf("Stats = %+v, want 1 retried, 1 done", s)
	}
}

func TestPanicIsAFailedAttempt(t *testing.T) {
	b := setup(t, Config{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		if attempt == 1 {
			panic("nil map write")
		}
		return &brr.Result{}, nil
	}
	b.start(t, b.db)
	publishJob(t, b.js, pingJob("job-panic"))
	b.ev.wait(t, "job-panic", brr.StatusSucceeded)
	if r := b.ev.wait(t, "job-panic", brr.StatusRetrying); !strings.Contains(r.Error, "nil map write") {
		t.Errorf("retrying event error = %q, want the panic text", r.Error)
	}
}

func TestSnoozeIsNotAFailure(t *testing.T) {
	b := setup(t, Config{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		if attempt == 1 {
			return nil, brr.Snooze(errors.New("source /srv is leased by worker w2"), 20*time.Millisecond)
		}
		return &brr.Result{}, nil
	}
	c := b.start(t, b.db)
	publishJob(t, b.js, pingJob("job-snooze"))
	b.ev.wait(t, "job-snooze", brr.StatusSucceeded)
	if r := b.ev.wait(t, "job-snooze", brr.StatusRetrying); r.RetryInMS != 20 {
		t.Errorf("retrying event retry_in_ms = %d, want 20", r.RetryInMS)
	}
	if s := c.Stats(); s.Snoozed != 1 || s.Retried != 0 || s.Failed != 0 {
		t.Errorf("Stats = %+v, want 1 snoozed and no failure", s)
	}
}

// TestSnoozesDoNotUseUpDeliveries: a job that cannot start yet (its source is leased by a
// long backup elsewhere) is snoozed again and again. Every snooze used to be a NAK, which
// JetStream counts as a delivery: with max_deliver 3 the job went dead after three
// snoozes without ever failing. Now it comes back from a schedule as a fresh message
// that carries its attempts, so it runs once the lease is free, as attempt 1, and a
// real failure after the snoozes is attempt 1 too.
func TestSnoozesDoNotUseUpDeliveries(t *testing.T) {
	b := setup(t, Config{MaxDeliver: 3})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		switch {
		case attempt <= 5:
			return nil, brr.Snooze(errors.New("source /srv is leased by worker w2"), 20*time.Millisecond)
		case attempt == 6:
			return nil, errors.New("a transient error after the snoozes")
		}
		return &brr.Result{}, nil
	}
	c := b.start(t, b.db)
	publishJob(t, b.js, pingJob("job-snoozed-long"))
	ok := b.ev.wait(t, "job-snoozed-long", brr.StatusSucceeded)
	if ok.Attempt != 2 {
		t.Errorf("succeeded on attempt %d, want 2 (one failure; snoozes are not attempts)", ok.Attempt)
	}
	if got := b.h.count("job-snoozed-long"); got != 7 {
		t.Errorf("handler ran %d times, want 7", got)
	}
	if s := c.Stats(); s.Snoozed != 5 || s.Retried != 1 || s.Dead != 0 || s.Failed != 0 {
		t.Errorf("Stats = %+v, want 5 snoozed, 1 retried, none dead", s)
	}
}
