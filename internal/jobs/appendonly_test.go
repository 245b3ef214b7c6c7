package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/repo/limit"
	"github.com/brr-dev/brr/internal/testkit"
)

// wantAppendOnly fails unless err is the permanent refusal of an append-only repo, in
// words that name the option and say where to run the job instead.
func wantAppendOnly(t testing.TB, what string, err error) {
	t.Helper()
	if !errors.Is(err, repo.ErrAppendOnly) {
		t.Fatalf("%s: err = %v, want one wrapping repo.ErrAppendOnly", what, err)
	}
	if !brr.IsPermanent(err) {
		t.Errorf("%s: err = %v is retried; want it permanent", what, err)
	}
	for _, s := range []string{"repository is append_only", "does not set append_only for repo local", "storage credential may delete"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("%s: err = %q, want it to say %q", what, err, s)
		}
	}
}

// Backups into an append-only repo work; prune, with or without a policy, and the
// removal of a recovery point fail at once for good and lose nothing: every object is
// there with its bytes, and every snapshot restores and verifies.
func TestAppendOnlyRepo(t *testing.T) {
	opts := testkit.RepoOptions()
	opts.AppendOnly = true
	b := setupWith(t, opts)
	c := testkit.NewClock(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC))
	b.engine.Now = c.Now
	b.engine.PruneGrace = repo.NoGrace
	ctx := context.Background()
	src := t.TempDir()
	ids := hourly(t, b, c, src, 4)
	if _, err := checkpoint(b.engine, "cp-1", brr.CheckpointJob{Snapshot: ids[0], Label: "before-migration"}); err != nil {
		t.Fatalf("checkpoint in an append-only repo: %v", err)
	}
	// The writer locks of the backups came and went.
	if locks, err := os.ReadDir(filepath.Join(b.dir, "locks")); err != nil || len(locks) != 0 {
		t.Fatalf("locks after the backups: %d, %v; want none", len(locks), err)
	}
	before := objects(t, b.dir)

	for _, p := range []*brr.RetentionPolicy{{KeepLast: 1}, nil} {
		res, err := b.engine.Prune(ctx, "prune-1", brr.PruneJob{Policy: p}, nil)
		wantAppendOnly(t, "prune", err)
		if res != nil {
			t.Errorf("refused prune result %+v, want none", res)
		}
	}
	_, err := checkpoint(b.engine, "cp-rm", brr.CheckpointJob{Label: "before-migration", Remove: true})
	wantAppendOnly(t, "checkpoint removal", err)

	// A dry run tells what a prune elsewhere would remove, and changes nothing either.
	dry, err := b.engine.Prune(ctx, "prune-dry", brr.PruneJob{Policy: &brr.RetentionPolicy{KeepLast: 1}, DryRun: true}, nil)
	if err != nil {
		t.Fatalf("dry-run prune: %v", err)
	}
	if got, want := len(dry.Removed), 2; got != want { // the newest kept, the oldest pinned
		t.Errorf("dry-run prune would remove %d snapshots, want %d", got, want)
	}

	if after := objects(t, b.dir); !maps.Equal(before, after) {
		t.Fatalf("objects changed:\nbefore %v\nafter  %v", before, after)
	}
	if got := snapshotIDs(t, b.engine); len(got) != len(ids) {
		t.Fatalf("%d snapshots after the refused prune, want %d", len(got), len(ids))
	}
	if p, err := b.repo.Pin(ctx, "before-migration"); err != nil || p.Snapshot.String() != ids[0] {
		t.Fatalf("recovery point after the refused removal: %+v, %v", p, err)
	}
	for i, id := range ids {
		dir := filepath.Join(t.TempDir(), "restore")
		restore(t, b.engine, id, dir)
		got, err := os.ReadFile(filepath.Join(dir, "changing.bin"))
		if err != nil || !bytes.Equal(got, randomBytes(uint64(100+i), 64<<10)) {
			t.Fatalf("snapshot %d restored changing.bin: %d bytes, %v; not what was backed up", i, len(got), err)
		}
	}
	v, err := b.engine.Verify(ctx, "verify-1", brr.VerifyJob{ReadData: true}, nil)
	if err != nil || !v.OK() || v.Snapshots != len(ids) {
		t.Fatalf("verify = %+v, %v; want %d snapshots, no damage", v, err, len(ids))
	}

	// The same repository, opened by a worker without append_only, prunes.
	r, err := openRepo(t, b.dir, []byte(testkit.Password))
	if err != nil {
		t.Fatal(err)
	}
	b.engine.Repos["local"] = r
	res, err := b.engine.Prune(ctx, "prune-2", brr.PruneJob{Policy: &brr.RetentionPolicy{KeepLast: 1}}, nil)
	if err != nil || len(res.Removed) != 2 {
		t.Fatalf("prune without append_only = %+v, %v; want 2 snapshots removed", res, err)
	}
}

// Replication into an append-only target, throttled both ways (the two settings of an
// offsite repo together): the copy is complete, one delivered again saves nothing, and
// the target's writer locks are gone afterwards.
func TestReplicateIntoAppendOnlyTarget(t *testing.T) {
	ctx := context.Background()
	offDir := t.TempDir()
	fb, err := file.Open(offDir)
	if err != nil {
		t.Fatal(err)
	}
	opts := testkit.RepoOptions()
	opts.AppendOnly = true
	off, err := repo.Init(ctx, limit.Wrap(fb, 64<<10, 64<<10), offsitePassword, opts) // 64 MiB/s
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { off.Close() })
	b := newReplicaBundle(t, off)
	src := sourceOfDirs(t, 3, 3, 100<<10)
	snap := backup(t, b.engine, "ao-1", src).Snapshot
	res := replicate(t, b.engine, "ao-repl", brr.ReplicateJob{Snapshot: "latest", To: "offsite"})
	if len(res.Snapshots) != 1 || res.Snapshots[0] != snap {
		t.Fatalf("replicated %v, want %s", res.Snapshots, snap)
	}
	before := objects(t, offDir)
	again := replicate(t, b.engine, "ao-repl", brr.ReplicateJob{Snapshot: "latest", To: "offsite"})
	if again.BlobsSent != 0 {
		t.Errorf("the replication delivered again sent %d blobs, want 0", again.BlobsSent)
	}
	if after := objects(t, offDir); !maps.Equal(before, after) {
		t.Errorf("the replication delivered again changed the target:\nbefore %v\nafter  %v", before, after)
	}
	if locks, err := os.ReadDir(filepath.Join(offDir, "locks")); err != nil || len(locks) != 0 {
		t.Fatalf("target locks after replication: %d, %v; want none", len(locks), err)
	}
	target := filepath.Join(t.TempDir(), "restore")
	restoreFrom(t, b.engine, "offsite", snap, target)
	compareTrees(t, src, target)
}
