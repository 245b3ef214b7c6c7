package e2e_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// tickRuns reads the ping jobs fired by schedule "tick" from the event stream: how many
// started and succeeded events each job id has, and which worker ran it. Only events made
// at or after since count.
func tickRuns(t *testing.T, ctx context.Context, c *brr.Client, since time.Time) (started, succeeded map[string]int, workers map[string]string) {
	t.Helper()
	started, succeeded, workers = map[string]int{}, map[string]int{}, map[string]string{}
	evs, err := c.Events(ctx, "brr.events.job.ping.>", time.Time{}, 0)
	if err != nil {
		t.Fatalf("read events: %v", err)
	}
	for _, e := range evs {
		if !strings.HasPrefix(e.JobID, "s-tick-") || e.Time.Before(since) {
			continue
		}
		switch e.Status {
		case brr.StatusStarted:
			started[e.JobID]++
		case brr.StatusSucceeded:
			succeeded[e.JobID]++
			workers[e.JobID] = e.Worker
		}
	}
	return started, succeeded, workers
}

// waitTicks waits until at least n fired jobs have succeeded since since.
func waitTicks(t *testing.T, ctx context.Context, c *brr.Client, since time.Time, n int) {
	t.Helper()
	for {
		if _, ok, _ := tickRuns(t, ctx, c, since); len(ok) >= n {
			return
		}
		select {
		case <-ctx.Done():
			_, ok, _ := tickRuns(t, context.Background(), c, since)
			t.Fatalf("%d fired jobs succeeded since %s, want %d", len(ok), since.Format(time.TimeOnly), n)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// jobStreamState is the job stream's message count and last sequence, and the number of
// jobs the workers of pool default hold unacknowledged.
func jobStreamState(t *testing.T, ctx context.Context, nc *nats.Conn) (msgs, lastSeq uint64, pending int) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := js.Stream(ctx, "BRR_JOBS")
	if err != nil {
		t.Fatalf("stream BRR_JOBS: %v", err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatalf("stream BRR_JOBS info: %v", err)
	}
	cons, err := st.Consumer(ctx, "workers-default")
	if err != nil {
		t.Fatalf("consumer workers-default: %v", err)
	}
	ci, err := cons.Info(ctx)
	if err != nil {
		t.Fatalf("consumer info: %v", err)
	}
	return info.State.Msgs, info.State.LastSeq, ci.NumAckPending
}

// TestScheduleFiresOncePerTick runs three workers, the first with the embedded server,
// and a schedule that fires a ping every second. Every tick runs exactly once in all,
// under an id of its own; the schedule survives restarting every worker (the server
// included); `brr schedule rm` stops it.
func TestScheduleFiresOncePerTick(t *testing.T) {
	// The health canary's ping jobs would take sequence numbers of the job stream, which
	// this test maps to ticks: no canary here.
	const noCanary = "health: {canary: false}\n"
	w1 := bins.StartWorker(t, testkit.WorkerOptions{Config: noCanary})
	w2 := bins.StartWorker(t, testkit.WorkerOptions{NATS: w1.NATSURL, Config: noCanary})
	w3 := bins.StartWorker(t, testkit.WorkerOptions{NATS: w1.NATSURL, Config: noCanary})
	_, c := testkit.Connect(t, w1.NATSURL)
	ctx := testkit.Context(t, 3*time.Minute)

	if _, err := c.AddSchedule(ctx, "tick", "@every 1s", "", brr.PingJob{}); err != nil {
		t.Fatalf("AddSchedule: %v", err)
	}
	stdout, stderr, code := bins.RunCLI(t, nil, "--nats", w1.NATSURL, "schedule", "ls")
	if code != 0 || !strings.Contains(stdout, "tick") || !strings.Contains(stdout, "brr.jobs.default.ping") {
		t.Fatalf("brr schedule ls: exit %d\n%s\n%s", code, stdout, stderr)
	}
	waitTicks(t, ctx, c, time.Time{}, 5)

	// Restart every worker, the one with the server last; the schedule is in the server's
	// store under w1's data dir and fires again once it is back.
	for _, w := range []*testkit.Worker{w3, w2, w1} {
		if code := w.Stop(30 * time.Second); code != 0 {
			t.Fatalf("worker exit code %d after SIGTERM\n%s", code, w.Logs())
		}
	}
	restarted := time.Now()
	w1 = bins.StartWorker(t, testkit.WorkerOptions{DataDir: w1.DataDir, Config: noCanary})
	bins.StartWorker(t, testkit.WorkerOptions{NATS: w1.NATSURL, DataDir: w2.DataDir, Config: noCanary})
	bins.StartWorker(t, testkit.WorkerOptions{NATS: w1.NATSURL, DataDir: w3.DataDir, Config: noCanary})
	nc, c := testkit.Connect(t, w1.NATSURL)
	waitTicks(t, ctx, c, restarted, 3)

	stdout, stderr, code = bins.RunCLI(t, nil, "--nats", w1.NATSURL, "schedule", "rm", "tick")
	if code != 0 || stdout != "schedule tick removed\n" {
		t.Fatalf("brr schedule rm: exit %d\n%s\n%s", code, stdout, stderr)
	}
	// Let the queue drain; then nothing new may come.
	var last uint64
	for {
		msgs, seq, pending := jobStreamState(t, ctx, nc)
		if msgs == 0 && pending == 0 {
			last = seq
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("job stream still holds %d messages, %d unacknowledged", msgs, pending)
		case <-time.After(200 * time.Millisecond):
		}
	}
	time.Sleep(2500 * time.Millisecond)
	if _, seq, _ := jobStreamState(t, ctx, nc); seq != last {
		t.Fatalf("the job stream grew from sequence %d to %d after brr schedule rm", last, seq)
	}
	if stdout, _, code := bins.RunCLI(t, nil, "--nats", w1.NATSURL, "schedule", "ls", "--json"); code != 0 || stdout != "" {
		t.Fatalf("brr schedule ls after rm: exit %d, %q", code, stdout)
	}

	// The job stream held the schedule (sequence 1) and one fired copy per tick after it:
	// every one of those ticks must have run once, under the id s-tick-<its sequence>.
	want := map[string]bool{}
	for seq := uint64(2); seq <= last; seq++ {
		want[fmt.Sprintf("s-tick-%d", seq)] = true
	}
	var started, succeeded map[string]int
	var ranBy map[string]string
	for {
		started, succeeded, ranBy = tickRuns(t, ctx, c, time.Time{})
		if len(succeeded) >= len(want) {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d of %d ticks have a succeeded event", len(succeeded), len(want))
		case <-time.After(200 * time.Millisecond):
		}
	}
	if len(succeeded) != len(want) {
		t.Errorf("%d distinct fired jobs succeeded, %d ticks fired", len(succeeded), len(want))
	}
	for id := range want {
		if succeeded[id] != 1 || started[id] != 1 {
			t.Errorf("tick %s: started %d times, succeeded %d times; want once each", id, started[id], succeeded[id])
		}
	}
	for id := range succeeded {
		if !want[id] {
			t.Errorf("job %s ran, but no tick has that id", id)
		}
	}
	perWorker := map[string]int{}
	for _, w := range ranBy {
		perWorker[w]++
	}
	_, after, _ := tickRuns(t, ctx, c, restarted)
	t.Logf("%d ticks (%d after the restart), jobs per worker: %v", len(want), len(after), perWorker)
}
