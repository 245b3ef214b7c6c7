package faults_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestClusterNodeLost runs two workers against a 3-node cluster with R3 streams and
// shuts down the node that leads BRR_JOBS while ping jobs are published (50 a second) and
// run. A subscriber connected to that very node must resume on another and see every
// event; every job must succeed, none may run twice, and the publisher, which publishes
// again with the same job id when the cluster does not answer, must not make duplicates.
func TestClusterNodeLost(t *testing.T) {
	faultTest(t)
	const jobs = 400
	cl := natstest.StartCluster(t, 3)
	url := cl.URL()
	cfg := "streams: {replicas: 3}\njobs: {ack_wait: 3s}\n"
	workers := []*testkit.Worker{bins.StartWorker(t, testkit.WorkerOptions{NATS: url, Config: cfg}), bins.StartWorker(t, testkit.WorkerOptions{NATS: url, Config: cfg})}
	ctx := testkit.Context(t, 5*time.Minute)

	// The victim: the node that leads the job stream now.
	nc, _ := testkit.Connect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, brr.Subjects{}.JobsStream())
	if err != nil {
		t.Fatal(err)
	}
	info := stream.CachedInfo()
	if info.Config.Replicas != 3 || info.Cluster == nil {
		t.Fatalf("job stream has %d replicas (cluster %+v), want 3", info.Config.Replicas, info.Cluster)
	}
	victim := cl.Server(info.Cluster.Leader)
	if victim == nil {
		t.Fatalf("job stream leader %q is not a node of the cluster", info.Cluster.Leader)
	}
	var survivor *natstest.Server
	for _, s := range cl.Servers {
		if s != victim {
			survivor = s
		}
	}

	// The subscriber is on the victim; the publisher on another node.
	sub := connectFirst(t, victim.ClientURL(), url)
	live := newTally()
	if err := sub.Subscribe(ctx, "brr.events.job.ping.>", live.add); err != nil {
		t.Fatal(err)
	}
	pubc := connectFirst(t, survivor.ClientURL(), url)

	var (
		mu        sync.Mutex
		ids       []string
		republish int
		lastErr   error
	)
	published := make(chan struct{})
	go func() {
		defer close(published)
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for range jobs {
			<-tick.C
			id := brr.NewID()
			for {
				// A publish to a leader that is gone gets no answer: give up on it after
				// a while and publish again, with the same id.
				pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				_, err := pubc.Publish(pctx, brr.PingJob{DelayMS: 20}, brr.WithID(id))
				cancel()
				if err == nil {
					break
				}
				if ctx.Err() != nil {
					return
				}
				mu.Lock()
				republish++
				lastErr = err
				mu.Unlock()
				time.Sleep(200 * time.Millisecond)
			}
			mu.Lock()
			ids = append(ids, id)
			mu.Unlock()
		}
	}()
	if !testkit.WaitFor(time.Minute, func() bool { return live.jobsWith(snapshot(&mu, &ids), "job.succeeded") >= jobs/4 }) {
		t.Fatalf("only %d jobs succeeded before the node was to be lost", live.jobsWith(snapshot(&mu, &ids), "job.succeeded"))
	}
	atLoss := len(snapshot(&mu, &ids))
	victim.Stop()
	<-published
	if ctx.Err() != nil {
		t.Fatalf("publishing did not finish: %d of %d published, %d publishes repeated, the last failed with: %v", len(ids), jobs, republish, lastErr)
	}
	if len(ids) != jobs {
		t.Fatalf("published %d jobs, want %d", len(ids), jobs)
	}
	if !testkit.WaitFor(3*time.Minute, func() bool { return live.jobsWith(ids, "job.succeeded") == jobs }) {
		t.Fatalf("the subscriber saw %d of %d jobs succeed after the node was lost", live.jobsWith(ids, "job.succeeded"), jobs)
	}

	_, c := testkit.Connect(t, survivor.ClientURL())
	all := stored(t, ctx, c, "brr.events.job.ping.>")
	twice := 0
	for _, id := range ids {
		s, n := all.count(id, "job.started"), all.count(id, "job.succeeded")
		if n < 1 {
			t.Errorf("job %s: no succeeded event stored", id)
		}
		if s > 1 || n > 1 {
			twice++
			t.Errorf("job %s ran twice: %d started and %d succeeded events", id, s, n)
		}
		for _, k := range []string{"job.failed", "job.dead"} {
			if n := all.count(id, k); n > 0 {
				t.Errorf("job %s: %d %s events", id, n, k)
			}
		}
	}
	noDeadLetters(t, ctx, c)
	subscribedSawAll(t, live, all, ids)
	if n := jobsQueued(t, js); n != 0 {
		t.Errorf("%d jobs left in the job stream", n)
	}
	retry(t, "job stream after the node was lost", func() (err error) {
		stream, err = js.Stream(ctx, brr.Subjects{}.JobsStream())
		return err
	})
	lostAcks := alreadyProcessed(workers)
	nStored, storedSum := all.summary(ids)
	distinct, _ := live.summary(ids)
	again := live.againCount()
	t.Logf("jobs %d, run twice %d, redeliveries of finished jobs not run again %d; publishes repeated while the cluster failed over %d; "+
		"job stream leader %s lost after %d jobs were published, new leader %s; events stored %d (%s); subscriber (on the lost node) saw %d distinct, %d again",
		jobs, twice, lostAcks, republish, info.Cluster.Leader, atLoss, stream.CachedInfo().Cluster.Leader,
		nStored, storedSum, distinct, again)
}

// connectFirst returns a client connected to first, falling back to the servers of
// all (a comma-separated list) when first is gone.
func connectFirst(t *testing.T, first, all string) *brr.Client {
	t.Helper()
	_, c := testkit.Connect(t, first+","+all, nats.DontRandomize())
	return c
}

// snapshot returns a copy of *ids under mu.
func snapshot(mu *sync.Mutex, ids *[]string) []string {
	mu.Lock()
	defer mu.Unlock()
	return append([]string(nil), *ids...)
}
