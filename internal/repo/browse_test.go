package repo_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/faulty"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

func TestSplitPath(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{"", nil, false},
		{"/", nil, false},
		{"/etc/hosts", []string{"etc", "hosts"}, false},
		{"etc//hosts/", []string{"etc", "hosts"}, false},
		{"./etc/./hosts", []string{"etc", "hosts"}, false},
		{"//etc", []string{"etc"}, false},
		{"..", nil, true},
		{"/../etc", nil, true},
		{"etc/../../x", nil, true},
		{"a/..", nil, true},
		{"a\x00b", nil, true},
		{"a/...", []string{"a", "..."}, false},
	} {
		got, err := repo.SplitPath(c.in)
		if c.bad {
			if err == nil || !errors.Is(err, brr.ErrInvalid) {
				t.Errorf("SplitPath(%q) = %v, %v; want an error wrapping ErrInvalid", c.in, got, err)
			}
			continue
		}
		if err != nil || !slices.Equal(got, c.want) {
			t.Errorf("SplitPath(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

// synthetic saves a snapshot of dirs directories of files files each (all of one small
// content blob) under a root, and returns it; names are d0000…, f0000….
func synthetic(tb testing.TB, r *repo.Repository, dirs, files int) *repo.Snapshot {
	tb.Helper()
	ctx := context.Background()
	content := []byte("the same small content in every file")
	blob := r.BlobID(content)
	if _, _, err := r.SaveBlob(ctx, repo.DataBlob, blob, content); err != nil {
		tb.Fatal(err)
	}
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	root := &repo.Tree{}
	for d := range dirs {
		t := &repo.Tree{Nodes: make([]*repo.Node, 0, files)}
		for f := range files {
			t.Nodes = append(t.Nodes, &repo.Node{Name: fmt.Sprintf("f%04d", f), Type: repo.NodeFile, Mode: 0o644, ModTime: mtime,
				Size: int64(len(content)), Content: []repo.ID{blob}, Inode: uint64(d*files + f), Links: 1})
		}
		id, err := r.SaveTree(ctx, t)
		if err != nil {
			tb.Fatal(err)
		}
		root.Nodes = append(root.Nodes, &repo.Node{Name: fmt.Sprintf("d%04d", d), Type: repo.NodeDir, Mode: 0o755 | 1<<31, ModTime: mtime, Subtree: id})
	}
	rootID, err := r.SaveTree(ctx, root)
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		tb.Fatal(err)
	}
	sn := &repo.Snapshot{ID: r.SnapshotIDFor(tb.Name()), Time: mtime, Source: "/synthetic", Tree: rootID,
		Files: int64(dirs * files), Dirs: int64(dirs)}
	if err := r.SaveSnapshot(ctx, sn); err != nil {
		tb.Fatal(err)
	}
	return sn
}

// reopenCounting opens the repository in dir again through a backend that counts loads.
func reopenCounting(tb testing.TB, dir string) (*repo.Repository, *faulty.Backend) {
	tb.Helper()
	be, err := file.Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	fb := faulty.New(be)
	r, err := repo.Open(context.Background(), fb, []byte(testkit.Password), testOpts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { r.Close() })
	return r, fb
}

// TestLookupLoadsOnlyThePath looks up and lists one directory of a snapshot of 50
// directories and counts what is read: the trees on the path, no other.
func TestLookupLoadsOnlyThePath(t *testing.T) {
	dir := t.TempDir()
	w, _ := testkit.InitRepo(t, dir, testOpts)
	sn := synthetic(t, w, 50, 20)
	r, fb := reopenCounting(t, dir)
	ctx := context.Background()
	before := fb.Loads(repo.PackFile)
	n, err := r.Lookup(ctx, sn.Tree, []string{"d0025"})
	if err != nil || n.Type != repo.NodeDir {
		t.Fatalf("Lookup d0025 = %+v, %v", n, err)
	}
	tree, err := r.LoadTree(ctx, n.Subtree)
	if err != nil || len(tree.Nodes) != 20 {
		t.Fatalf("list d0025: %v, %v", tree, err)
	}
	if got := fb.Loads(repo.PackFile) - before; got != 2 {
		t.Errorf("listing one directory read %d blobs from packs, want 2 (the root's tree and its own)", got)
	}
	for _, c := range []struct {
		path []string
		says string
	}{
		{[]string{"nope"}, "no /nope in the snapshot"},
		{[]string{"d0001", "f0001", "x"}, "/d0001/f0001 is a file, not a directory"},
	} {
		if _, err := r.Lookup(ctx, sn.Tree, c.path); !errors.Is(err, brr.ErrNotFound) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("Lookup %v: %v, want ErrNotFound saying %q", c.path, err, c.says)
		}
	}
}

// TestDiffTreesSkipsSharedSubtrees diffs two snapshots that share all but one directory:
// only the root trees and that directory's are read, and the changes are exactly the
// ones made.
func TestDiffTreesSkipsSharedSubtrees(t *testing.T) {
	dir := t.TempDir()
	w, _ := testkit.InitRepo(t, dir, testOpts)
	ctx := context.Background()
	a := synthetic(t, w, 30, 10)
	root, err := w.LoadTree(ctx, a.Tree)
	if err != nil {
		t.Fatal(err)
	}
	d7 := root.Find("d0007")
	sub, err := w.LoadTree(ctx, d7.Subtree)
	if err != nil {
		t.Fatal(err)
	}
	sub.Nodes[3] = &repo.Node{Name: "f0003", Type: repo.NodeFile, Mode: 0o600, ModTime: sub.Nodes[3].ModTime, Size: sub.Nodes[3].Size, Content: sub.Nodes[3].Content} // mode
	sub.Nodes = append(sub.Nodes[:5], sub.Nodes[6:]...)                                                                                                               // f0005 removed
	sub.Nodes = append(sub.Nodes, &repo.Node{Name: "zz", Type: repo.NodeSymlink, LinkTarget: "f0001"})                                                                // added
	id, err := w.SaveTree(ctx, sub)
	if err != nil {
		t.Fatal(err)
	}
	d7.Subtree = id
	rootB, err := w.SaveTree(ctx, root)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r, fb := reopenCounting(t, dir)
	before := fb.Loads(repo.PackFile)
	var got []string
	err = r.DiffTrees(ctx, a.Tree, rootB, "/", func(p string, old, cur *repo.Node) error {
		switch {
		case old == nil:
			got = append(got, "+"+p)
		case cur == nil:
			got = append(got, "-"+p)
		default:
			got = append(got, "~"+p+" "+strings.Join(repo.NodeChanges(old, cur), ","))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"~/d0007/f0003 mode", "-/d0007/f0005", "+/d0007/zz"}; !slices.Equal(got, want) {
		t.Errorf("diff = %q, want %q", got, want)
	}
	if loads := fb.Loads(repo.PackFile) - before; loads != 4 {
		t.Errorf("the diff read %d trees, want 4 (both roots, both /d0007)", loads)
	}
}

// BenchmarkBrowse1M lists one directory (1000 entries) of a synthetic snapshot of one
// million files in 1000 directories, in a file repository opened afresh: resolve the
// snapshot by id prefix, look the directory up, load its tree, build its entries. This
// is what a worker does for `brr ls SNAP /d0500` before it streams the answer.
// Run it with `make bench-browse`.
func BenchmarkBrowse1M(b *testing.B) {
	const dirs, files = 1000, 1000
	dir := b.TempDir()
	start := time.Now()
	w, _ := testkit.InitRepo(b, dir, testOpts)
	sn := synthetic(b, w, dirs, files)
	w.Close()
	b.Logf("built a snapshot of %d files in %d directories in %s", dirs*files, dirs, time.Since(start).Round(time.Millisecond))
	r, fb := reopenCounting(b, dir)
	ctx := context.Background()
	prefix := sn.ID.String()[:8]
	before := fb.Loads(repo.PackFile)
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		found, err := r.FindSnapshot(ctx, prefix, "", nil)
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("d%04d", (i*37)%dirs)
		n, err := r.Lookup(ctx, found.Tree, []string{name})
		if err != nil {
			b.Fatal(err)
		}
		t, err := r.LoadTree(ctx, n.Subtree)
		if err != nil {
			b.Fatal(err)
		}
		entries := make([]brr.TreeEntry, 0, len(t.Nodes))
		for _, n := range t.Nodes {
			entries = append(entries, brr.TreeEntry{Path: "/" + name + "/" + n.Name, Name: n.Name, Type: string(n.Type), Mode: n.Mode, Size: n.Size, ModTime: n.ModTime})
		}
		if len(entries) != files {
			b.Fatalf("%d entries, want %d", len(entries), files)
		}
	}
	b.ReportMetric(float64(fb.Loads(repo.PackFile)-before)/float64(b.N), "trees/op")
}
