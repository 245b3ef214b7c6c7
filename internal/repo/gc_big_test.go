package repo_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestGCBig measures GC on a repository of 1M tiny blobs: time and peak RSS. It runs only
// with BRR_GC_BIG=1 (and without -race, for figures that mean something):
//
//	BRR_GC_BIG=1 go test -run '^TestGCBig$' -v ./internal/repo/
//
// It builds the repository, then runs GC in a child process so that the child's peak RSS
// (VmHWM) is the open repository and GC alone.
func TestGCBig(t *testing.T) {
	if os.Getenv("BRR_GC_BIG") != "1" {
		t.Skip("set BRR_GC_BIG=1 to measure GC on 1M blobs")
	}
	if dir := os.Getenv("BRR_GC_BIG_DIR"); dir != "" {
		measureBigGC(t, dir)
		return
	}
	const dirs, files = 1000, 1000
	ctx := context.Background()
	dir := t.TempDir()
	r, _ := testkit.InitRepo(t, dir, repo.Options{KDF: testkit.CheapKDF}) // production's 16 MiB packs
	start := time.Now()
	var keep, gone repo.Tree
	data := make([]byte, 24)
	for d := range dirs {
		var tr repo.Tree
		for f := range files {
			binary.LittleEndian.PutUint64(data, uint64(d*files+f))
			id := r.BlobID(data)
			if _, _, err := r.SaveBlob(ctx, repo.DataBlob, id, data); err != nil {
				t.Fatal(err)
			}
			tr.Nodes = append(tr.Nodes, &repo.Node{Name: fmt.Sprintf("f%04d", f), Type: repo.NodeFile, Size: int64(len(data)), Content: []repo.ID{id}})
		}
		sub, err := r.SaveTree(ctx, &tr)
		if err != nil {
			t.Fatal(err)
		}
		n := &repo.Node{Name: fmt.Sprintf("d%04d", d), Type: repo.NodeDir, Subtree: sub}
		if d < dirs/2 {
			keep.Nodes = append(keep.Nodes, n)
		} else {
			gone.Nodes = append(gone.Nodes, n)
		}
		if d%100 == 99 {
			if err := r.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, s := range []struct {
		name string
		tree *repo.Tree
	}{{"keep", &keep}, {"gone", &gone}} {
		id, err := r.SaveTree(ctx, s.tree)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := r.SaveSnapshot(ctx, &repo.Snapshot{ID: r.SnapshotIDFor(s.name), Time: time.Now(), Source: "/" + s.name, Tree: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.RemoveSnapshot(ctx, r.SnapshotIDFor("gone")); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	r.Close()
	t.Logf("built %d blobs in %d packs (%d MiB) in %v", st.Blobs, st.Packs, st.StoredBytes>>20, time.Since(start).Round(time.Millisecond))

	cmd := exec.Command(os.Args[0], "-test.run=^TestGCBig$", "-test.v")
	cmd.Env = append(os.Environ(), "BRR_GC_BIG_DIR="+dir)
	out, err := cmd.CombinedOutput()
	t.Logf("child:\n%s", out)
	if err != nil {
		t.Fatal(err)
	}
}

func measureBigGC(t *testing.T, dir string) {
	ctx := context.Background()
	be, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r, err := repo.Open(ctx, be, password, repo.Options{KDF: testOpts.KDF})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Logf("open: %v, VmHWM %d MiB", time.Since(start).Round(time.Millisecond), vmHWM(t)>>20)
	start = time.Now()
	rep, err := r.GC(ctx, repo.GCOptions{Grace: repo.NoGrace})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("GC: %v, VmHWM %d MiB; %+v", time.Since(start).Round(time.Millisecond), vmHWM(t)>>20, *rep)
	if rep.PacksDeleted == 0 {
		t.Fatal("GC deleted nothing")
	}
}

// vmHWM returns the process's peak resident set size, in bytes.
func vmHWM(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb)
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}
