package repo_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
)

// swap exchanges the stored bytes of two objects, as anyone with write access to the
// storage can (a bucket policy, an SFTP account, a mounted disk): no key is needed.
func swap(t *testing.T, be repo.Backend, a, b repo.Handle) {
	t.Helper()
	ctx := context.Background()
	da, err := be.Load(ctx, a, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	db, err := be.Load(ctx, b, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, a, repo.NewByteReader(db)); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, b, repo.NewByteReader(da)); err != nil {
		t.Fatal(err)
	}
}

// TestSwappedSnapshotsAreDamage attacks a repository by swapping two snapshot files.
// Without binding objects to their names, the swap went unnoticed: LoadSnapshot(A)
// returned B's tree (a restore of A gave B's bytes), Check passed, and "latest" moved
// to the older snapshot. Now each snapshot fails authentication under the other's name.
func TestSwappedSnapshotsAreDamage(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	a, _ := backup(t, r, "job-a", "/srv", t0, []byte("old contents"))
	b, _ := backup(t, r, "job-b", "/srv", t0.Add(time.Hour), []byte("new contents"))
	swap(t, be, repo.Handle{Type: repo.SnapshotFile, Name: a.ID.String()}, repo.Handle{Type: repo.SnapshotFile, Name: b.ID.String()})

	r2 := reopen(t, be)
	for _, sn := range []*repo.Snapshot{a, b} {
		got, err := r2.LoadSnapshot(ctx, sn.ID)
		if !errors.Is(err, repo.ErrDamaged) {
			t.Fatalf("LoadSnapshot(%s) after the swap = tree %v, %v; want ErrDamaged", sn.ID.Short(), got, err)
		}
	}
	if sn, err := r2.FindSnapshot(ctx, "latest", "/srv", nil); err == nil {
		t.Fatalf("latest after the swap = %s (time %s), want an error", sn.ID.Short(), sn.Time)
	}
	rep, err := r2.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Fatal("Check --read-data passes a repository whose snapshot files were swapped")
	}
}

// TestMovedObjectsAreDamage moves a plan and an index file under other names; a pin
// moved to another label's name was caught before by its label, and still is.
func TestMovedObjectsAreDamage(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	a, _ := backup(t, r, "job-a", "/srv", t0, []byte("a"))
	backup(t, r, "job-b", "/srv", t0.Add(time.Hour), []byte("b"))

	var index []string
	if err := be.List(ctx, repo.IndexFile, func(fi repo.FileInfo) error { index = append(index, fi.Name); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(index) < 2 {
		t.Fatalf("%d index files, want 2", len(index))
	}
	swap(t, be, repo.Handle{Type: repo.IndexFile, Name: index[0]}, repo.Handle{Type: repo.IndexFile, Name: index[1]})
	rep, err := reopen(t, be).Check(ctx, repo.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.OK() {
		t.Fatal("Check passes a repository whose index files were swapped")
	}
	swap(t, be, repo.Handle{Type: repo.IndexFile, Name: index[0]}, repo.Handle{Type: repo.IndexFile, Name: index[1]})

	// A snapshot copied over the config, and the config under a snapshot's name.
	snap := repo.Handle{Type: repo.SnapshotFile, Name: a.ID.String()}
	cfg := repo.Handle{Type: repo.ConfigFile, Name: "config"}
	swap(t, be, snap, cfg)
	if _, err := repo.Open(ctx, be, password, testOpts); !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("Open with a snapshot as config: %v, want ErrDamaged", err)
	}
	swap(t, be, snap, cfg)
	if _, err := reopen(t, be).LoadSnapshot(ctx, a.ID); err != nil {
		t.Fatalf("swapped back: %v", err)
	}
}

// TestUpgradeFormat1 opens a repository written in format 1 (objects not bound to their
// names), where the swap attack still works, upgrades it, and checks that everything
// reads as before and the attack no longer works.
func TestUpgradeFormat1(t *testing.T) {
	ctx := context.Background()
	restore := repo.WriteFormat1()
	r, be := setup(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	a, content := backup(t, r, "job-a", "/srv", t0, []byte("old contents"))
	b, _ := backup(t, r, "job-b", "/srv", t0.Add(time.Hour), []byte("new contents"))
	if err := r.SavePin(ctx, repo.Pin{Label: "keep", Snapshot: a.ID}); err != nil {
		t.Fatal(err)
	}
	restore()

	old := reopen(t, be) // a second worker that opened the repository before the upgrade
	if v := old.Config().Version; v != 1 {
		t.Fatalf("format %d, want 1", v)
	}
	if _, err := old.LoadSnapshot(ctx, a.ID); err != nil {
		t.Fatalf("format 1 snapshot does not load: %v", err)
	}

	up := reopen(t, be)
	st, err := up.Upgrade(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.From != 1 || st.To != 2 || st.Objects != 3 || st.IndexFiles < 2 || st.Damaged != 0 {
		t.Fatalf("Upgrade = %+v; want 1 → 2, 2 snapshots and a pin, every index file", st)
	}
	if st, err := up.Upgrade(ctx); err != nil || st.Objects+st.IndexFiles != 0 || st.From != 2 {
		t.Fatalf("second Upgrade = %+v, %v; want nothing to do", st, err)
	}

	r2 := reopen(t, be)
	if v := r2.Config().Version; v != 2 {
		t.Fatalf("reopened: format %d, want 2", v)
	}
	rep, err := r2.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil || !rep.OK() || rep.Snapshots != 2 {
		t.Fatalf("Check after the upgrade: %+v, %v", rep, err)
	}
	if p, err := r2.Pin(ctx, "keep"); err != nil || p.Snapshot != a.ID {
		t.Fatalf("pin after the upgrade: %+v, %v", p, err)
	}
	if data, err := r2.LoadBlob(ctx, repo.DataBlob, content[0], nil); err != nil || string(data) != "old contents" {
		t.Fatalf("blob after the upgrade: %q, %v", data, err)
	}

	// The worker that opened it before learns of the upgrade at its next index reload,
	// and from then on refuses objects not bound to their names.
	if err := old.ReloadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	if v := old.Config().Version; v != 2 {
		t.Fatalf("the other worker after ReloadIndex: format %d, want 2", v)
	}
	swap(t, be, repo.Handle{Type: repo.SnapshotFile, Name: a.ID.String()}, repo.Handle{Type: repo.SnapshotFile, Name: b.ID.String()})
	if _, err := old.LoadSnapshot(ctx, a.ID); !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("swapped snapshot after the upgrade: %v, want ErrDamaged", err)
	}
}

// TestUpgradeInterrupted cuts an upgrade short at every save it makes: the repository
// stays readable in format 1, and a second run finishes it.
func TestUpgradeInterrupted(t *testing.T) {
	ctx := context.Background()
	restore := repo.WriteFormat1()
	r, be := setup(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	backup(t, r, "job-a", "/srv", t0, []byte("a"))
	backup(t, r, "job-b", "/srv", t0.Add(time.Hour), []byte("b"))
	restore()
	for cut := 1; ; cut++ {
		up, err := repo.Open(ctx, &cutBackend{Backend: be, left: cut}, password, testOpts)
		if err != nil {
			t.Fatal(err)
		}
		_, uerr := up.Upgrade(ctx)
		up.Close()
		r2 := reopen(t, be)
		rep, err := r2.Check(ctx, repo.CheckOptions{ReadData: true})
		if err != nil || !rep.OK() || rep.Snapshots != 2 {
			t.Fatalf("cut after %d saves: Check %+v, %v", cut, rep, err)
		}
		if uerr == nil {
			if v := r2.Config().Version; v != 2 {
				t.Fatalf("upgrade finished at cut %d, but format %d", cut, v)
			}
			return
		}
		if !strings.Contains(uerr.Error(), "power cut") {
			t.Fatalf("cut after %d saves: %v", cut, uerr)
		}
		if cut > 50 {
			t.Fatal("upgrade never finishes")
		}
	}
}

// cutBackend saves left objects, then fails every Save, as a crash would stop them.
type cutBackend struct {
	repo.Backend
	mu   sync.Mutex
	left int
}

func (b *cutBackend) Save(ctx context.Context, h repo.Handle, rd repo.RewindReader) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.left == 0 {
		return errors.New("power cut")
	}
	b.left--
	return b.Backend.Save(ctx, h, rd)
}

// Close leaves the wrapped backend open: the test goes on using it.
func (b *cutBackend) Close() error { return nil }
