package faults_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestClockSkew checks the two kinds of lease a worker holds against a worker whose
// clock is 5 minutes ahead (its jobs.Engine.Now: the clock of snapshots, retention and
// prune). A process's wall clock cannot be moved alone, so the workers here are engines
// in this process, on a real server and a real repository.
//
// Source and repo leases (KV BRR_LEASES) expire on the server, TTL after the holder's
// last renewal, and the holder times its renewals with Go's monotonic clock: no worker's
// wall clock takes part. The skewed worker, to which the holder's lease looks 5 minutes
// old, is turned away while the holder renews, and gets the lease only once the holder
// stopped renewing and the TTL passed.
//
// Writer locks in the repository are judged by wall clock: prune (GC) takes a lock not
// refreshed for repo.DefaultLockStale (30 min) for a dead writer's. A prune whose clock
// is 5 minutes ahead must still wait for a running backup's lock; one whose clock is
// ahead by more than that TTL cannot tell the lock from a dead writer's, which is the
// limit the test pins down.
func TestClockSkew(t *testing.T) {
	faultTest(t)
	const ttl = 3 * time.Second
	const skew = 5 * time.Minute
	ns := natstest.Start(t)
	_, js := ns.JetStream(t)
	ctx := testkit.Context(t, 3*time.Minute)
	cfg := func(worker string) events.Config {
		return events.Config{Worker: worker, Host: "faults", LeaseTTL: ttl}
	}
	if err := events.EnsureStreams(ctx, js, cfg("setup")); err != nil {
		t.Fatal(err)
	}
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	ahead := func(d time.Duration) func() time.Time { return func() time.Time { return time.Now().Add(d) } }

	t.Run("source lease", func(t *testing.T) {
		holder, err := events.NewLeases(ctx, js, cfg("worker-a"))
		if err != nil {
			t.Fatal(err)
		}
		leases, err := events.NewLeases(ctx, js, cfg("worker-b"))
		if err != nil {
			t.Fatal(err)
		}
		skewed := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r}, Host: "faults", Worker: "worker-b", Leases: leases, Now: ahead(skew)}
		src := t.TempDir()
		testkit.WriteTree(t, src, testkit.Tree{Seed: 21, Small: 10, Sizes: []int{256 << 10}})

		hctx, stopRenewing := context.WithCancel(ctx)
		_, release, err := holder.Acquire(hctx, jobs.SourceLeaseKey("faults", src))
		if err != nil {
			t.Fatal(err)
		}
		// Released at the end: by then the lease is the other worker's, and release
		// deletes only its own revision.
		defer release()

		backup := func() (*brr.BackupResult, error) {
			t.Helper()
			res, err := skewed.Backup(ctx, "skew-backup", brr.BackupJob{Path: src}, nil)
			if _, snoozed := brr.SnoozeDelay(err); err != nil && !snoozed {
				t.Fatalf("backup by the skewed worker: %v, want success or a snooze", err)
			}
			return res, err
		}
		turnedAway := 0
		for end := time.Now().Add(2 * ttl); time.Now().Before(end); turnedAway++ {
			if _, err := backup(); err == nil {
				t.Fatal("the skewed worker took a lease that its holder renews")
			} else if !strings.Contains(err.Error(), "worker-a") {
				t.Errorf("snooze does not name the holder: %v", err)
			}
			time.Sleep(ttl / 6)
		}

		stopRenewing() // the holder hangs or dies: no renewal, no release
		stopped := time.Now()
		var res *brr.BackupResult
		for res == nil {
			var err error
			if res, err = backup(); err != nil && time.Since(stopped) > 30*time.Second {
				t.Fatalf("the lease never passed to the skewed worker: %v", err)
			}
			if res == nil {
				time.Sleep(100 * time.Millisecond)
			}
		}
		took := time.Since(stopped)
		// The holder renewed at most TTL/3 before it stopped, so the server keeps the
		// key for at least 2/3 of the TTL after that.
		if took < ttl*2/3 {
			t.Errorf("the lease passed %s after the holder stopped renewing, before its TTL (%s) could have run out", took, ttl)
		}
		snaps, err := skewed.Snapshots(ctx, "local", src)
		if err != nil || len(snaps) != 1 {
			t.Fatalf("snapshots of %s: %v %+v", src, err, snaps)
		}
		if lead := time.Until(snaps[0].Time); lead < skew-time.Minute {
			t.Errorf("snapshot time is %s ahead, want about %s: the engine's clock was not skewed", lead.Round(time.Second), skew)
		}
		t.Logf("turned away %d times over %s while the holder renewed; lease passed %s after it stopped (TTL %s); snapshot %s stamped %s ahead",
			turnedAway, 2*ttl, took.Round(10*time.Millisecond), ttl, res.Snapshot[:8], time.Until(snaps[0].Time).Round(time.Second))
	})

	t.Run("writer lock", func(t *testing.T) {
		normal := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r}, Host: "faults", Worker: "worker-n"}
		src := t.TempDir()
		for i := range 2 {
			testkit.WriteTree(t, src, testkit.Tree{Seed: uint64(30 + i), Small: 10, Sizes: []int{1 << 20}}) // new content each time: the first snapshot's data dies with it
			if _, err := normal.Backup(ctx, "writer-lock-"+string(rune('a'+i)), brr.BackupJob{Path: src}, nil); err != nil {
				t.Fatal(err)
			}
		}
		// A backup is running: its writer lock predates the prune's plan.
		unlock, err := r.LockWriter(ctx, "backup in progress")
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()

		prune := func(clock time.Duration, id string) *brr.PruneResult {
			t.Helper()
			e := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r}, Host: "faults", Worker: "worker-p", Now: ahead(clock), PruneGrace: repo.NoGrace}
			res, err := e.Prune(ctx, id, brr.PruneJob{Policy: &brr.RetentionPolicy{KeepLast: 1}}, nil)
			if err != nil {
				t.Fatalf("prune with a clock %s ahead: %v", clock, err)
			}
			return res
		}
		res := prune(skew, "prune-skewed")
		if len(res.Removed) != 1 || res.PendingPacks == 0 {
			t.Fatalf("prune removed %v and left %d packs pending, want one snapshot and its packs condemned", res.Removed, res.PendingPacks)
		}
		if res.PacksDeleted != 0 || !strings.Contains(res.Postponed, "backup in progress") {
			t.Fatalf("prune with a clock %s ahead deleted %d packs under a running backup (postponed: %q)", skew, res.PacksDeleted, res.Postponed)
		}
		pending := res.PendingPacks

		beyond := repo.DefaultLockStale + time.Minute
		res = prune(beyond, "prune-beyond")
		if res.PacksDeleted == 0 || res.Postponed != "" {
			t.Errorf("prune with a clock %s ahead (past the lock's TTL) still waited for the lock: deleted %d, postponed %q", beyond, res.PacksDeleted, res.Postponed)
		}
		vres, err := normal.Verify(ctx, "verify-skew", brr.VerifyJob{ReadData: true}, nil)
		if err != nil || !vres.OK() {
			t.Fatalf("verify after the prunes: %v %+v", err, vres)
		}
		t.Logf("prune %s ahead: %d packs condemned, 0 deleted, waits for the running backup; prune %s ahead: deleted %d packs (%d bytes), "+
			"the backup's lock taken for a dead writer's; repo verified, %d blobs read",
			skew, pending, beyond, res.PacksDeleted, res.BytesFreed, vres.Blobs)
	})
}
