package events

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
)

// settles records what an Observer is told.
type settles struct {
	mu  sync.Mutex
	all []Settled
}

func (o *settles) JobSettled(out Settled) {
	o.mu.Lock()
	o.all = append(o.all, out)
	o.mu.Unlock()
}

func (o *settles) get() []Settled {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Settled(nil), o.all...)
}

func TestObserverSeesEverySettle(t *testing.T) {
	b := setup(t, Config{MaxDeliver: 2})
	b.h.fn = func(_ context.Context, job *brr.Job, attempt int, _ func(brr.Progress)) (*brr.Result, error) {
		switch job.ID {
		case "snoozed":
			if attempt == 1 {
				return nil, brr.Snooze(errors.New("lease held elsewhere"), 10*time.Millisecond)
			}
		case "bad":
			return nil, brr.Permanent(errors.New("no such repo"))
		case "flaky":
			return nil, errors.New("timeout")
		}
		return &brr.Result{Ping: &brr.PingResult{Worker: "w1"}}, nil
	}
	obs := &settles{}
	c := NewConsumer(b.js, b.db, b.h, NewOutbox(b.js, b.db, zerolog.Nop()), b.cfg, zerolog.Nop())
	c.Observe(obs)
	testkit.Go(t, "consumer", c.Run)
	for _, id := range []string{"ok", "snoozed", "bad", "flaky"} {
		publishJob(t, b.js, pingJob(id))
	}
	// ok: succeeded; snoozed: retrying (snoozed), then succeeded; bad: failed; flaky:
	// retrying, then dead on its second and last delivery.
	testkit.Eventually(t, 15*time.Second, "six outcomes", func() bool { return len(obs.get()) == 6 })
	type key struct {
		id      string
		status  brr.Status
		snoozed bool
	}
	seen := map[key]int{}
	for _, o := range obs.get() {
		if o.Kind != brr.KindPing || o.Pool != brr.DefaultPool || o.Duration < 0 {
			t.Errorf("outcome %+v: want a ping of pool default with a duration", o)
		}
		if (o.Status == brr.StatusSucceeded) != (o.Err == nil) || (o.Status == brr.StatusSucceeded) != (o.Result != nil) {
			t.Errorf("outcome %+v: a result exactly when it succeeded, an error otherwise", o)
		}
		id := "?"
		switch {
		case o.Snoozed:
			id = "snoozed"
		case o.Err != nil && o.Err.Error() == "no such repo":
			id = "bad"
		case o.Err != nil:
			id = "flaky"
		}
		seen[key{id, o.Status, o.Snoozed}]++
	}
	want := map[key]int{
		{"?", brr.StatusSucceeded, false}:     2, // ok, and snoozed on its second try
		{"snoozed", brr.StatusRetrying, true}: 1,
		{"bad", brr.StatusFailed, false}:      1,
		{"flaky", brr.StatusRetrying, false}:  1,
		{"flaky", brr.StatusDead, false}:      1,
	}
	for k, n := range want {
		if seen[k] != n {
			t.Errorf("outcomes %+v: %d, want %d (all: %+v)", k, seen[k], n, seen)
		}
	}
}
