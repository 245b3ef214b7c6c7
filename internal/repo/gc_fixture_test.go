package repo_test

// The GC fixture: a repository with small packs, snapshots of numbered blobs, and the
// checks the GC, lock, append-only and GC-worker tests make of what is left.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// gcOpts has small packs, so that a few KB of blobs spread over several packs.
var gcOpts = repo.Options{PackSize: 8 << 10, KDF: testOpts.KDF, Host: "gc-test"}

// gcNow is GC with no grace period: one call condemns and deletes.
var gcNow = repo.GCOptions{Grace: repo.NoGrace}

// newGCRepo creates a repository with small packs and returns it with its backend.
func newGCRepo(t testing.TB) (*repo.Repository, *file.Backend) {
	t.Helper()
	return testkit.InitRepo(t, t.TempDir(), gcOpts)
}

// openGCRepo opens another Repository on be: another worker.
func openGCRepo(t testing.TB, be repo.Backend) *repo.Repository {
	t.Helper()
	r, err := repo.Open(context.Background(), be, password, gcOpts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

// blobOf returns the content of blob number n: the same n gives the same blob, so
// snapshots that share numbers share blobs.
func blobOf(n int) []byte {
	return randomBytes(uint64(n)+1000, 1000+n%7*100)
}

// commit saves a snapshot of one directory holding a file per blob number in ns, and a
// subdirectory holding the first of them again.
func commit(t testing.TB, r *repo.Repository, name string, ns ...int) *repo.Snapshot {
	t.Helper()
	sn, err := tryCommit(context.Background(), r, name, ns...)
	if err != nil {
		t.Fatalf("commit %s: %v", name, err)
	}
	return sn
}

func tryCommit(ctx context.Context, r *repo.Repository, name string, ns ...int) (*repo.Snapshot, error) {
	return commitPausing(ctx, r, name, nil, ns...)
}

// commitPausing is tryCommit calling pause, when not nil, after the data blobs are saved
// (reused or stored) and before the snapshot is: the window in which a writer relies on
// blobs no snapshot protects yet.
func commitPausing(ctx context.Context, r *repo.Repository, name string, pause func(), ns ...int) (*repo.Snapshot, error) {
	var root repo.Tree
	for i, n := range ns {
		data := blobOf(n)
		id := r.BlobID(data)
		if _, _, err := r.SaveBlob(ctx, repo.DataBlob, id, data); err != nil {
			return nil, err
		}
		root.Nodes = append(root.Nodes, &repo.Node{Name: fmt.Sprintf("f%03d", i), Type: repo.NodeFile, Size: int64(len(data)), Content: []repo.ID{id}})
	}
	if pause != nil {
		pause()
	}
	if len(ns) > 0 {
		sub := repo.Tree{Nodes: []*repo.Node{{Name: "again", Type: repo.NodeFile, Content: []repo.ID{r.BlobID(blobOf(ns[0]))}}}}
		subID, err := r.SaveTree(ctx, &sub)
		if err != nil {
			return nil, err
		}
		root.Nodes = append(root.Nodes, &repo.Node{Name: "sub", Type: repo.NodeDir, Subtree: subID})
	}
	tree, err := r.SaveTree(ctx, &root)
	if err != nil {
		return nil, err
	}
	if err := r.Flush(ctx); err != nil {
		return nil, err
	}
	sn := &repo.Snapshot{ID: r.SnapshotIDFor(name), Time: time.Now(), Source: "/" + name, Tree: tree}
	if err := r.SaveSnapshot(ctx, sn); err != nil {
		return nil, err
	}
	return sn, nil
}

// loadAll walks every snapshot in r and loads every blob; it returns how many data blobs
// it loaded.
func loadAll(t testing.TB, r *repo.Repository) int {
	t.Helper()
	ctx := context.Background()
	sns, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatalf("Snapshots: %v", err)
	}
	n := 0
	for _, sn := range sns {
		todo := []repo.ID{sn.Tree}
		for len(todo) > 0 {
			id := todo[0]
			todo = todo[1:]
			tr, err := r.LoadTree(ctx, id)
			if err != nil {
				t.Fatalf("snapshot %s: LoadTree: %v", sn.Source, err)
			}
			for _, nd := range tr.Nodes {
				for _, b := range nd.Content {
					if _, err := r.LoadBlob(ctx, repo.DataBlob, b, nil); err != nil {
						t.Fatalf("snapshot %s: %s: LoadBlob: %v", sn.Source, nd.Name, err)
					}
					n++
				}
				if nd.Type == repo.NodeDir {
					todo = append(todo, nd.Subtree)
				}
			}
		}
	}
	return n
}

// checkClean runs Check with ReadData on a fresh Repository and fails on any damage.
func checkClean(t testing.TB, be repo.Backend) *repo.CheckReport {
	t.Helper()
	r := openGCRepo(t, be)
	rep, err := r.Check(context.Background(), repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatalf("Check: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("Check found damage: %+v", rep.Damage)
	}
	return rep
}

func runGC(t testing.TB, r *repo.Repository, o repo.GCOptions) *repo.GCReport {
	t.Helper()
	rep, err := r.GC(context.Background(), o)
	if err != nil {
		t.Fatalf("GC: %v", err)
	}
	return rep
}

func countObjects(t testing.TB, be *file.Backend, dir string) int {
	t.Helper()
	pattern := filepath.Join(be.Dir(), dir, "*")
	if dir == "data" {
		pattern = filepath.Join(be.Dir(), dir, "*", "*")
	}
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return len(m)
}

func storedBytes(t testing.TB, be *file.Backend) int64 {
	t.Helper()
	var n int64
	for _, p := range packFiles(t.(*testing.T), be) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		n += fi.Size()
	}
	return n
}

func seq(from, to int) []int {
	var s []int
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}
