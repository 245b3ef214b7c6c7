package e2e_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestBackupRestoreVerify runs the main job of brr through one worker with its embedded
// server, using only the public Client.
func TestBackupRestoreVerify(t *testing.T) {
	w := bins.StartWorker(t, testkit.WorkerOptions{})
	_, c := testkit.Connect(t, w.NATSURL)
	ctx := testkit.Context(t, 2*time.Minute)

	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 1, Sizes: []int{3 << 20, 100, 64 << 10, 0, 5}})

	pub, err := c.Publish(ctx, brr.BackupJob{Path: src, Tags: []string{"e2e"}})
	if err != nil {
		t.Fatalf("publish backup: %v", err)
	}
	var progress int
	ev, err := c.Wait(ctx, pub.ID, func(e *brr.Event) {
		if e.Status == brr.StatusProgress {
			progress++
		}
	})
	if err != nil {
		t.Fatalf("backup: %v", err)
	}
	if ev.Result == nil || ev.Result.Backup == nil || ev.Result.Backup.Snapshot == "" {
		t.Fatalf("backup event has no snapshot: %+v", ev)
	}
	snap := ev.Result.Backup.Snapshot
	if got, want := ev.Result.Backup.Files, int64(7); got != want {
		t.Errorf("backup Files = %d, want %d", got, want)
	}

	snaps, err := c.Snapshots(ctx, "", "")
	if err != nil {
		t.Fatalf("snapshots: %v", err)
	}
	if len(snaps) != 1 || snaps[0].ID != snap || snaps[0].Source != src {
		t.Fatalf("snapshots = %+v, want one %s of %s", snaps, snap, src)
	}

	target := filepath.Join(t.TempDir(), "restore")
	pub, err = c.Publish(ctx, brr.RestoreJob{Snapshot: "latest", Source: src, Target: target})
	if err != nil {
		t.Fatalf("publish restore: %v", err)
	}
	if _, err := c.Wait(ctx, pub.ID, nil); err != nil {
		t.Fatalf("restore: %v", err)
	}
	testkit.SameTree(t, src, target)

	pub, err = c.Publish(ctx, brr.VerifyJob{ReadData: true})
	if err != nil {
		t.Fatalf("publish verify: %v", err)
	}
	ev, err = c.Wait(ctx, pub.ID, nil)
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	if v := ev.Result.Verify; v == nil || !v.OK() || v.Snapshots != 1 || v.Blobs == 0 {
		t.Fatalf("verify result = %+v", ev.Result.Verify)
	}

	// The snapshot was announced.
	events, err := c.Events(ctx, brr.Subjects{}.Events(brr.EventSnapshot), time.Time{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Snapshot != snap || events[0].Status != brr.StatusCommitted {
		t.Fatalf("snapshot events = %+v", events)
	}
}

// TestBadInputKeepsWorkerRunning sends junk on job subjects; each goes to the DLQ with a
// reason and the worker goes on to run a good job.
func TestBadInputKeepsWorkerRunning(t *testing.T) {
	w := bins.StartWorker(t, testkit.WorkerOptions{})
	nc, c := testkit.Connect(t, w.NATSURL)
	ctx := testkit.Context(t, time.Minute)
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"brr.jobs.default.backup":     []byte("not json"),
		"brr.jobs.default.frobnicate": []byte(`{"v":1,"id":"x1","kind":"frobnicate","pool":"default","created":"2026-11-26T12:00:00Z","args":{}}`),
		"brr.jobs.default.restore":    []byte(`{"v":1,"id":"x2","kind":"restore","pool":"default","created":"2026-11-26T12:00:00Z","args":{"snapshot":"latest","target":"../../etc"}}`),
		"brr.jobs.default.verify":     []byte(`{"v":7,"id":"x3"}`),
		"brr.jobs.default.ping":       []byte(strings.Repeat("junk", 250_000)),
	}
	for subj, data := range bad {
		if _, err := js.Publish(subj, data); err != nil {
			t.Fatalf("publish %s: %v", subj, err)
		}
	}
	pub, err := c.Publish(ctx, brr.PingJob{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, pub.ID, nil); err != nil {
		t.Fatalf("ping after bad input: %v", err)
	}
	var dead []brr.DeadLetterEntry
	testkit.WaitFor(10*time.Second, func() bool {
		if dead, err = c.DeadLetters(ctx); err != nil {
			t.Fatal(err)
		}
		return len(dead) >= len(bad)
	})
	if len(dead) != len(bad) {
		t.Fatalf("%d dead letters, want %d: %+v", len(dead), len(bad), dead)
	}
	for _, d := range dead {
		if d.Error == "" || d.Status != brr.StatusFailed {
			t.Errorf("dead letter for %s: status %q, error %q", d.Subject, d.Status, d.Error)
		}
	}
}

// TestTwoWorkersShareJobs runs 200 pings through two workers in one pool: both take some,
// and every job runs exactly once.
func TestTwoWorkersShareJobs(t *testing.T) {
	ns := natstest.StartListening(t)
	url := ns.ClientURL()
	bins.StartWorker(t, testkit.WorkerOptions{NATS: url})
	bins.StartWorker(t, testkit.WorkerOptions{NATS: url})
	_, c := testkit.Connect(t, url)
	ctx := testkit.Context(t, 2*time.Minute)

	var mu sync.Mutex
	started := map[string]int{}
	byWorker := map[string]int{}
	succeeded := map[string]bool{}
	all := make(chan struct{})
	const n = 200
	err := c.Subscribe(ctx, "brr.events.job.ping.>", func(e *brr.Event) {
		mu.Lock()
		defer mu.Unlock()
		switch e.Status {
		case brr.StatusStarted:
			started[e.JobID]++
		case brr.StatusSucceeded:
			if !succeeded[e.JobID] {
				byWorker[e.Worker]++
			}
			succeeded[e.JobID] = true
			if len(succeeded) == n {
				close(all)
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		// A small delay keeps both workers busy, so that both take jobs.
		if _, err := c.Publish(ctx, brr.PingJob{DelayMS: 20}); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-all:
	case <-ctx.Done():
		t.Fatalf("only %d of %d jobs succeeded", len(succeeded), n)
	}
	time.Sleep(500 * time.Millisecond) // a second run would show up as another started event
	mu.Lock()
	defer mu.Unlock()
	for id, k := range started {
		if k != 1 {
			t.Errorf("job %s started %d times", id, k)
		}
	}
	if len(byWorker) != 2 {
		t.Fatalf("jobs by worker = %v, want both workers", byWorker)
	}
}

// TestKilledWorkerJobCompletesElsewhere kills the worker running a backup with SIGKILL; the
// job comes back to the other worker of the pool and succeeds, and the repository verifies.
func TestKilledWorkerJobCompletesElsewhere(t *testing.T) {
	ns := natstest.StartListening(t)
	url := ns.ClientURL()
	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 2, Sizes: []int{48 << 20, 48 << 20, 48 << 20, 1 << 20}})
	repoDir := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("e2e-shared-repository-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Both workers share one repository, as a pool does; a short ack wait and lease TTL make
	// the dead worker's job come back within seconds.
	cfg := fmt.Sprintf("repos:\n  shared: {url: \"file://%s\", key_file: %q}\njobs: {ack_wait: 2s, lease_ttl: 3s}\n", repoDir, keyFile)
	w1 := bins.StartWorker(t, testkit.WorkerOptions{NATS: url, Config: cfg})
	w2 := bins.StartWorker(t, testkit.WorkerOptions{NATS: url, Config: cfg})
	workers := map[string]*testkit.Worker{}
	_, c := testkit.Connect(t, url)
	ctx := testkit.Context(t, 3*time.Minute)

	// The job's story, for the log of a failed run.
	logEvent := func(e *brr.Event) {
		if e.Status != brr.StatusProgress {
			t.Logf("%s %s worker=%s attempt=%d %s", e.Time.Format("15:04:05.000"), e.Status, e.Worker, e.Attempt, e.Error)
		}
	}
	if err := c.Subscribe(ctx, "brr.events.job.backup.>", logEvent); err != nil {
		t.Fatal(err)
	}
	startedBy := make(chan string, 4)
	if err := c.Subscribe(ctx, "brr.events.job.backup.started", func(e *brr.Event) { startedBy <- e.Worker }); err != nil {
		t.Fatal(err)
	}
	pub, err := c.Publish(ctx, brr.BackupJob{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	var first string
	select {
	case first = <-startedBy:
	case <-ctx.Done():
		t.Fatal("backup never started")
	}
	// Which process is it? Each worker names itself in its logs.
	for _, w := range []*testkit.Worker{w1, w2} {
		if strings.Contains(w.Logs(), first) {
			workers[first] = w
		}
	}
	victim := workers[first]
	if victim == nil {
		t.Fatalf("no worker process logs the id %q", first)
	}
	time.Sleep(300 * time.Millisecond) // let it get going
	victim.Kill()

	ev, err := c.Wait(ctx, pub.ID, nil)
	if err != nil {
		t.Fatalf("backup after kill: %v", err)
	}
	if ev.Worker == first {
		t.Fatalf("job finished by the killed worker %s", first)
	}
	if ev.Attempt < 2 {
		t.Errorf("final attempt = %d, want a redelivery", ev.Attempt)
	}
	pub, err = c.Publish(ctx, brr.VerifyJob{Repo: "shared", ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	ev, err = c.Wait(ctx, pub.ID, nil)
	if err != nil {
		t.Fatalf("verify after kill: %v (%+v)", err, ev)
	}
	if !ev.Result.Verify.OK() {
		t.Fatalf("damage after kill: %+v", ev.Result.Verify.Damaged)
	}
}

// TestSIGTERMDrains stops a worker with SIGTERM while a job runs: the job finishes, its
// events go out, and the worker exits 0.
func TestSIGTERMDrains(t *testing.T) {
	ns := natstest.StartListening(t)
	url := ns.ClientURL()
	w := bins.StartWorker(t, testkit.WorkerOptions{NATS: url})
	_, c := testkit.Connect(t, url)
	ctx := testkit.Context(t, time.Minute)

	// The health canary sends pings of its own: wait for this job's start, not theirs
	// (a canary's start let the test stop the worker before it had taken this job).
	const id = "sigterm-drain-ping"
	started := make(chan struct{}, 1)
	if err := c.Subscribe(ctx, "brr.events.job.ping.started", func(e *brr.Event) {
		if e.JobID == id {
			started <- struct{}{}
		}
	}); err != nil {
		t.Fatal(err)
	}
	pub, err := c.Publish(ctx, brr.PingJob{DelayMS: 2000}, brr.WithID(id))
	if err != nil {
		t.Fatal(err)
	}
	<-started
	if code := w.Stop(30 * time.Second); code != 0 {
		t.Fatalf("exit code %d after SIGTERM\n%s", code, w.Logs())
	}
	ev, err := c.Wait(ctx, pub.ID, nil)
	if err != nil || ev.Status != brr.StatusSucceeded {
		t.Fatalf("drained job: %+v, %v", ev, err)
	}
}

// TestOutboxFlushesAfterNATSReturns stops the NATS server while a job runs; the job's
// events wait in the worker's outbox and are published, once, when the server is back.
func TestOutboxFlushesAfterNATSReturns(t *testing.T) {
	opts := natstest.ListeningOptions(t, t.TempDir())
	ns := natstest.StartWith(t, opts)
	url := ns.ClientURL()
	w := bins.StartWorker(t, testkit.WorkerOptions{NATS: url, Config: "jobs: {ack_wait: 2s}\n"})
	nc, c := testkit.Connect(t, url)
	ctx := testkit.Context(t, 2*time.Minute)

	started := make(chan struct{}, 1)
	if err := c.Subscribe(ctx, "brr.events.job.ping.started", func(*brr.Event) { started <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	pub, err := c.Publish(ctx, brr.PingJob{DelayMS: 1500})
	if err != nil {
		t.Fatal(err)
	}
	<-started
	ns.Stop()
	// While the server is away the job finishes; publishing is refused with a clear error.
	time.Sleep(3 * time.Second)
	if _, err := c.Publish(ctx, brr.PingJob{}); err == nil {
		t.Fatal("publish with NATS down succeeded")
	} else if !errors.Is(err, brr.ErrNotConnected) && !strings.Contains(err.Error(), "connect") {
		t.Errorf("publish with NATS down: %v", err)
	}
	natstest.StartWith(t, opts)
	if !testkit.WaitFor(30*time.Second, nc.IsConnected) {
		t.Fatal("client did not reconnect")
	}
	ev, err := c.Wait(ctx, pub.ID, nil)
	if err != nil || ev.Status != brr.StatusSucceeded {
		t.Fatalf("job after outage: %+v, %v\n%s", ev, err, w.Logs())
	}
	// Exactly one succeeded event, although the ack was lost and the job came back.
	var events []*brr.Event
	testkit.WaitFor(5*time.Second, func() bool {
		all, err := c.Events(ctx, "brr.events.job.ping.succeeded", time.Time{}, 100)
		if err != nil {
			t.Fatal(err)
		}
		events = events[:0]
		for _, e := range all {
			if e.JobID == pub.ID {
				events = append(events, e)
			}
		}
		return len(events) > 0
	})
	if len(events) != 1 {
		t.Fatalf("%d succeeded events for %s, want 1", len(events), pub.ID)
	}
}

// TestCLICannotConnect: the CLI says what to do and exits 3 when no NATS answers.
func TestCLICannotConnect(t *testing.T) {
	addr := testkit.FreeAddr(t)
	_, stderr, code := bins.RunCLI(t, nil, "--nats", "nats://"+addr, "backup", "/srv")
	if code != 3 {
		t.Fatalf("exit code %d, want 3; stderr: %s", code, stderr)
	}
	if !strings.Contains(stderr, "brr-worker") {
		t.Errorf("stderr does not say what to do: %s", stderr)
	}
}

// TestCLIBackupRestore drives the same round trip through the brr CLI, with --json.
func TestCLIBackupRestore(t *testing.T) {
	w := bins.StartWorker(t, testkit.WorkerOptions{})
	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 3, Sizes: []int{1 << 20, 10}})
	stdout, stderr, code := bins.RunCLI(t, nil, "--nats", w.NATSURL, "--json", "backup", src, "--wait")
	if code != 0 {
		t.Fatalf("brr backup: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, `"snapshot"`) {
		t.Fatalf("backup --json output has no snapshot: %s", stdout)
	}
	target := filepath.Join(t.TempDir(), "r")
	if stdout, stderr, code := bins.RunCLI(t, nil, "--nats", w.NATSURL, "restore", "latest", target, "--wait"); code != 0 {
		t.Fatalf("brr restore: exit %d\n%s\n%s", code, stdout, stderr)
	}
	testkit.SameTree(t, src, target)
	// Restoring again over the same target without --overwrite fails and says why.
	stdout, stderr, code = bins.RunCLI(t, nil, "--nats", w.NATSURL, "restore", "latest", target, "--wait")
	if code != 1 || !strings.Contains(stdout+stderr, "overwrite") {
		t.Fatalf("restore over existing files: exit %d\n%s\n%s", code, stdout, stderr)
	}
}
