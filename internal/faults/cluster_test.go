package faults_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// stallTarget is what issue 11 asks of an R3 cluster that loses the leader of the job
// stream: no gap longer than this between two job completions.
const stallTarget = 5 * time.Second

// After a SIGKILL, nats-server v2.15.2 elects a new leader of a Raft group only when a
// follower's election timer runs out, 4 to 9 s (at random, hard-coded: minElectionTimeout
// and maxElectionTimeout in server/raft.go) after the last heartbeat it heard; until then
// nothing can be published to the stream. The job stream and its durable consumer are two
// groups with timers of their own, so their elections can land seconds apart, and no job
// is delivered until both have a leader. So the test holds brr to what it controls:
// from the later of the two elections on, jobs complete again within electedLimit, and
// the whole stall stays under stallLimit (the longest election and that).
const (
	electedLimit = 2 * time.Second
	maxElection  = 9 * time.Second
	stallLimit   = maxElection + electedLimit
)

// TestClusterNodeLost runs two workers against a 3-node cluster of nats-server processes
// with R3 streams and kills the node that leads BRR_JOBS with SIGKILL (no step-down, no
// leadership transfer: the others notice only when its heartbeats stop) while ping jobs
// are published (50 a second) and run. It measures the stall, the longest gap between
// two consecutive job completions from the last one before the kill on, and the part of
// it that came after the job stream and its consumer had leaders again (from the nodes'
// logs); it fails when that part passes electedLimit, and logs whether the stall met the
// issue's 5 s target, which the election alone often does not allow. A subscriber
// connected to that very node must resume on another and see every event; every job must succeed, none may run twice, and the publisher, which publishes
// again with the same job id when the cluster does not answer, must not make duplicates.
func TestClusterNodeLost(t *testing.T) {
	faultTest(t)
	const jobs = 400
	cl := natstest.StartProcessCluster(t, bins.NATSServer, 3)
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
	victim := cl.Node(info.Cluster.Leader)
	if victim == nil {
		t.Fatalf("job stream leader %q is not a node of the cluster", info.Cluster.Leader)
	}
	var survivor *natstest.Node
	for _, nd := range cl.Nodes {
		if nd != victim {
			survivor = nd
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
				// It waits 1 s, not more, so that what the test measures is the
				// cluster's stall rather than the publisher's patience.
				pctx, cancel := context.WithTimeout(ctx, time.Second)
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
				time.Sleep(100 * time.Millisecond)
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
	victim.Kill()
	killed := time.Now()
	<-published
	if ctx.Err() != nil {
		t.Fatalf("publishing did not finish: %d of %d published, %d publishes repeated, the last failed with: %v", len(ids), jobs, republish, lastErr)
	}
	if len(ids) != jobs {
		t.Fatalf("published %d jobs, want %d", len(ids), jobs)
	}
	if !testkit.WaitFor(3*time.Minute, func() bool { return live.jobsWith(ids, "job.succeeded") == jobs }) {
		t.Fatalf("the subscriber saw %d of %d jobs succeed after the node was lost; JetStream now:\n%s",
			live.jobsWith(ids, "job.succeeded"), jobs, testkit.JetStreamReport(ctx, js))
	}

	_, c := testkit.Connect(t, survivor.ClientURL())
	events := storedEvents(t, ctx, c, "brr.events.job.ping.>")
	all := newTally()
	for _, e := range events {
		all.add(e)
	}
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
	gap, from, to := stall(completions(events, ids), killed)
	// Jobs flow again once both Raft groups the victim may have led are back: the job
	// stream's and its consumer's, each elected on its own random timer, seconds apart.
	jobsStream := brr.Subjects{}.JobsStream()
	streamAt := electedAfter(cl, victim, killed, "new stream leader for '$G > "+jobsStream+"'")
	consumerAt := electedAfter(cl, victim, killed, "new consumer leader for '$G > "+jobsStream+" > "+brr.Subjects{}.Consumer("default")+"'")
	elected := streamAt
	if consumerAt.After(elected) {
		elected = consumerAt
	}
	t.Logf("jobs %d, run twice %d, redeliveries of finished jobs not run again %d; publishes repeated while the cluster failed over %d; "+
		"job stream leader %s SIGKILLed after %d jobs were published, new leader %s; stall %s (no job completed from %s to %s; kill at %s); "+
		"events stored %d (%s); subscriber (on the lost node) saw %d distinct, %d again",
		jobs, twice, lostAcks, republish, info.Cluster.Leader, atLoss, stream.CachedInfo().Cluster.Leader,
		gap.Round(time.Millisecond), from.Format("15:04:05.000"), to.Format("15:04:05.000"), killed.Format("15:04:05.000"),
		nStored, storedSum, distinct, again)
	if elected.IsZero() {
		t.Fatalf("no node logged the election of a new leader of %s after the kill", jobsStream)
	}
	election, after := elected.Sub(killed), to.Sub(elected)
	met := "met"
	if gap >= stallTarget {
		met = "missed"
	}
	t.Logf("stall %s: the job stream and its consumer had leaders again %s after the kill (elections: stream %s, consumer %s), jobs completed again %s after that; issue 11's target of %s %s",
		gap.Round(time.Millisecond), election.Round(time.Millisecond), sinceKill(streamAt, killed), sinceKill(consumerAt, killed),
		after.Round(time.Millisecond), stallTarget, met)
	if after > electedLimit {
		t.Errorf("jobs completed again %s after the job stream and its consumer had leaders again, want under %s", after.Round(time.Millisecond), electedLimit)
	}
	// An election that took a second round (a split vote) runs past maxElection: the
	// server's doing, and the check above still holds brr to its part.
	if gap > stallLimit && election <= maxElection {
		t.Errorf("stall of %s after the job stream leader was killed, want under %s", gap.Round(time.Millisecond), stallLimit)
	}
}

// electedAfter returns when a node other than victim first logged substr (a new
// leader of a Raft group) after killed, or the zero time when none did: the group had
// its leader elsewhere and kept it.
func electedAfter(cl *natstest.ProcessCluster, victim *natstest.Node, killed time.Time, substr string) time.Time {
	var first time.Time
	for _, nd := range cl.Nodes {
		if at, ok := nd.Logged(substr, killed); ok && nd != victim && (first.IsZero() || at.Before(first)) {
			first = at
		}
	}
	return first
}

// sinceKill says how long after killed at came, or that it did not happen.
func sinceKill(at, killed time.Time) string {
	if at.IsZero() {
		return "none (leader kept)"
	}
	return at.Sub(killed).Round(time.Millisecond).String()
}

// completions returns the times at which jobs ids succeeded (their succeeded events'
// times, each job's first), in order.
func completions(events []*brr.Event, ids []string) []time.Time {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	first := make(map[string]time.Time)
	for _, e := range events {
		if e.Type != brr.EventJob || e.Status != brr.StatusSucceeded || !want[e.JobID] {
			continue
		}
		if at, ok := first[e.JobID]; !ok || e.Time.Before(at) {
			first[e.JobID] = e.Time
		}
	}
	times := make([]time.Time, 0, len(first))
	for _, at := range first {
		times = append(times, at)
	}
	slices.SortFunc(times, time.Time.Compare)
	return times
}

// stall returns the longest gap between two consecutive times of sorted that ends after
// at, with its two ends: from the last completion before a fault on, how long the
// system went without completing a job.
func stall(sorted []time.Time, at time.Time) (gap time.Duration, from, to time.Time) {
	i := 0
	for i+1 < len(sorted) && !sorted[i+1].After(at) {
		i++
	}
	for j := i + 1; j < len(sorted); j++ {
		if d := sorted[j].Sub(sorted[j-1]); d > gap {
			gap, from, to = d, sorted[j-1], sorted[j]
		}
	}
	return gap, from, to
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
