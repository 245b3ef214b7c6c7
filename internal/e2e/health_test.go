package e2e_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestHealthChecksRunOncePerIntervalAcrossThreeWorkers runs three worker processes on one
// NATS with a 1s health interval and a summary on every turn, so that every turn of the
// dlq check publishes one event: each interval must have exactly one, whichever worker
// ran it. `brr workers` lists the three, live.
func TestHealthChecksRunOncePerIntervalAcrossThreeWorkers(t *testing.T) {
	ns := natstest.StartListening(t)
	url := ns.ClientURL()
	cfg := "health: {interval: 1s, summary_every: 1, canary: false}\n"
	for range 3 {
		bins.StartWorker(t, testkit.WorkerOptions{NATS: url, Config: cfg})
	}
	// Count the turns that begin once all three run.
	from := time.Now().Truncate(time.Second).Add(time.Second)
	time.Sleep(time.Until(from.Add(5500 * time.Millisecond)))
	_, c := testkit.Connect(t, url)
	ctx := testkit.Context(t, 30*time.Second)

	evs, err := c.Events(ctx, "brr.events.health.dlq", from, 0)
	if err != nil {
		t.Fatalf("read dlq health events: %v", err)
	}
	perTurn := map[time.Time][]string{}
	for _, e := range evs {
		if e.Check == nil || e.Check.Time.Before(from) {
			continue
		}
		turn := e.Check.Time.Truncate(time.Second)
		perTurn[turn] = append(perTurn[turn], e.Worker)
	}
	if len(perTurn) < 4 {
		t.Fatalf("%d turns of the dlq check in 5.5s, want at least 4: %v", len(perTurn), perTurn)
	}
	runners := map[string]bool{}
	for turn, workers := range perTurn {
		if len(workers) != 1 {
			t.Errorf("turn %s ran on %d workers (%v), want exactly one", turn.Format(time.TimeOnly), len(workers), workers)
		}
		runners[workers[0]] = true
	}
	t.Logf("%d turns, run by %d of the 3 workers", len(perTurn), len(runners))

	stdout, stderr, code := bins.RunCLI(t, nil, "workers", "--json", "--nats", url)
	if code != 0 {
		t.Fatalf("brr workers: exit %d: %s", code, stderr)
	}
	var live int
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		var w brr.WorkerInfo
		if err := json.Unmarshal([]byte(line), &w); err != nil {
			t.Fatalf("brr workers --json line %q: %v", line, err)
		}
		if !w.Missing && w.IntervalSeconds == 1 {
			live++
		}
	}
	if live != 3 {
		t.Fatalf("brr workers lists %d live workers, want 3:\n%s", live, stdout)
	}
}
