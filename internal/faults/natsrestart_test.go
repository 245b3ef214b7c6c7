package faults_test

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestNATSRestartWithJobsQueued restarts a single nats-server (file store, same
// directory and port) twice: once with 1,000 ping jobs queued and no worker running, and
// once while two workers are working through them. Every job must succeed exactly once
// (one succeeded event, never started twice), the job stream must end empty, and a
// subscriber that was there all along must have seen every event the stream holds.
func TestNATSRestartWithJobsQueued(t *testing.T) {
	faultTest(t)
	const jobs = 1000
	opts := natstest.ListeningOptions(t, t.TempDir())
	ns := natstest.StartWith(t, opts)
	url := ns.ClientURL()
	restart := func(down time.Duration) {
		t.Helper()
		ns.Stop()
		time.Sleep(down)
		ns = natstest.StartWith(t, opts)
	}

	nc, c := testkit.Connect(t, url)
	ctx := testkit.Context(t, 5*time.Minute)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// The streams the workers make, made before any worker runs, to queue jobs into.
	if err := events.EnsureStreams(ctx, js, events.Config{}); err != nil {
		t.Fatal(err)
	}
	ids := make([]string, 0, jobs)
	futures := make([]*brr.PublishFuture, 0, jobs)
	for range jobs {
		f, err := c.PublishAsync(brr.PingJob{DelayMS: 30})
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		res, err := f.Result(ctx)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, res.ID)
	}

	restart(time.Second)
	if !testkit.WaitFor(30*time.Second, nc.IsConnected) {
		t.Fatal("the client did not reconnect after the first restart")
	}
	if n := jobsQueued(t, js); n != jobs {
		t.Fatalf("%d jobs in the stream after a restart, want %d", n, jobs)
	}

	live := newTally()
	if err := c.Subscribe(ctx, "brr.events.job.ping.>", live.add); err != nil {
		t.Fatal(err)
	}
	workers := []*testkit.Worker{bins.StartWorker(t, testkit.WorkerOptions{NATS: url}), bins.StartWorker(t, testkit.WorkerOptions{NATS: url})}

	// Mid-flow: the second restart, with jobs running, settling and queued.
	if !testkit.WaitFor(2*time.Minute, func() bool { return live.jobsWith(ids, "job.succeeded") >= jobs/4 }) {
		t.Fatalf("only %d of %d jobs succeeded before the second restart", live.jobsWith(ids, "job.succeeded"), jobs)
	}
	doneBefore := live.jobsWith(ids, "job.succeeded")
	restart(2 * time.Second)

	if !testkit.WaitFor(3*time.Minute, func() bool { return live.jobsWith(ids, "job.succeeded") == jobs }) {
		all := stored(t, ctx, c, "brr.events.job.ping.>")
		t.Fatalf("after the restarts %d of %d jobs succeeded (stream: %d; subscriber: %d)",
			live.jobsWith(ids, "job.succeeded"), jobs, all.jobsWith(ids, "job.succeeded"), live.jobsWith(ids, "job.succeeded"))
	}
	if !testkit.WaitFor(30*time.Second, func() bool { return jobsQueued(t, js) == 0 }) {
		t.Errorf("%d jobs left in the job stream after all succeeded", jobsQueued(t, js))
	}

	all := stored(t, ctx, c, "brr.events.job.ping.>")
	twice, noStarted := 0, 0
	for _, id := range ids {
		s, n := all.count(id, "job.started"), all.count(id, "job.succeeded")
		if n != 1 || s > 1 {
			twice++
			t.Errorf("job %s: %d started and %d succeeded events, want at most one and exactly one", id, s, n)

		}
		if s == 0 {
			noStarted++
		}
		for _, k := range []string{"job.failed", "job.dead", "job.retrying"} {
			if n := all.count(id, k); n > 0 {
				t.Errorf("job %s: %d %s events", id, n, k)
			}
		}
	}
	noDeadLetters(t, ctx, c)
	subscribedSawAll(t, live, all, ids)
	// A job whose ack the server lost at the restart comes back after AckWait; whichever
	// worker gets it acks it without running it again.
	lostAcks := alreadyProcessed(workers)
	nStored, storedSum := all.summary(ids)
	distinct, _ := live.summary(ids)
	again := live.againCount()
	t.Logf("jobs %d (queued across restart 1; %d had succeeded at restart 2), run twice %d; redeliveries of finished jobs not run again %d; "+
		"events stored %d (%s); started events lost in the outage %d; subscriber saw %d distinct, %d again",
		jobs, doneBefore, twice, lostAcks, nStored, storedSum, noStarted, distinct, again)
}

// jobsQueued returns the number of messages in BRR_JOBS: jobs not yet acked.
func jobsQueued(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	var n uint64
	retry(t, "stream info "+brr.Subjects{}.JobsStream(), func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, brr.Subjects{}.JobsStream())
		if err == nil {
			n = s.CachedInfo().State.Msgs
		}
		return err
	})
	return n
}
