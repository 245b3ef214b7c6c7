package repo_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/testkit"
)

// aoOpts are gcOpts with AppendOnly: small packs, so that a few snapshots make many.
var aoOpts = func() repo.Options { o := gcOpts; o.AppendOnly = true; return o }()

// openAppendOnly opens another Repository on be with AppendOnly: a worker whose config
// says append_only for the repo.
func openAppendOnly(t testing.TB, be repo.Backend) *repo.Repository {
	t.Helper()
	r, err := repo.Open(context.Background(), be, password, aoOpts)
	if err != nil {
		t.Fatalf("Open append-only: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// contents returns every object of be, by handle, with a hash of its bytes.
func contents(t testing.TB, be repo.Backend) map[string]string {
	t.Helper()
	ctx := context.Background()
	out := map[string]string{}
	for _, ft := range repo.FileTypes {
		var names []string
		if err := be.List(ctx, ft, func(fi repo.FileInfo) error { names = append(names, fi.Name); return nil }); err != nil {
			t.Fatalf("List(%s): %v", ft, err)
		}
		for _, n := range names {
			h := repo.Handle{Type: ft, Name: n}
			data, err := be.Load(ctx, h, 0, 0)
			if err != nil {
				t.Fatalf("Load(%s): %v", h, err)
			}
			out[h.String()] = fmt.Sprintf("%d %x", len(data), sha256.Sum256(data))
		}
	}
	return out
}

// sameContents fails unless before and after hold the same objects with the same bytes.
func sameContents(t testing.TB, what string, before, after map[string]string) {
	t.Helper()
	if maps.Equal(before, after) {
		return
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s: %s was %q, now %q", what, k, v, after[k])
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			t.Errorf("%s: %s is new", what, k)
		}
	}
	t.FailNow()
}

// wantAppendOnly fails unless err is the permanent refusal of an append-only repository,
// and says so in words an operator reads.
func wantAppendOnly(t testing.TB, what string, err error) {
	t.Helper()
	if !errors.Is(err, repo.ErrAppendOnly) {
		t.Fatalf("%s = %v, want an error wrapping ErrAppendOnly", what, err)
	}
	if !brr.IsPermanent(err) {
		t.Errorf("%s = %v: not permanent; a retry cannot change the configuration", what, err)
	}
	if !strings.Contains(err.Error(), "repository is append_only: ") {
		t.Errorf("%s = %q: does not name the option", what, err)
	}
}

func TestAppendOnlyBackendGuard(t *testing.T) {
	ctx := context.Background()
	r, _ := testkit.InitRepo(t, t.TempDir(), aoOpts) // Init itself goes through the guard
	if !r.AppendOnly() {
		t.Fatal("AppendOnly() = false for a repository opened with it")
	}
	commit(t, r, "a", seq(0, 10)...)
	be := r.Backend()
	// The packs a backup wrote, removed through the repository's backend.
	var packs []string
	if err := be.List(ctx, repo.PackFile, func(fi repo.FileInfo) error { packs = append(packs, fi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(packs) < 2 {
		t.Fatalf("%d packs, want several", len(packs))
	}
	before := contents(t, be)
	for _, p := range packs {
		wantAppendOnly(t, "Remove of pack", be.Remove(ctx, repo.Handle{Type: repo.PackFile, Name: p}))
	}
	sameContents(t, "after refused Removes of packs", before, contents(t, be))
	if got := loadAll(t, r); got != 11 {
		t.Fatalf("loaded %d data blobs, want 11", got)
	}

	// Objects of every type, saved over and removed.
	for _, ft := range repo.FileTypes {
		h := repo.Handle{Type: ft, Name: backendtest.RandomID(t)}
		if ft == repo.ConfigFile {
			h.Name = "config"
		} else if err := be.Save(ctx, h, repo.NewByteReader([]byte("first"))); err != nil {
			t.Fatalf("Save of a new %s: %v", h, err)
		}
		before := contents(t, be)
		err := be.Save(ctx, h, repo.NewByteReader([]byte("second")))
		if ft == repo.LockFile {
			if err != nil {
				t.Errorf("Save over a writer lock (a refresh): %v", err)
			}
		} else {
			wantAppendOnly(t, "Save over "+string(ft), err)
			sameContents(t, "after a refused Save over "+string(ft), before, contents(t, be))
		}

		before = contents(t, be)
		err = be.Remove(ctx, h)
		switch ft {
		case repo.LockFile, repo.PlanFile:
			if err != nil {
				t.Errorf("Remove of a %s: %v", ft, err)
			}
			if _, err := be.Stat(ctx, h); !repo.IsNotExist(err) {
				t.Errorf("Stat of the removed %s = %v, want not exist", h, err)
			}
		default:
			wantAppendOnly(t, "Remove of "+string(ft), err)
			sameContents(t, "after a refused Remove of "+string(ft), before, contents(t, be))
		}
	}
}

// Backups into an append-only repository work: packs, index files and snapshots are
// added, and the writer locks are saved, saved again and removed.
func TestAppendOnlyBackup(t *testing.T) {
	ctx := context.Background()
	plain, be := newGCRepo(t)
	commit(t, plain, "before", seq(0, 20)...)
	r := openAppendOnly(t, be)
	commit(t, r, "a", seq(10, 40)...)

	// A plan saved by a worker without append_only after r loaded its index: r's lock
	// learns of it on its reload and is saved again under the same name.
	if _, err := repo.SavePlan(ctx, plain, nil); err != nil {
		t.Fatal(err)
	}
	if got := repo.KnownPlans(r); len(got) != 0 {
		t.Fatalf("r knows plans %v before its lock, want none", got)
	}
	release, err := r.LockWriter(ctx, "backup j1")
	if err != nil {
		t.Fatalf("LockWriter: %v", err)
	}
	locks, err := repo.Locks(ctx, r)
	if err != nil || len(locks) != 1 || len(locks[0].Plans) != 1 {
		t.Fatalf("Locks = %d, %v; want one lock naming the plan", len(locks), err)
	}
	commit(t, r, "b", seq(30, 60)...)
	release()
	if locks, err := repo.Locks(ctx, r); err != nil || len(locks) != 0 {
		t.Fatalf("after release: %d locks, %v; want none", len(locks), err)
	}

	sns, err := openGCRepo(t, be).Snapshots(ctx)
	if err != nil || len(sns) != 3 {
		t.Fatalf("Snapshots = %d, %v; want 3", len(sns), err)
	}
	checkClean(t, be)
}

// GC, RemoveSnapshot and RemovePin refuse in an append-only repository and change
// nothing; a dry-run GC reports what a GC elsewhere would do.
func TestAppendOnlyRefusesDeletes(t *testing.T) {
	ctx := context.Background()
	plain, be := newGCRepo(t)
	a := commit(t, plain, "a", seq(0, 40)...)
	b := commit(t, plain, "b", seq(100, 140)...)
	if err := plain.SavePin(ctx, repo.Pin{Label: "keep", Snapshot: b.ID}); err != nil {
		t.Fatal(err)
	}
	// What a GC would delete: the packs only a removed snapshot used, a writer lock and a
	// plan that do not decrypt.
	if err := plain.RemoveSnapshot(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	for _, ft := range []repo.FileType{repo.LockFile, repo.PlanFile} {
		if err := be.Save(ctx, repo.Handle{Type: ft, Name: backendtest.RandomID(t)}, repo.NewByteReader([]byte("garbage"))); err != nil {
			t.Fatal(err)
		}
	}
	r := openAppendOnly(t, be)
	before := contents(t, be)

	for _, o := range []repo.GCOptions{gcNow, {}, {RepackBelow: 0.99}} {
		rep, err := r.GC(ctx, o)
		wantAppendOnly(t, "GC", err)
		if rep == nil || *rep != (repo.GCReport{}) {
			t.Errorf("refused GC reports %+v, want nothing done", rep)
		}
		if !strings.Contains(err.Error(), "without append_only") && !strings.Contains(err.Error(), "does not set append_only") {
			t.Errorf("GC error %q does not say where to run it", err)
		}
	}
	wantAppendOnly(t, "RemoveSnapshot", r.RemoveSnapshot(ctx, b.ID))
	wantAppendOnly(t, "RemovePin", r.RemovePin(ctx, "keep"))
	sameContents(t, "after refused GC, RemoveSnapshot and RemovePin", before, contents(t, be))

	rep, err := r.GC(ctx, repo.GCOptions{Grace: repo.NoGrace, DryRun: true})
	if err != nil {
		t.Fatalf("dry-run GC: %v", err)
	}
	if rep.PacksCondemned == 0 {
		t.Errorf("dry-run GC = %+v, want the packs only snapshot a used condemned", rep)
	}
	sameContents(t, "after a dry-run GC", before, contents(t, be))

	if p, err := r.Pin(ctx, "keep"); err != nil || p.Snapshot != b.ID {
		t.Fatalf("Pin(keep) = %+v, %v; want it still there", p, err)
	}
	if got := loadAll(t, r); got != 41 {
		t.Fatalf("loaded %d data blobs of snapshot b, want 41", got)
	}
	// A worker without append_only still prunes it.
	if rep := runGC(t, plain, gcNow); rep.PacksDeleted == 0 {
		t.Errorf("GC without append_only deleted nothing: %+v", rep)
	}
	checkClean(t, be)
}

// Upgrade does not rewrite an append-only repository in an older format: it says so,
// changes nothing, and the repository goes on taking backups in its format.
func TestAppendOnlyUpgradeRefused(t *testing.T) {
	ctx := context.Background()
	restore := repo.WriteFormat1()
	r, be := setup(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	backup(t, r, "job-a", "/srv", t0, []byte("old contents"))
	restore()

	ao := openAppendOnly(t, be)
	before := contents(t, be)
	st, err := ao.Upgrade(ctx)
	wantAppendOnly(t, "Upgrade", err)
	if st.From != 1 || st.To != 1 || st.Objects+st.IndexFiles != 0 {
		t.Fatalf("refused Upgrade = %+v, want format 1 → 1, nothing rewritten", st)
	}
	sameContents(t, "after a refused Upgrade", before, contents(t, be))

	commit(t, ao, "b", seq(0, 10)...)
	r2 := reopen(t, be)
	if v := r2.Config().Version; v != 1 {
		t.Fatalf("format %d after the refused upgrade, want 1", v)
	}
	if rep := testkit.CheckClean(t, r2); rep.Snapshots != 2 {
		t.Fatalf("Check: %+v; want 2 snapshots", rep)
	}
	// In format 2 already, there is nothing to refuse.
	_, be2 := newGCRepo(t)
	if st, err := openAppendOnly(t, be2).Upgrade(ctx); err != nil || st.From != 2 || st.To != 2 {
		t.Fatalf("Upgrade of a format 2 append-only repository = %+v, %v; want nothing to do", st, err)
	}
}

// The guard wraps once, whatever opens the repository.
func TestAppendOnlyOpenTwice(t *testing.T) {
	r, be := testkit.InitRepo(t, t.TempDir(), aoOpts)
	r2 := openAppendOnly(t, r.Backend())
	if got := r2.Backend().Location(); got != be.Location() {
		t.Fatalf("Location() = %q, want %q", got, be.Location())
	}
	type unwrapper interface{ Unwrap() repo.Backend }
	u, ok := r2.Backend().(unwrapper)
	if !ok {
		t.Fatalf("Backend() = %T, not the guard", r2.Backend())
	}
	if _, twice := u.Unwrap().(unwrapper); twice {
		t.Fatalf("the guard wraps a guard")
	}
}
