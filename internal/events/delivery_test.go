package events

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// putResult writes e as job id's entry in BRR_RESULTS, as the worker that ran it does.
func putResult(t *testing.T, js jetstream.JetStream, e *brr.Event) {
	t.Helper()
	ctx := context.Background()
	kv, err := js.KeyValue(ctx, brr.Subjects{}.ResultsBucket())
	if err != nil {
		t.Fatal(err)
	}
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, e.JobID, data); err != nil {
		t.Fatal(err)
	}
}

// deliverOnce takes the next job of the pool's consumer and naks it, as a worker whose
// ack is lost leaves it: the next delivery is the second.
func deliverOnce(t *testing.T, js jetstream.JetStream, cfg Config) {
	t.Helper()
	ctx := context.Background()
	cons, err := js.CreateOrUpdateConsumer(ctx, cfg.Subjects.JobsStream(), consumerConfig(cfg.withDefaults(), brr.DefaultPool))
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := msg.Nak(); err != nil {
		t.Fatal(err)
	}
}

// presentPair is the bundle of worker w1 and the leases of w1 and of w2 (a second worker
// of the pool, with its config), once w1 sees w2's presence.
func presentPair(t *testing.T) (b *bundle, w1, w2 *Leases, w2cfg Config) {
	t.Helper()
	b = setup(t, Config{AckWait: time.Second, LeaseTTL: 3 * time.Second})
	ctx := context.Background()
	w2cfg = b.cfg
	w2cfg.Worker = "w2"
	w2, err := NewLeases(ctx, b.js, w2cfg)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Go(t, "w2 presence", w2.KeepPresence)
	w1, err = NewLeases(ctx, b.js, b.cfg)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "w2's presence", func() bool { _, _, ok := w1.Presence(ctx, "w2"); return ok })
	return b, w1, w2, w2cfg
}

// TestRedeliveredJobStillRunningElsewhere: a job's ack or InProgress is lost (a NATS
// restart, a stall longer than AckWait) while the worker that started it, w2, still runs
// it; the server delivers it again, to w1. With AckWait at 5 s this ran some jobs twice
// in the NATS restart fault test. Now w1 sees that BRR_RESULTS says w2 started it and that
// w2's process, the one that started it, is still there: it puts the job back instead of
// running it, and once w2's success is in BRR_RESULTS, acks it without running it. When
// the worker that started it is gone, the job runs at once.
func TestRedeliveredJobStillRunningElsewhere(t *testing.T) {
	b, w1, _, _ := presentPair(t)

	// Two jobs delivered once and not acked: w2 started the first and still runs it;
	// w3, which started the second, is gone.
	job, gone := pingJob("still-running"), pingJob("started-by-the-dead")
	for _, j := range []struct {
		job    *brr.Job
		worker string
	}{{job, "w2"}, {gone, "w3"}} {
		publishJob(t, b.js, j.job)
		deliverOnce(t, b.js, b.cfg)
		putResult(t, b.js, &brr.Event{V: brr.Version, ID: j.job.ID + "-started", Type: brr.EventJob, Status: brr.StatusStarted,
			Time: time.Now().UTC(), Worker: j.worker, JobID: j.job.ID, Kind: j.job.Kind, Pool: j.job.Pool, Attempt: 1})
	}
	c := NewConsumer(b.js, b.db, b.h, NewOutbox(b.js, b.db, zerolog.Nop()), b.cfg, zerolog.Nop())
	c.UsePresence(w1)
	testkit.Go(t, "consumer", c.Run)

	b.ev.wait(t, gone.ID, brr.StatusSucceeded)
	time.Sleep(2 * time.Second) // the first is delivered again and put back, more than once
	if n := b.h.count(job.ID); n != 0 {
		t.Fatalf("w1 ran the job %d times while w2 still ran it", n)
	}
	putResult(t, b.js, &brr.Event{V: brr.Version, ID: "e2", Type: brr.EventJob, Status: brr.StatusSucceeded, Time: time.Now().UTC(), Worker: "w2", JobID: job.ID, Kind: job.Kind, Pool: job.Pool, Attempt: 1})
	testkit.Eventually(t, 15*time.Second, "the job to be acked without running", func() bool { return c.Stats().Duplicates == 1 })
	if n := b.h.count(job.ID); n != 0 {
		t.Fatalf("w1 ran the job %d times after w2 succeeded", n)
	}
}

// TestRetriedJobRunsOnAnotherWorker: an attempt that failed on w2, which is still up but
// takes no more jobs, is not taken for one that still runs there: w1 runs the retry. (A
// failed attempt left its "started" entry in BRR_RESULTS, and every other worker put the
// job back for as long as w2 lived: two replications waited 10 minutes in a soak.)
func TestRetriedJobRunsOnAnotherWorker(t *testing.T) {
	b, w1, w2, w2cfg := presentPair(t)
	ctx := context.Background()

	failing := &testHandler{calls: map[string]int{}, fn: func(context.Context, *brr.Job, int, func(brr.Progress)) (*brr.Result, error) {
		return nil, errors.New("the replica is unreachable for now")
	}}
	db2 := openDB(t, b.js)
	c2 := NewConsumer(b.js, db2, failing, NewOutbox(b.js, db2, zerolog.Nop()), w2cfg, zerolog.Nop())
	c2.UsePresence(w2)
	ctx2, stop2 := context.WithCancel(ctx)
	done2 := make(chan error, 1)
	go func() { done2 <- c2.Run(ctx2) }()

	job := pingJob("failed-on-w2")
	publishJob(t, b.js, job)
	b.ev.wait(t, job.ID, brr.StatusRetrying)
	stop2() // w2 stays up (its presence is held) but takes no more jobs
	if err := <-done2; err != nil {
		t.Fatalf("w2's consumer: %v", err)
	}

	c1 := NewConsumer(b.js, b.db, b.h, NewOutbox(b.js, b.db, zerolog.Nop()), b.cfg, zerolog.Nop())
	c1.UsePresence(w1)
	testkit.Go(t, "w1's consumer", c1.Run)
	e := b.ev.wait(t, job.ID, brr.StatusSucceeded)
	if e.Worker != "w1" || b.h.count(job.ID) != 1 {
		t.Fatalf("job succeeded on %s after %d attempts on w1 (and %d on w2); want once on w1", e.Worker, b.h.count(job.ID), failing.count(job.ID))
	}
}
