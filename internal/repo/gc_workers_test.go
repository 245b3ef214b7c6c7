package repo_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/natsobj"
)

// Tests of GC with other writers: other Repositories on the same backend (other
// workers), writer locks, and backups running while GC does.

// TestGCAnotherWorkerLearnsPlan: worker B learns A's plan from its index reload, stores
// a new copy of a condemned blob instead of reusing it, and survives phase 2.
func TestGCAnotherWorkerLearnsPlan(t *testing.T) {
	ctx := context.Background()
	a, be := newGCRepo(t)
	b := openGCRepo(t, be)
	old := commit(t, a, "old", seq(0, 20)...)
	commit(t, a, "keep", 40, 41)
	if err := a.RemoveSnapshot(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	rep := runGC(t, a, repo.GCOptions{Grace: time.Hour, Now: func() time.Time { return t0 }})
	if rep.PacksCondemned == 0 {
		t.Fatalf("GC condemned nothing: %+v", rep)
	}

	id5 := b.BlobID(blobOf(5))
	if err := b.ReloadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if len(repo.KnownPlans(b)) != 1 {
		t.Fatalf("B knows plans %v, want A's one", repo.KnownPlans(b))
	}
	if b.HasBlob(repo.DataBlob, id5) {
		t.Fatal("B would reuse a blob whose only copy is condemned")
	}
	if _, ok := b.LookupBlob(repo.DataBlob, id5); !ok {
		t.Fatal("B cannot read a condemned blob before phase 2")
	}
	commit(t, b, "new", 5, 6, 60)
	oldPack, _ := a.LookupBlob(repo.DataBlob, id5)
	newPack, _ := b.LookupBlob(repo.DataBlob, id5)
	if oldPack.Pack == newPack.Pack {
		t.Fatal("B did not store a new copy of blob 5")
	}

	rep = runGC(t, a, repo.GCOptions{Grace: time.Hour, Now: func() time.Time { return t0.Add(2 * time.Hour) }, LockStale: 24 * time.Hour})
	if rep.PacksDeleted == 0 || rep.PacksResurrected != 0 {
		t.Fatalf("phase 2: %+v, want packs deleted and none resurrected", rep)
	}
	if err := b.ReloadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := b.LookupBlob(repo.DataBlob, b.BlobID(blobOf(0))); ok {
		t.Fatal("B's index still names a deleted blob after its reload")
	}
	if len(repo.KnownPlans(b)) != 0 {
		t.Fatalf("B still knows plans %v", repo.KnownPlans(b))
	}
	commit(t, b, "newer", 5, 6, 61)
	if got := loadAll(t, b); got != 3+4+4 {
		t.Fatalf("B loaded %d data blobs, want 11", got)
	}
	checkClean(t, be)
}

// TestGCResurrectsPackASnapshotNeeds: worker B, which never reloaded its index after the
// plan, saves a snapshot that reuses a condemned blob; phase 2 keeps that pack.
func TestGCResurrectsPackASnapshotNeeds(t *testing.T) {
	ctx := context.Background()
	a, be := newGCRepo(t)
	old := commit(t, a, "old", seq(0, 20)...)
	b := openGCRepo(t, be) // loads the index before the plan
	if err := a.RemoveSnapshot(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	runGC(t, a, repo.GCOptions{Grace: time.Hour, Now: func() time.Time { return t0 }})
	id7 := b.BlobID(blobOf(7))
	if !b.HasBlob(repo.DataBlob, id7) {
		t.Fatal("B, which did not reload, should still reuse blob 7")
	}
	commit(t, b, "late", 7, 70)

	rep := runGC(t, a, repo.GCOptions{Grace: time.Hour, Now: func() time.Time { return t0.Add(2 * time.Hour) }, LockStale: 24 * time.Hour})
	if rep.PacksResurrected == 0 {
		t.Fatalf("phase 2: %+v, want the pack of blob 7 resurrected", rep)
	}
	loadAll(t, a)
	loadAll(t, openGCRepo(t, be))
	checkClean(t, be)
	// Resurrected, the pack is live again: a later GC repacks or keeps it, never loses blob 7.
	runGC(t, a, gcNow)
	loadAll(t, openGCRepo(t, be))
	checkClean(t, be)
}

func TestGCWriterLockPostponesPhase2(t *testing.T) {
	ctx := context.Background()
	r, be := newGCRepo(t)
	old := commit(t, r, "old", seq(0, 20)...)
	w := openGCRepo(t, be)
	release, err := w.LockWriter(ctx, "backup job-1")
	if err != nil {
		t.Fatalf("LockWriter: %v", err)
	}
	if n := countObjects(t, be, "locks"); n != 1 {
		t.Fatalf("%d lock objects, want 1", n)
	}
	if err := r.RemoveSnapshot(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	packs := countObjects(t, be, "data")
	rep := runGC(t, r, gcNow)
	if rep.PacksCondemned == 0 || rep.PacksDeleted != 0 || !strings.Contains(rep.Postponed, `"backup job-1"`) {
		t.Fatalf("GC with a writer running since before the plan: %+v", rep)
	}
	if countObjects(t, be, "data") != packs {
		t.Fatal("packs deleted while a writer that predates the plan runs")
	}

	// A writer that starts after the plan knows it: it does not hold phase 2 up.
	release2, err := w.LockWriter(ctx, "backup job-2")
	if err != nil {
		t.Fatal(err)
	}
	defer release2()
	rep = runGC(t, r, gcNow)
	if rep.PacksDeleted != 0 || !strings.Contains(rep.Postponed, "job-1") || strings.Contains(rep.Postponed, "job-2") {
		t.Fatalf("GC with both writers: %+v", rep)
	}
	release()
	release() // twice is harmless
	rep = runGC(t, r, gcNow)
	if rep.PacksDeleted == 0 || rep.Postponed != "" {
		t.Fatalf("GC after the old writer released its lock: %+v", rep)
	}
	checkClean(t, be)
}

func TestGCIgnoresStaleLock(t *testing.T) {
	ctx := context.Background()
	r, be := newGCRepo(t)
	old := commit(t, r, "old", seq(0, 20)...)
	release, err := openGCRepo(t, be).LockWriter(ctx, "backup dead")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := r.RemoveSnapshot(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	// An hour from now the lock, refreshed every 5 minutes while its writer lives, has not
	// been refreshed for 30: its writer is dead.
	later := func() time.Time { return time.Now().Add(time.Hour) }
	rep := runGC(t, r, repo.GCOptions{Grace: repo.NoGrace, Now: later})
	if rep.PacksDeleted == 0 || rep.Postponed != "" {
		t.Fatalf("GC with a stale lock: %+v", rep)
	}
	if n := countObjects(t, be, "locks"); n != 0 {
		t.Fatalf("%d lock objects left; GC removes stale ones", n)
	}
	checkClean(t, be)
}

// TestGCConcurrentWithBackups runs writers on two Repositories (two workers, one of them
// the GC's) while GC runs in a loop and old snapshots are forgotten.
func TestGCConcurrentWithBackups(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r1, be := newGCRepo(t)
	r2 := openGCRepo(t, be)
	commit(t, r1, "seed", seq(0, 30)...)

	const writers, rounds = 4, 12
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			r := r1
			if w%2 == 1 {
				r = r2
			}
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for i := range rounds {
				release, err := r.LockWriter(ctx, fmt.Sprintf("writer %d round %d", w, i))
				if err != nil {
					errs <- err
					return
				}
				// Some blobs shared with older snapshots (0-59), some new to this one.
				ns := []int{rng.IntN(60), rng.IntN(60), rng.IntN(60), 1000 + 100*w + i}
				pause := func() { time.Sleep(time.Duration(rng.IntN(30)) * time.Millisecond) }
				_, err = commitPausing(ctx, r, fmt.Sprintf("w%d-%d", w, i), pause, ns...)
				release()
				if err != nil {
					errs <- fmt.Errorf("writer %d round %d: %w", w, i, err)
					return
				}
			}
			errs <- nil
		}()
	}

	var deleted, condemned int
	done := 0
	for done < writers {
		select {
		case err := <-errs:
			if err != nil {
				t.Fatal(err)
			}
			done++
			continue
		default:
		}
		sns, err := r1.Snapshots(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i+6 < len(sns); i++ { // keep the newest six
			if err := r1.RemoveSnapshot(ctx, sns[i].ID); err != nil && !errors.Is(err, brr.ErrNotFound) {
				t.Fatal(err)
			}
		}
		rep := runGC(t, r1, gcNow)
		deleted += rep.PacksDeleted
		condemned += rep.PacksCondemned
	}
	rep := runGC(t, r1, gcNow)
	deleted += rep.PacksDeleted
	if condemned == 0 || deleted == 0 || rep.PendingPacks != 0 {
		t.Fatalf("GC condemned %d and deleted %d packs in all, %d pending at the end", condemned, deleted, rep.PendingPacks)
	}
	t.Logf("condemned %d, deleted %d packs", condemned, deleted)
	checkClean(t, be)
	loadAll(t, r1)
	if err := r2.ReloadIndex(ctx); err != nil { // a reader reloads before it reads
		t.Fatal(err)
	}
	loadAll(t, r2)
	loadAll(t, openGCRepo(t, be))
	if n := countObjects(t, be, "locks"); n != 0 {
		t.Fatalf("%d writer locks left", n)
	}
}

// TestGCNatsObjectStore runs GC on a nats:// repository that two workers, each with its
// own connection, share: a writer running since before the plan holds phase 2 up, and
// the blob it reused from a condemned pack survives.
func TestGCNatsObjectStore(t *testing.T) {
	ctx := context.Background()
	s := natstest.Start(t)
	open := func() repo.Backend { // each worker on its own connection
		_, js := s.JetStream(t)
		be, err := natsobj.Open(ctx, js, "brr-gc", 1)
		if err != nil {
			t.Fatal(err)
		}
		return be // closed by the Repository opened on it
	}
	beA := open()
	a, err := repo.Init(ctx, beA, password, gcOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	old := commit(t, a, "old", seq(0, 20)...)
	beB := open()
	b := openGCRepo(t, beB)
	release, err := b.LockWriter(ctx, "backup on b")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.RemoveSnapshot(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	rep := runGC(t, a, gcNow)
	if rep.PacksCondemned == 0 || rep.PacksDeleted != 0 || !strings.Contains(rep.Postponed, "backup on b") {
		t.Fatalf("GC while B writes: %+v", rep)
	}
	commit(t, b, "b", 3, 99) // B loaded its index before the plan: it reuses blob 3
	release()
	rep = runGC(t, a, gcNow)
	if rep.PacksDeleted == 0 || rep.PacksResurrected == 0 {
		t.Fatalf("GC after B finished: %+v, want packs deleted and blob 3's resurrected", rep)
	}
	checkClean(t, beB)
	if err := b.ReloadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if got := loadAll(t, b); got != 3 {
		t.Fatalf("B loaded %d data blobs, want 3", got)
	}
}
