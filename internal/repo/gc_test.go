package repo_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

func TestGCForgetFreesUniqueData(t *testing.T) {
	ctx := context.Background()
	r, be := newGCRepo(t)
	a := commit(t, r, "a", seq(0, 40)...)
	commit(t, r, "b", seq(100, 140)...)
	commit(t, r, "c", append(seq(200, 220), 100, 101)...)
	before := storedBytes(t, be)

	if rep := runGC(t, r, gcNow); rep.PacksCondemned != 0 || rep.PacksDeleted != 0 {
		t.Fatalf("GC with nothing forgotten: %+v", rep)
	}
	if err := r.RemoveSnapshot(ctx, a.ID); err != nil {
		t.Fatalf("RemoveSnapshot: %v", err)
	}
	if err := r.RemoveSnapshot(ctx, a.ID); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("RemoveSnapshot twice: %v, want ErrNotFound", err)
	}
	rep := runGC(t, r, gcNow)
	if rep.PacksDeleted == 0 || rep.BytesFreed == 0 || rep.BlobsRemoved < 40 {
		t.Fatalf("GC after forgetting a: %+v", rep)
	}
	if rep.PendingPacks != 0 || !rep.PendingUntil.IsZero() || rep.Postponed != "" {
		t.Fatalf("GC left something pending: %+v", rep)
	}
	if after := storedBytes(t, be); after >= before {
		t.Fatalf("stored bytes went from %d to %d", before, after)
	}
	for i := range 40 {
		if r.HasBlob(repo.DataBlob, r.BlobID(blobOf(i))) {
			t.Fatalf("blob %d of the forgotten snapshot is still known", i)
		}
	}
	if got, want := loadAll(t, r), 40+1+22+1; got != want {
		t.Fatalf("loaded %d data blobs, want %d", got, want)
	}
	rep2 := checkClean(t, be)
	if len(rep2.Unreferenced) != 0 || rep2.Snapshots != 2 {
		t.Fatalf("Check after GC: %d snapshots, unreferenced %v", rep2.Snapshots, rep2.Unreferenced)
	}
	if n := countObjects(t, be, "plans"); n != 0 {
		t.Fatalf("%d plans left", n)
	}
	if got := loadAll(t, openGCRepo(t, be)); got != 64 {
		t.Fatalf("a fresh Repository loaded %d data blobs, want 64", got)
	}
}

func TestGCRepacksMostlyDeadPack(t *testing.T) {
	ctx := context.Background()
	r, be := newGCRepo(t)
	// One pack: the first blobs of "a" fill most of it; "b" shares one of them.
	a := commit(t, r, "a", seq(0, 6)...)
	commit(t, r, "b", 3, 50)
	pb, ok := r.LookupBlob(repo.DataBlob, r.BlobID(blobOf(3)))
	if !ok {
		t.Fatal("blob 3 not in the index")
	}
	if err := r.RemoveSnapshot(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	rep := runGC(t, r, gcNow)
	if rep.PacksRepacked == 0 || rep.BytesRepacked == 0 || rep.PacksDeleted == 0 {
		t.Fatalf("GC: %+v, want a pack repacked and deleted", rep)
	}
	moved, ok := r.LookupBlob(repo.DataBlob, r.BlobID(blobOf(3)))
	if !ok || moved.Pack == pb.Pack {
		t.Fatalf("blob 3 is in pack %s, was in %s: not repacked", moved.Pack.Short(), pb.Pack.Short())
	}
	if _, err := os.Stat(filepath.Join(be.Dir(), "data", pb.Pack.String()[:2], pb.Pack.String())); !os.IsNotExist(err) {
		t.Fatalf("old pack still there: %v", err)
	}
	got, err := r.LoadBlob(ctx, repo.DataBlob, r.BlobID(blobOf(3)), nil)
	if err != nil || !bytes.Equal(got, blobOf(3)) {
		t.Fatalf("LoadBlob of the repacked blob: %v", err)
	}
	loadAll(t, r)
	checkClean(t, be)
	if rep := runGC(t, r, gcNow); rep.PacksCondemned != 0 || rep.PacksDeleted != 0 {
		t.Fatalf("second GC did something: %+v", rep)
	}
}

func TestGCRepackBelowNegativeNeverRepacks(t *testing.T) {
	ctx := context.Background()
	r, _ := newGCRepo(t)
	a := commit(t, r, "a", seq(0, 6)...)
	commit(t, r, "b", 3, 50)
	if err := r.RemoveSnapshot(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	rep := runGC(t, r, repo.GCOptions{Grace: repo.NoGrace, RepackBelow: -1})
	if rep.PacksRepacked != 0 || rep.BytesRepacked != 0 {
		t.Fatalf("GC with RepackBelow -1 repacked: %+v", rep)
	}
	loadAll(t, r)
}

func TestGCDeletesOrphanPack(t *testing.T) {
	r, be := newGCRepo(t)
	commit(t, r, "a", 1, 2)
	// Another worker saves a full pack, then dies before its index.
	w := openGCRepo(t, be)
	for i := range 20 {
		saveBlob(t, w, blobOf(500+i))
	}
	w.Close()
	rep := checkClean(t, be)
	if len(rep.Unreferenced) == 0 {
		t.Fatal("no orphan pack: the test made none")
	}
	orphans := len(rep.Unreferenced)

	gc := runGC(t, r, gcNow)
	if gc.PacksDeleted != orphans || gc.BlobsRemoved != 0 {
		t.Fatalf("GC: %+v, want %d orphans deleted", gc, orphans)
	}
	if rep := checkClean(t, be); len(rep.Unreferenced) != 0 {
		t.Fatalf("unreferenced packs after GC: %v", rep.Unreferenced)
	}
	loadAll(t, r)
}

func TestGCGracePeriod(t *testing.T) {
	ctx := context.Background()
	r, be := newGCRepo(t)
	a := commit(t, r, "a", seq(0, 30)...)
	commit(t, r, "b", seq(30, 40)...)
	if err := r.RemoveSnapshot(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	packs := countObjects(t, be, "data")
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) repo.GCOptions {
		return repo.GCOptions{Grace: time.Hour, Now: func() time.Time { return t0.Add(d) }}
	}

	rep := runGC(t, r, at(0))
	if rep.PacksCondemned == 0 || rep.PacksDeleted != 0 || rep.PendingPacks != rep.PacksCondemned || rep.PendingBytes == 0 {
		t.Fatalf("first GC: %+v, want packs condemned, none deleted", rep)
	}
	if !rep.PendingUntil.Equal(t0.Add(time.Hour)) {
		t.Fatalf("PendingUntil = %v, want %v", rep.PendingUntil, t0.Add(time.Hour))
	}
	if n := countObjects(t, be, "data"); n != packs {
		t.Fatalf("%d packs after the first GC, want %d", n, packs)
	}
	checkClean(t, be) // condemned packs are not damage
	loadAll(t, openGCRepo(t, be))

	rep = runGC(t, r, at(59*time.Minute))
	if rep.PacksDeleted != 0 || rep.PacksCondemned != 0 || rep.PendingPacks == 0 {
		t.Fatalf("GC before the grace ended: %+v", rep)
	}
	rep = runGC(t, r, at(61*time.Minute))
	if rep.PacksDeleted == 0 || rep.PendingPacks != 0 {
		t.Fatalf("GC after the grace ended: %+v", rep)
	}
	if n := countObjects(t, be, "data"); n != packs-rep.PacksDeleted {
		t.Fatalf("%d packs after deleting %d of %d", n, rep.PacksDeleted, packs)
	}
	checkClean(t, be)
	loadAll(t, r)
}

func TestGCDryRunChangesNothing(t *testing.T) {
	ctx := context.Background()
	r, be := newGCRepo(t)
	a := commit(t, r, "a", seq(0, 30)...)
	commit(t, r, "b", 3, 31)
	if err := r.RemoveSnapshot(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	packs, indexes := countObjects(t, be, "data"), countObjects(t, be, "index")
	rep := runGC(t, r, repo.GCOptions{Grace: repo.NoGrace, DryRun: true})
	if rep.PacksCondemned == 0 || rep.PacksRepacked == 0 || rep.PendingPacks != rep.PacksCondemned || rep.PacksDeleted != 0 {
		t.Fatalf("dry run: %+v", rep)
	}
	if countObjects(t, be, "data") != packs || countObjects(t, be, "index") != indexes || countObjects(t, be, "plans") != 0 {
		t.Fatal("dry run changed the repository")
	}
	if !r.HasBlob(repo.DataBlob, r.BlobID(blobOf(0))) {
		t.Fatal("dry run made a pack dead")
	}

	// A plan that is due is reported as deleted by a dry run, and left alone.
	t0 := time.Now()
	runGC(t, r, repo.GCOptions{Grace: time.Hour, Now: func() time.Time { return t0 }})
	later := func() time.Time { return t0.Add(2 * time.Hour) }
	rep = runGC(t, r, repo.GCOptions{Grace: time.Hour, Now: later, DryRun: true, LockStale: 24 * time.Hour})
	if rep.PacksDeleted == 0 || rep.BytesFreed == 0 || rep.PendingPacks != 0 {
		t.Fatalf("dry run with a due plan: %+v", rep)
	}
	if countObjects(t, be, "plans") != 1 || countObjects(t, be, "data") < packs {
		t.Fatal("dry run carried out the plan")
	}
}

func TestGCRefusesWhenIndexDamaged(t *testing.T) {
	ctx := context.Background()
	r, be := newGCRepo(t)
	old := commit(t, r, "old", seq(0, 10)...)
	commit(t, r, "b", 20)
	if err := r.RemoveSnapshot(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	idx, err := filepath.Glob(filepath.Join(be.Dir(), "index", "*"))
	if err != nil || len(idx) == 0 {
		t.Fatal("no index file", err)
	}
	testkit.FlipByte(t, idx[0], 20)
	packs := countObjects(t, be, "data")
	_, err = openGCRepo(t, be).GC(ctx, gcNow)
	if !errors.Is(err, repo.ErrDamaged) || !strings.Contains(err.Error(), "deletes nothing") {
		t.Fatalf("GC with a damaged index file: %v, want ErrDamaged and \"deletes nothing\"", err)
	}
	if countObjects(t, be, "data") != packs || countObjects(t, be, "plans") != 0 {
		t.Fatal("GC changed the repository")
	}
}

func TestGCProgress(t *testing.T) {
	ctx := context.Background()
	r, _ := newGCRepo(t)
	old := commit(t, r, "old", seq(0, 10)...)
	commit(t, r, "b", 1, 20)
	if err := r.RemoveSnapshot(ctx, old.ID); err != nil {
		t.Fatal(err)
	}
	last := map[string]repo.GCProgress{}
	o := gcNow
	o.Progress = func(p repo.GCProgress) { last[p.Phase] = p }
	runGC(t, r, o)
	for _, phase := range []string{"mark", "repack", "delete"} {
		p, ok := last[phase]
		if !ok || p.Done != p.Total || p.Total == 0 {
			t.Errorf("last %s progress %+v (reported: %v)", phase, p, ok)
		}
	}
}

// TestGCInterrupted stops GC after each of its steps in turn, as a crash would, and
// checks the repository each time: clean, every snapshot whole, and the next GC finishes
// the work.
func TestGCInterrupted(t *testing.T) {
	for stop := 1; ; stop++ {
		ctx := context.Background()
		r, be := newGCRepo(t)
		old := commit(t, r, "old", seq(0, 30)...)
		commit(t, r, "keep", 2, 3, 40)
		if err := r.RemoveSnapshot(ctx, old.ID); err != nil {
			t.Fatal(err)
		}
		var steps []string
		gctx, cancel := context.WithCancel(ctx)
		o := repo.WithGCStep(gcNow, func(step string) error {
			steps = append(steps, step)
			if len(steps) == stop {
				cancel()
				return gctx.Err()
			}
			return nil
		})
		_, err := r.GC(gctx, o)
		cancel()
		if err == nil {
			if stop < 5 {
				t.Fatalf("GC finished after %d steps (%v); the test expects more", len(steps), steps)
			}
			break
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("stop after %v: GC: %v", steps, err)
		}
		checkClean(t, be)
		if got := loadAll(t, openGCRepo(t, be)); got != 4 {
			t.Fatalf("stop after %v: loaded %d data blobs, want 4", steps, got)
		}
		runGC(t, openGCRepo(t, be), gcNow)
		rep := checkClean(t, be)
		if len(rep.Unreferenced) != 0 || countObjects(t, be, "plans") != 0 {
			t.Fatalf("stop after %v: the next GC left unreferenced packs %v or plans", steps, rep.Unreferenced)
		}
		if got := loadAll(t, openGCRepo(t, be)); got != 4 {
			t.Fatalf("stop after %v, then GC: loaded %d data blobs, want 4", steps, got)
		}
		if r := openGCRepo(t, be); r.HasBlob(repo.DataBlob, r.BlobID(blobOf(10))) {
			t.Fatalf("stop after %v, then GC: garbage left", steps)
		}
	}
}

func TestGCRemovesDamagedPlan(t *testing.T) {
	r, be := newGCRepo(t)
	commit(t, r, "a", 1, 2)
	bad := filepath.Join(be.Dir(), "plans", strings.Repeat("ab", 32))
	if err := os.WriteFile(bad, []byte("not a plan"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.ReloadIndex(context.Background()); err != nil {
		t.Fatalf("ReloadIndex with a damaged plan: %v", err)
	}
	if len(repo.KnownPlans(r)) != 0 {
		t.Fatal("a damaged plan is known")
	}
	runGC(t, r, gcNow)
	if _, err := os.Stat(bad); !os.IsNotExist(err) {
		t.Fatalf("damaged plan still there: %v", err)
	}
	loadAll(t, r)
}

// TestGCRepackInGroupsWithFlushes repacks live blobs in many small range reads,
// flushing every 2 blobs, and checks that every live blob loads from where the index now
// says, that some moved out of a repacked pack, and that the repository checks clean.
func TestGCRepackInGroupsWithFlushes(t *testing.T) {
	defer repo.SetRepackLimits(2500, 2)()
	ctx := context.Background()
	r, be := newGCRepo(t)
	a := commit(t, r, "a", seq(0, 30)...)
	live := []int{1, 4, 5, 6, 12, 20, 29}
	commit(t, r, "b", live...)
	was := make(map[int]repo.ID)
	for _, n := range live {
		pb, _ := r.LookupBlob(repo.DataBlob, r.BlobID(blobOf(n)))
		was[n] = pb.Pack
	}
	if err := r.RemoveSnapshot(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	rep := runGC(t, r, gcNow)
	if rep.PacksRepacked == 0 || rep.PacksDeleted == 0 {
		t.Fatalf("GC: %+v, want a pack repacked and deleted", rep)
	}
	moved := 0
	for _, n := range live {
		pb, ok := r.LookupBlob(repo.DataBlob, r.BlobID(blobOf(n)))
		if !ok {
			t.Fatalf("blob %d not in the index after repack", n)
		}
		if pb.Pack != was[n] {
			moved++
		}
		got, err := r.LoadBlob(ctx, repo.DataBlob, r.BlobID(blobOf(n)), nil)
		if err != nil || !bytes.Equal(got, blobOf(n)) {
			t.Fatalf("blob %d after repack: %v", n, err)
		}
	}
	if moved < 2 {
		t.Fatalf("%d blobs moved; want the repack to have copied several", moved)
	}
	loadAll(t, r)
	checkClean(t, be)
}
