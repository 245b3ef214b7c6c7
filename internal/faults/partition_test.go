package faults_test

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestWorkerCutOffNATS cuts a worker off its NATS server for 10 s (a TCP proxy between
// them closes every connection and refuses new ones) while it runs jobs, and while more
// are published. The jobs it was running finish during the cut, their events wait in its
// outbox; when the network heals it reconnects, the outbox flushes, and the queued jobs
// run. Every job must succeed once, with every event of its end stored exactly once.
func TestWorkerCutOffNATS(t *testing.T) {
	faultTest(t)
	ns := natstest.StartListening(t)
	p := startProxy(t, ns.Addr().String())
	w := bins.StartWorker(t, testkit.WorkerOptions{NATS: "nats://" + p.addr})
	_, c := testkit.Connect(t, ns.ClientURL()) // the client is not cut off
	ctx := testkit.Context(t, 3*time.Minute)
	live := newTally()
	if err := c.Subscribe(ctx, "brr.events.>", live.add); err != nil {
		t.Fatal(err)
	}

	// Before the cut: four pings that outlast it by a little and a backup, all started.
	src := t.TempDir()
	srcBytes := testkit.WriteTree(t, src, testkit.Tree{Seed: 7, Small: 20, Sizes: []int{2 << 20, 1 << 20}})
	var ids []string
	publish := func(args brr.JobArgs) {
		t.Helper()
		pub, err := c.Publish(ctx, args)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, pub.ID)
	}
	for range 3 {
		publish(brr.PingJob{DelayMS: 4000})
	}
	publish(brr.BackupJob{Path: src})
	if !testkit.WaitFor(time.Minute, func() bool { return live.jobsWith(ids, "job.started") == len(ids) }) {
		t.Fatalf("only %d of %d jobs started before the cut", live.jobsWith(ids, "job.started"), len(ids))
	}
	before := len(ids)

	cutAt := time.Now()
	p.cut()
	// While cut off: 20 more jobs are queued for the worker.
	for range 20 {
		publish(brr.PingJob{DelayMS: 50})
	}
	time.Sleep(10*time.Second - time.Since(cutAt))
	if n := live.jobsWith(ids[before:], "job.started"); n > 0 {
		t.Errorf("%d jobs started while the only worker was cut off", n)
	}
	healAt := time.Now()
	p.heal()

	for i, id := range ids {
		ev, err := c.Wait(ctx, id, nil)
		if err != nil || ev.Status != brr.StatusSucceeded {
			t.Fatalf("job %d (%s) after the cut: %v %+v", i, id, err, ev)
		}
	}
	all := newTally()
	duringCut := 0
	for _, e := range storedEvents(t, ctx, c, "brr.events.>") {
		all.add(e)
		if slices.Contains(ids, e.JobID) && e.Time.After(cutAt) && e.Time.Before(healAt) {
			duringCut++
		}
	}
	for i, id := range ids {
		if n := all.count(id, "job.succeeded"); n != 1 {
			t.Errorf("job %d (%s): %d succeeded events, want 1", i, id, n)
		}
		for _, k := range []string{"job.failed", "job.dead"} {
			if n := all.count(id, k); n > 0 {
				t.Errorf("job %d (%s): %d %s events", i, id, n, k)
			}
		}
	}
	backup := ids[before-1]
	if n := all.count(backup, "snapshot.committed"); n != 1 {
		t.Errorf("backup %s: %d snapshot.committed events, want 1", backup, n)
	}
	noDeadLetters(t, ctx, c)
	subscribedSawAll(t, live, all, ids)
	if !strings.Contains(w.Logs(), "reconnected to nats") {
		t.Errorf("the worker never logged its reconnect")
	}
	if duringCut == 0 {
		t.Errorf("no event was made during the cut: the cut tested nothing")
	}
	nStored, storedSum := all.summary(ids)
	t.Logf("jobs %d (%d running at the cut, %d queued during it); events stored %d (%s), %d of them made while cut off and published after; "+
		"backup %.1f MiB; cut %s",
		len(ids), before, len(ids)-before, nStored, storedSum, duringCut, float64(srcBytes)/(1<<20), healAt.Sub(cutAt).Round(100*time.Millisecond))
}
