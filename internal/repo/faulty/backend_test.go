package faulty_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/faulty"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

var (
	password = []byte("correct horse battery staple")
	opts     = repo.Options{
		PackSize: 64 << 10, // several packs per backup
		KDF:      testkit.CheapKDF,
		Host:     "test",
	}
)

// setup returns a faulty backend over a new file repository, initialised and holding one
// snapshot, with no fault armed.
func setup(t *testing.T) (*faulty.Backend, *repo.Repository) {
	t.Helper()
	fileBe, err := file.Open(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	fb := faulty.New(fileBe)
	r, err := repo.Init(context.Background(), fb, password, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	if err := backup(t, r, "base", 0); err != nil {
		t.Fatalf("first backup: %v", err)
	}
	return fb, r
}

// backup does what a backup job does with the repository: save the blobs of a few
// files (each job some new, some shared with the other jobs), save their tree, Flush,
// then save the snapshot. It returns the first error, as a job stops at it.
func backup(t *testing.T, r *repo.Repository, job string, seed int) error {
	t.Helper()
	ctx := context.Background()
	var tree repo.Tree
	for f := 0; f < 4; f++ {
		node := &repo.Node{Name: fmt.Sprintf("file-%d", f), Type: repo.NodeFile, Mode: 0o644, ModTime: time.Unix(1e9, 0)}
		for c := 0; c < 3; c++ {
			var data []byte
			if c == 0 {
				data = bytes.Repeat([]byte(fmt.Sprintf("shared %d/%d ", f, c)), 1000) // in every snapshot
			} else {
				data = backendtest.RandomData(t, 20_000+seed*100+f*10+c)
			}
			id := r.BlobID(data)
			if _, _, err := r.SaveBlob(ctx, repo.DataBlob, id, data); err != nil {
				return fmt.Errorf("save blob: %w", err)
			}
			node.Content = append(node.Content, id)
			node.Size += int64(len(data))
		}
		tree.Nodes = append(tree.Nodes, node)
	}
	treeID, err := r.SaveTree(ctx, &tree)
	if err != nil {
		return fmt.Errorf("save tree: %w", err)
	}
	if err := r.Flush(ctx); err != nil {
		return fmt.Errorf("flush: %w", err)
	}
	sn := &repo.Snapshot{ID: r.SnapshotIDFor(job), Time: time.Now(), Source: "/srv/app", Tree: treeID, JobID: job, Files: 4}
	if err := r.SaveSnapshot(ctx, sn); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	return nil
}

// verify opens the repository afresh on the backend without faults and checks it: Check
// finds no damage, and (independently of Check) every blob of every snapshot is indexed
// and loads. It returns the ids of the jobs whose snapshots exist.
func verify(t *testing.T, be repo.Backend) map[string]bool {
	t.Helper()
	ctx := context.Background()
	r, err := repo.Open(ctx, be, password, opts)
	if err != nil {
		t.Fatalf("open after the failure: %v", err)
	}
	defer r.Close()
	testkit.CheckClean(t, r)
	sns, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	jobs := map[string]bool{}
	for _, sn := range sns {
		jobs[sn.JobID] = true
		tree, err := r.LoadTree(ctx, sn.Tree)
		if err != nil {
			t.Fatalf("snapshot of %s: load tree: %v", sn.JobID, err)
		}
		for _, n := range tree.Nodes {
			for _, id := range n.Content {
				if !r.HasBlob(repo.DataBlob, id) {
					t.Fatalf("snapshot of %s: %s references blob %s, which is not indexed", sn.JobID, n.Name, id)
				}
				data, err := r.LoadBlob(ctx, repo.DataBlob, id, nil)
				if err != nil {
					t.Fatalf("snapshot of %s: %s: load blob %s: %v", sn.JobID, n.Name, id, err)
				}
				if r.BlobID(data) != id {
					t.Fatalf("snapshot of %s: blob %s loads with other content", sn.JobID, id)
				}
			}
		}
	}
	return jobs
}

// TestFailedWriteLeavesNoDanglingSnapshot arms a failure at each write a backup makes
// (a pack, the index, the snapshot; first or later; failing cleanly or leaving a
// truncated pack), runs backups until the first error as a job would, and shows that the
// repository, opened afresh, verifies clean: no snapshot points at missing data, and the
// snapshots that committed are exactly those of the jobs that succeeded.
func TestFailedWriteLeavesNoDanglingSnapshot(t *testing.T) {
	type arm func(fb *faulty.Backend)
	cases := []struct {
		name string
		arm  arm
	}{
		{"pack/first", func(fb *faulty.Backend) { fb.FailSave(repo.PackFile, 0, nil) }},
		{"pack/third", func(fb *faulty.Backend) { fb.FailSave(repo.PackFile, 2, nil) }},
		{"pack/tenth", func(fb *faulty.Backend) { fb.FailSave(repo.PackFile, 9, nil) }},
		{"pack/truncated", func(fb *faulty.Backend) { fb.TruncateSave(repo.PackFile, 1, errors.New("disk full")) }},
		{"index/first", func(fb *faulty.Backend) { fb.FailSave(repo.IndexFile, 0, nil) }},
		{"index/second", func(fb *faulty.Backend) { fb.FailSave(repo.IndexFile, 1, nil) }},
		{"snapshot/first", func(fb *faulty.Backend) { fb.FailSave(repo.SnapshotFile, 0, nil) }},
		{"snapshot/third", func(fb *faulty.Backend) { fb.FailSave(repo.SnapshotFile, 2, nil) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fb, r := setup(t)
			tc.arm(fb)
			var failedJob string
			succeeded := map[string]bool{"base": true}
			for i := 1; i <= 6; i++ {
				job := fmt.Sprintf("job-%d", i)
				if err := backup(t, r, job, i); err != nil {
					if !errors.Is(err, faulty.ErrInjected) && !bytes.Contains([]byte(err.Error()), []byte("disk full")) {
						t.Fatalf("%s failed with %v, not the injected fault", job, err)
					}
					failedJob = job
					break
				}
				succeeded[job] = true
			}
			if failedJob == "" || fb.Fired() != 1 {
				t.Fatalf("the fault did not stop a backup (fired %d, %d packs, %d index files, %d snapshots saved)",
					fb.Fired(), fb.Saves(repo.PackFile), fb.Saves(repo.IndexFile), fb.Saves(repo.SnapshotFile))
			}
			t.Logf("%s failed after %d pack, %d index and %d snapshot saves", failedJob,
				fb.Saves(repo.PackFile), fb.Saves(repo.IndexFile), fb.Saves(repo.SnapshotFile))
			r.Close()
			got := verify(t, fb.Unwrap())
			if got[failedJob] {
				t.Errorf("the failed %s has a snapshot", failedJob)
			}
			for job := range succeeded {
				if !got[job] {
					t.Errorf("%s succeeded but its snapshot is missing", job)
				}
			}
			if len(got) != len(succeeded) {
				t.Errorf("snapshots of %v, want those of %v", got, succeeded)
			}
			// The repository still works: a new backup after the failure commits.
			r2, err := repo.Open(context.Background(), fb.Unwrap(), password, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer r2.Close()
			if err := backup(t, r2, "after", 99); err != nil {
				t.Fatalf("backup after the failure: %v", err)
			}
			if got := verify(t, fb.Unwrap()); !got["after"] {
				t.Fatal("the backup after the failure has no snapshot")
			}
		})
	}
}

// TestSilentTruncationIsFound stores a pack or an index truncated while reporting
// success (a lying disk): Check must report it as damage.
func TestSilentTruncationIsFound(t *testing.T) {
	for _, ft := range []repo.FileType{repo.PackFile, repo.IndexFile} {
		t.Run(string(ft), func(t *testing.T) {
			fb, r := setup(t)
			fb.TruncateSave(ft, 0, nil)
			if err := backup(t, r, "job-1", 1); err != nil {
				t.Fatalf("backup: %v", err)
			}
			if fb.Fired() != 1 {
				t.Fatalf("fault fired %d times, want 1", fb.Fired())
			}
			r.Close()
			ctx := context.Background()
			r2, err := repo.Open(ctx, fb.Unwrap(), password, opts)
			if err != nil {
				// A damaged index may already stop Open: that is finding it too.
				if !errors.Is(err, repo.ErrDamaged) {
					t.Fatalf("open: %v, want ErrDamaged or a Check that reports damage", err)
				}
				t.Logf("open refused the repository: %v", err)
				return
			}
			defer r2.Close()
			report, err := r2.Check(ctx, repo.CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if report.OK() {
				t.Fatalf("check found no damage in a repository with a truncated %s", ft)
			}
			t.Logf("check found: %+v", report.Damage)
		})
	}
}

// TestCorruptLoad flips a byte of what a pack read returns: LoadBlob must refuse the
// data rather than return it.
func TestCorruptLoad(t *testing.T) {
	fb, r := setup(t)
	ctx := context.Background()
	data := backendtest.RandomData(t, 5000)
	id := r.BlobID(data)
	if _, _, err := r.SaveBlob(ctx, repo.DataBlob, id, data); err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	fb.CorruptLoad(repo.PackFile, 0)
	if got, err := r.LoadBlob(ctx, repo.DataBlob, id, nil); !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("LoadBlob of corrupted data = %d bytes, %v; want ErrDamaged", len(got), err)
	}
	// Only the one load was corrupted; the stored data is intact.
	if got, err := r.LoadBlob(ctx, repo.DataBlob, id, nil); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("LoadBlob after the fault = %d bytes, %v", len(got), err)
	}
}

// TestSnapshotRemovedWhileListing removes a snapshot between the listing and its load,
// as a prune running beside a backup does: Snapshots must return the others, not fail.
func TestSnapshotRemovedWhileListing(t *testing.T) {
	fb, r := setup(t)
	ctx := context.Background()
	if err := backup(t, r, "second", 1); err != nil {
		t.Fatal(err)
	}
	fb.FailLoad(repo.SnapshotFile, 0, fmt.Errorf("gone: %w", repo.ErrNotExist))
	sns, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatalf("Snapshots with one removed since listed: %v", err)
	}
	if len(sns) != 1 || fb.Fired() != 1 {
		t.Fatalf("Snapshots = %d snapshots (fault fired %d times), want the one left", len(sns), fb.Fired())
	}
}

// TestFaultCounting checks the wrapper itself: which call a fault fires on.
func TestFaultCounting(t *testing.T) {
	fileBe, err := file.Open(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	fb := faulty.New(fileBe)
	ctx := context.Background()
	boom := errors.New("boom")
	fb.FailSave(repo.SnapshotFile, 2, boom)
	fb.FailLoad(repo.SnapshotFile, 0, nil)
	var handles []repo.Handle
	for i := 0; i < 4; i++ {
		h := repo.Handle{Type: repo.SnapshotFile, Name: backendtest.RandomID(t)}
		handles = append(handles, h)
		// Saves of another type do not count.
		if err := fb.Save(ctx, repo.Handle{Type: repo.IndexFile, Name: backendtest.RandomID(t)}, repo.NewByteReader([]byte("i"))); err != nil {
			t.Fatal(err)
		}
		err := fb.Save(ctx, h, repo.NewByteReader([]byte("snapshot")))
		if (i == 2) != errors.Is(err, boom) {
			t.Fatalf("save %d: err = %v", i, err)
		}
	}
	if _, err := fb.Stat(ctx, handles[2]); !repo.IsNotExist(err) {
		t.Fatalf("a failed save stored the object: %v", err)
	}
	if _, err := fb.Load(ctx, handles[0], 0, 0); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("first load: err = %v, want ErrInjected", err)
	}
	fb.CorruptLoad(repo.SnapshotFile, 1)
	// The (1+1)-th load returns the middle byte flipped: 's' (0x73) becomes 'r' (0x72).
	for i, want := range []string{"snapshot", "snaprhot", "snapshot"} {
		got, err := fb.Load(ctx, handles[0], 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Fatalf("load %d = %q, want %q", i, got, want)
		}
	}
	if fb.Armed() != 0 || fb.Fired() != 3 {
		t.Fatalf("armed %d, fired %d; want 0 and 3", fb.Armed(), fb.Fired())
	}
	fb.FailSave(repo.PackFile, 0, nil)
	fb.Reset()
	if err := fb.Save(ctx, repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}, repo.NewByteReader([]byte("p"))); err != nil {
		t.Fatalf("save after Reset: %v", err)
	}
	if got, want := fb.Saves(repo.SnapshotFile), 4; got != want {
		t.Fatalf("Saves(snapshots) = %d, want %d", got, want)
	}
}
