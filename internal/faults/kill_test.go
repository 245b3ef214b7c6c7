package faults_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestKillBackupWorker20Times: three workers back up into one repository; 20 times in a
// row a backup is published and the worker that starts it is killed with SIGKILL, at a
// different moment each time (0 to 360 ms after it started: while reading, packing,
// committing, or after the commit and before the ack), then started again on its data
// dir. Every job must succeed, make exactly one snapshot (its effect, once), say so in
// its events, and the repository must verify clean with every byte read back.
func TestKillBackupWorker20Times(t *testing.T) {
	faultTest(t)
	const kills = 20
	ns := natstest.StartListening(t)
	url := ns.ClientURL()

	repoDir := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(keyFile, []byte("faults-shared-repository-key"), 0o600); err != nil {
		t.Fatal(err)
	}
	// A short ack wait and lease TTL bring a killed worker's job back within seconds.
	cfg := fmt.Sprintf("repos:\n  shared: {url: \"file://%s\", key_file: %q}\njobs: {ack_wait: 2s, lease_ttl: 3s}\n", repoDir, keyFile)
	workers := map[string]*testkit.Worker{}
	for range 3 {
		w := bins.StartWorker(t, testkit.WorkerOptions{NATS: url, Config: cfg})
		workers[w.ID] = w
	}
	// Five sources of 6.2 MiB, one per job in turn, so that a job rarely waits for the
	// lease of the one before on its source.
	var sources []string
	var sourceBytes int64
	for i := range 5 {
		dir := t.TempDir()
		sourceBytes += testkit.WriteTree(t, dir, testkit.Tree{Seed: uint64(i + 1), Small: 50, Sizes: []int{3 << 20, 2 << 20, 1 << 20}})
		sources = append(sources, dir)
	}
	_, c := testkit.Connect(t, url)
	ctx := testkit.Context(t, 8*time.Minute)
	live := newTally()
	if err := c.Subscribe(ctx, "brr.events.>", live.add); err != nil {
		t.Fatal(err)
	}
	started := make(chan *brr.Event, 1024)
	if err := c.Subscribe(ctx, "brr.events.job.backup.started", func(e *brr.Event) { started <- e }); err != nil {
		t.Fatal(err)
	}

	var ids []string
	for i := range kills {
		pub, err := c.Publish(ctx, brr.BackupJob{Path: sources[i%len(sources)], Repo: "shared"})
		if err != nil {
			t.Fatalf("publish backup %d: %v", i, err)
		}
		ids = append(ids, pub.ID)
		var runner string
		for runner == "" {
			select {
			case e := <-started:
				if e.JobID == pub.ID {
					runner = e.Worker
				}
			case <-ctx.Done():
				t.Fatalf("backup %d (%s) never started", i, pub.ID)
			}
		}
		victim := workers[runner]
		if victim == nil {
			t.Fatalf("backup %d started by %q, which is none of the workers", i, runner)
		}
		time.Sleep(time.Duration(i%10) * 40 * time.Millisecond)
		victim.Kill()
		victim.Start()
		if victim.ID != runner {
			t.Fatalf("worker %s came back as %s: the id must survive a restart", runner, victim.ID)
		}
	}

	for i, id := range ids {
		ev, err := c.Wait(ctx, id, nil)
		if err != nil {
			t.Fatalf("backup %d (%s): %v", i, id, err)
		}
		if ev.Status != brr.StatusSucceeded || ev.Result == nil || ev.Result.Backup == nil {
			t.Fatalf("backup %d (%s) ended %s: %+v", i, id, ev.Status, ev)
		}
	}

	// The effect, once: one snapshot per job, each made by its own job.
	snaps, err := c.Snapshots(ctx, "shared", "")
	if err != nil {
		t.Fatalf("list snapshots: %v", err)
	}
	byJob := map[string]int{}
	for _, sn := range snaps {
		byJob[sn.JobID]++
	}
	for i, id := range ids {
		if byJob[id] != 1 {
			t.Errorf("backup %d (%s) made %d snapshots, want 1", i, id, byJob[id])
		}
	}
	if got, want := len(snaps), kills; got != want {
		t.Errorf("%d snapshots in the repo, want %d", got, want)
	}

	// What the events say: every job succeeded and committed its snapshot, no job
	// failed, and every event that names a snapshot of a job names the same one.
	all := stored(t, ctx, c, "brr.events.>")
	interrupted, reruns := 0, 0
	for i, id := range ids {
		if n := all.count(id, "job.succeeded"); n < 1 {
			t.Errorf("backup %d (%s): no succeeded event", i, id)
		}
		if n := all.count(id, "snapshot.committed"); n < 1 {
			t.Errorf("backup %d (%s): no snapshot.committed event", i, id)
		}
		for _, k := range []string{"job.failed", "job.dead"} {
			if n := all.count(id, k); n > 0 {
				t.Errorf("backup %d (%s): %d %s events", i, id, n, k)
			}
		}
		j := all.jobs[id]
		if len(j.snapshots) != 1 {
			t.Errorf("backup %d (%s): events name snapshots %v, want one", i, id, j.snapshots)
		}
		if n := all.count(id, "job.started"); n > 1 {
			interrupted++
			reruns += n - 1
		}
	}
	noDeadLetters(t, ctx, c)
	subscribedSawAll(t, live, all, ids)

	pub, err := c.Publish(ctx, brr.VerifyJob{Repo: "shared", ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := c.Wait(ctx, pub.ID, nil)
	if err != nil {
		t.Fatalf("verify after %d kills: %v (%+v)", kills, err, ev)
	}
	v := ev.Result.Verify
	if v == nil || !v.OK() {
		t.Fatalf("repository damaged after %d kills: %+v", kills, v)
	}
	if v.Snapshots != kills {
		t.Errorf("verify saw %d snapshots, want %d", v.Snapshots, kills)
	}
	nStored, storedSum := all.summary(ids)
	distinct, _ := live.summary(ids)
	again := live.againCount()
	t.Logf("jobs %d, kills %d, jobs started again after a kill %d (%d runs cut short); events stored %d (%s); live subscriber saw %d distinct, %d again; "+
		"sources %.1f MiB, snapshots %d, repo verified: %d blobs, %.1f MiB read back",
		len(ids), kills, interrupted, reruns, nStored, storedSum, distinct, again,
		float64(sourceBytes)/(1<<20), len(snaps), v.Blobs, float64(v.BytesRead)/(1<<20))
	if interrupted == 0 {
		t.Errorf("no kill interrupted a backup: the test did not test anything")
	}
}
