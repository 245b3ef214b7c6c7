package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestCancelledBackupKeepsPacks cancels a backup midway, then backs the same tree up with
// a Repository opened afresh (as another worker, or this one after a restart, would):
// the packs the cancelled backup wrote are in the index, so the second backup stores
// only the rest, and no snapshot of the cancelled one exists.
func TestCancelledBackupKeepsPacks(t *testing.T) {
	dir, src := t.TempDir(), t.TempDir()
	const files, size = 8, 8 << 20
	for i := range files {
		testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("f%02d", i)), randomBytes(uint64(100+i), size), 0o644)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	fbe, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The cancel comes once 16 MiB of packs are saved (cancelAfterPacks, from the
	// replication tests): midway, whatever the machine's speed.
	const before = 16 << 20
	be := &cancelAfterPacks{Backend: fbe, bytes: before, cancel: func() { cancel(errors.New("cancelled by the test")) }}
	r, err := repo.Init(context.Background(), be, []byte(testkit.Password), testkit.RepoOptions())
	if err != nil {
		t.Fatalf("init repo: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	e := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r}, Host: "testhost", Worker: "worker-1"}
	_, err = e.Backup(ctx, "cancel-1", brr.BackupJob{Path: src}, nil)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled backup: %v, want context.Canceled", err)
	}
	if snaps, err := r.Snapshots(context.Background()); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots after the cancel = %d (%v), want none", len(snaps), err)
	}

	again, err := openRepo(t, dir, []byte(testkit.Password))
	if err != nil {
		t.Fatalf("open repo again: %v", err)
	}
	e2 := &jobs.Engine{Repos: map[string]*repo.Repository{"local": again}, Host: "testhost", Worker: "worker-2"}
	res := backup(t, e2, "cancel-2", src)
	total := int64(files * size)
	t.Logf("cancelled after %d bytes of packs were saved; the next backup stored %d of %d bytes", be.stored.Load(), res.BytesAdded, total)
	if res.BytesAdded > total-before {
		t.Errorf("the next backup stored %d of %d bytes: it did not reuse the %d bytes of packs the cancelled one wrote", res.BytesAdded, total, be.stored.Load())
	}
}
