package jobs_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

// hourly backs src up n times, an hour apart on clock, changing a file each time; it
// returns the snapshot ids, oldest first.
func hourly(t *testing.T, b *bundle, c *testkit.Clock, src string, n int) []string {
	t.Helper()
	var ids []string
	for i := range n {
		testkit.WriteFile(t, filepath.Join(src, "changing.bin"), randomBytes(uint64(100+i), 64<<10), 0o644)
		testkit.WriteFile(t, filepath.Join(src, "same.txt"), []byte("the same every time"), 0o644)
		ids = append(ids, backup(t, b.engine, fmt.Sprintf("hourly-%d", i), src).Snapshot)
		c.Add(time.Hour)
	}
	return ids
}

// objects lists every file of the repository's directory with its size and mtime.
func objects(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		out[p] = fmt.Sprintf("%d %d", fi.Size(), fi.ModTime().UnixNano())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func snapshotIDs(t *testing.T, e *jobs.Engine) []string {
	t.Helper()
	sns, err := e.Snapshots(context.Background(), "", "")
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, sn := range sns {
		ids = append(ids, sn.ID)
	}
	return ids
}

func TestPruneKeepsPinnedSnapshots(t *testing.T) {
	b := setup(t)
	c := testkit.NewClock(time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC))
	b.engine.Now = c.Now
	b.engine.PruneGrace = repo.NoGrace
	src := t.TempDir()
	ids := hourly(t, b, c, src, 5)
	ctx := context.Background()
	if _, err := checkpoint(b.engine, "pin-old", brr.CheckpointJob{Snapshot: ids[1], Label: "before-migration"}); err != nil {
		t.Fatal(err)
	}
	// The first snapshot, restored before the prune, to compare with after it.
	want := filepath.Join(t.TempDir(), "want")
	restore(t, b.engine, ids[1], want)

	res, err := b.engine.Prune(ctx, "prune-1", brr.PruneJob{Policy: &brr.RetentionPolicy{KeepLast: 1}}, nil)
	if err != nil {
		t.Fatalf("prune: %v", err)
	}
	if res.DryRun || res.Repo != "local" || res.Kept != 2 || len(res.Decisions) != 5 {
		t.Fatalf("prune result %+v, want 2 of 5 kept", res)
	}
	slices.Sort(res.Removed)
	wantRemoved := []string{ids[0], ids[2], ids[3]}
	slices.Sort(wantRemoved)
	if !slices.Equal(res.Removed, wantRemoved) {
		t.Fatalf("removed %v, want %v", res.Removed, wantRemoved)
	}
	reasons := map[string][]string{}
	for _, d := range res.Decisions {
		reasons[d.ID] = d.Reasons
		if d.Keep != (len(d.Reasons) > 0) {
			t.Errorf("decision %+v: keep and reasons disagree", d)
		}
	}
	if got := reasons[ids[4]]; !slices.Equal(got, []string{"last 1/1"}) {
		t.Errorf("newest kept for %q, want last 1/1", got)
	}
	if got := reasons[ids[1]]; !slices.Equal(got, []string{"pinned before-migration"}) {
		t.Errorf("pinned kept for %q, want pinned before-migration", got)
	}
	if got := snapshotIDs(t, b.engine); !slices.Equal(got, []string{ids[1], ids[4]}) {
		t.Fatalf("snapshots after prune = %v, want the pinned and the newest", got)
	}
	t.Logf("prune: %d packs deleted, %d condemned, %d repacked, %d bytes freed, %d pending",
		res.PacksDeleted, res.PacksCondemned, res.PacksRepacked, res.BytesFreed, res.PendingPacks)
	if res.PacksDeleted+res.PacksRepacked == 0 || res.BytesFreed == 0 {
		t.Errorf("prune with no grace freed nothing: %+v", res)
	}

	// What is left is whole: it verifies, and the pinned snapshot restores as before.
	if vr, err := b.engine.Verify(ctx, "verify-after", brr.VerifyJob{ReadData: true}, nil); err != nil || !vr.OK() {
		t.Fatalf("verify after prune: %+v, %v", vr, err)
	}
	got := filepath.Join(t.TempDir(), "got")
	restore(t, b.engine, ids[1], got)
	compareTrees(t, want, got)

	// Unpinned, it goes at the next prune.
	if _, err := checkpoint(b.engine, "unpin", brr.CheckpointJob{Label: "before-migration", Remove: true}); err != nil {
		t.Fatal(err)
	}
	res, err = b.engine.Prune(ctx, "prune-2", brr.PruneJob{Policy: &brr.RetentionPolicy{KeepLast: 1}}, nil)
	if err != nil || !slices.Equal(res.Removed, []string{ids[1]}) {
		t.Fatalf("prune after unpinning removed %v (%v), want %s", res.Removed, err, ids[1])
	}
}

func TestPruneDryRunChangesNothing(t *testing.T) {
	b := setup(t)
	c := testkit.NewClock(time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC))
	b.engine.Now = c.Now
	b.engine.PruneGrace = repo.NoGrace
	b.engine.Retention = map[string]brr.RetentionPolicy{"local": {KeepLast: 2}}
	src := t.TempDir()
	ids := hourly(t, b, c, src, 4)
	before := objects(t, b.dir)

	var phases []string
	res, err := b.engine.Prune(context.Background(), "dry-1", brr.PruneJob{DryRun: true}, func(p brr.Progress) {
		phases = append(phases, p.Phase)
	})
	if err != nil {
		t.Fatalf("dry run: %v", err)
	}
	if !res.DryRun || res.Kept != 2 || len(res.Removed) != 2 {
		t.Fatalf("dry run result %+v, want 2 kept and 2 to remove (the config's keep_last 2)", res)
	}
	for _, d := range res.Decisions {
		switch d.ID {
		case ids[3], ids[2]:
			if !d.Keep || len(d.Reasons) != 1 || !strings.HasPrefix(d.Reasons[0], "last ") {
				t.Errorf("decision on %s: %+v, want kept as one of the last 2", d.ID[:8], d)
			}
		default:
			if d.Keep || len(d.Reasons) != 0 || d.Source != src || d.Time.IsZero() {
				t.Errorf("decision on %s: %+v, want removed", d.ID[:8], d)
			}
		}
	}
	if len(phases) == 0 {
		t.Errorf("dry run reported no progress")
	}
	// The data figures treat the snapshots to remove as gone: their own data shows.
	if res.PacksCondemned+res.PacksRepacked+res.PendingPacks == 0 {
		t.Errorf("dry run shows no data to free after removing 2 snapshots: %+v", res)
	}
	after := objects(t, b.dir)
	if len(before) != len(after) {
		t.Fatalf("dry run changed the repository: %d objects before, %d after", len(before), len(after))
	}
	for p, v := range before {
		if after[p] != v {
			t.Errorf("dry run changed %s: %s → %s", p, v, after[p])
		}
	}
	if got := snapshotIDs(t, b.engine); len(got) != 4 {
		t.Fatalf("%d snapshots after a dry run, want 4", len(got))
	}

	// A job's policy overrides the config's; no policy at all keeps everything.
	res, err = b.engine.Prune(context.Background(), "dry-2", brr.PruneJob{DryRun: true, Policy: &brr.RetentionPolicy{KeepLast: 3}}, nil)
	if err != nil || len(res.Removed) != 1 || res.Removed[0] != ids[0] {
		t.Fatalf("dry run with keep_last 3: %+v, %v", res, err)
	}
	b.engine.Retention = nil
	res, err = b.engine.Prune(context.Background(), "no-policy", brr.PruneJob{}, nil)
	if err != nil || len(res.Removed) != 0 || res.Kept != 4 {
		t.Fatalf("prune with no policy: %+v, %v", res, err)
	}
}

func TestPruneTakesTheRepoLease(t *testing.T) {
	b := setup(t)
	l := newKVLeaser(t)
	b.engine.Leases = l
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "a"), []byte("a"), 0o644)
	backup(t, b.engine, "lease-1", src)
	ctx := context.Background()
	key := jobs.RepoLeaseKey(b.repo)
	if !strings.HasPrefix(key, "repo-") || !strings.Contains(key, b.repo.ID()) {
		t.Fatalf("RepoLeaseKey = %q", key)
	}

	// Held elsewhere: the prune waits its turn.
	_, release, err := l.Acquire(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.engine.Prune(ctx, "prune-held", brr.PruneJob{}, nil)
	if _, snoozed := brr.SnoozeDelay(err); !snoozed {
		t.Fatalf("prune while the repo lease is held: err = %v, want a snooze", err)
	}
	// A dry run changes nothing and needs no lease.
	if _, err := b.engine.Prune(ctx, "prune-dry", brr.PruneJob{DryRun: true}, nil); err != nil {
		t.Fatalf("dry run while the repo lease is held: %v", err)
	}
	release()
	if _, err := b.engine.Prune(ctx, "prune-free", brr.PruneJob{}, nil); err != nil {
		t.Fatalf("prune with the lease free: %v", err)
	}
	// Released at the end: another prune can take it.
	if _, err := b.engine.Prune(ctx, "prune-again", brr.PruneJob{}, nil); err != nil {
		t.Fatalf("second prune: %v", err)
	}
}

// TestPruneConcurrentWithBackups runs backups of changing trees while prunes with no
// grace period run again and again; every snapshot left must verify and restore to the
// tree as it was backed up.
func TestPruneConcurrentWithBackups(t *testing.T) {
	b := setup(t)
	b.engine.PruneGrace = repo.NoGrace
	ctx := context.Background()
	const writers, rounds = 2, 8

	var (
		mu    sync.Mutex
		trees = map[string]string{} // snapshot id -> a copy of the tree it was made from
	)
	var wg sync.WaitGroup
	errs := make(chan error, writers+1)
	for w := range writers {
		src := t.TempDir()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				// Some files change every round, some now and then, one never.
				testkit.WriteFile(t, filepath.Join(src, "fixed.txt"), []byte(fmt.Sprintf("writer %d", w)), 0o644)
				testkit.WriteFile(t, filepath.Join(src, "round.bin"), randomBytes(uint64(1000*w+i), 48<<10), 0o644)
				testkit.WriteFile(t, filepath.Join(src, "dir", fmt.Sprintf("f%d", i%3)), randomBytes(uint64(5000*w+i), 20<<10), 0o644)
				if i%2 == 0 {
					testkit.WriteFile(t, filepath.Join(src, "big.bin"), randomBytes(uint64(9000*w+i), 600<<10), 0o644)
				}
				copyDir := filepath.Join(t.TempDir(), "tree")
				if err := os.CopyFS(copyDir, os.DirFS(src)); err != nil {
					errs <- err
					return
				}
				res, err := b.engine.Backup(ctx, fmt.Sprintf("cc-%d-%d", w, i), brr.BackupJob{Path: src}, nil)
				if err != nil {
					errs <- fmt.Errorf("backup %d/%d: %w", w, i, err)
					return
				}
				mu.Lock()
				trees[res.Snapshot] = copyDir
				mu.Unlock()
			}
		}()
	}
	stop := make(chan struct{})
	var prunes, deleted atomic.Int64
	pruned := make(chan struct{})
	go func() {
		defer close(pruned)
		for {
			select {
			case <-stop:
				return
			default:
			}
			res, err := b.engine.Prune(ctx, fmt.Sprintf("cc-prune-%d", prunes.Load()), brr.PruneJob{Policy: &brr.RetentionPolicy{KeepLast: 2}}, nil)
			if err != nil {
				errs <- fmt.Errorf("prune: %w", err)
				return
			}
			prunes.Add(1)
			deleted.Add(int64(res.PacksDeleted))
		}
	}()
	wg.Wait()
	close(stop)
	<-pruned
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Logf("%d prunes ran beside %d backups; they deleted %d packs", prunes.Load(), writers*rounds, deleted.Load())

	vr, err := b.engine.Verify(ctx, "cc-verify", brr.VerifyJob{ReadData: true}, nil)
	if err != nil || !vr.OK() {
		t.Fatalf("verify after concurrent prunes: %+v, %v", vr, err)
	}
	left := snapshotIDs(t, b.engine)
	if len(left) < writers {
		t.Fatalf("%d snapshots left, want at least the newest of each writer", len(left))
	}
	for _, id := range left {
		target := filepath.Join(t.TempDir(), "out")
		restore(t, b.engine, id, target)
		compareContent(t, trees[id], target)
	}
}

// compareContent fails the test for every file whose content or presence differs
// between the trees below a and b.
func compareContent(t *testing.T, a, b string) {
	t.Helper()
	pairTrees(t, a, b, func(rel string, ea, eb entryInfo) {
		t.Helper()
		if ea.mode.IsRegular() && string(ea.content) != string(eb.content) {
			t.Errorf("%q: restored content differs", rel)
		}
	})
}
