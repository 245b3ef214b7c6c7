package sftp_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/testkit"
)

// A repository created, written and read back through sftp, as a worker uses one.
func TestRepository(t *testing.T) {
	s := testkit.StartSSHD(t)
	cfg := config(t, s)
	ctx := context.Background()
	opts := testkit.RepoOptions()
	password := []byte(testkit.Password)

	be := open(t, cfg)
	r, err := repo.Init(ctx, be, password, opts)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	w := testkit.StartWriter(t, r)
	blobs := [][]byte{
		backendtest.RandomData(t, 3<<20),
		backendtest.RandomData(t, 3<<20), // with the first, more than one 4 MiB pack
		bytes.Repeat([]byte("backup over sftp "), 10_000),
		[]byte("tiny"),
	}
	var content []repo.ID
	var size int64
	for _, b := range blobs {
		id := r.BlobID(b)
		if _, _, err := w.SaveBlob(ctx, repo.DataBlob, id, b); err != nil {
			t.Fatalf("SaveBlob: %v", err)
		}
		content = append(content, id)
		size += int64(len(b))
	}
	root, err := r.SaveTree(ctx, &repo.Tree{Nodes: []*repo.Node{
		{Name: "data.bin", Type: repo.NodeFile, Mode: 0o644, Size: size, Content: content},
	}})
	if err != nil {
		t.Fatalf("SaveTree: %v", err)
	}
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	sn := &repo.Snapshot{ID: r.SnapshotIDFor("job-1"), Time: time.Now().UTC(), Host: "h", Source: "/srv", Tree: root, JobID: "job-1", Files: 1, Bytes: size}
	if err := r.SaveSnapshot(ctx, sn); err != nil {
		t.Fatalf("SaveSnapshot: %v", err)
	}
	w.Release()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	packs, _ := filepath.Glob(filepath.Join(cfg.Path, "data", "*", "*"))
	if len(packs) < 2 {
		t.Errorf("%d pack files on the server, want at least 2", len(packs))
	}
	if locks, _ := os.ReadDir(filepath.Join(cfg.Path, "locks")); len(locks) != 0 {
		t.Errorf("%d lock files left after Release", len(locks))
	}

	// Open it again on a new connection, and read everything back.
	r2, err := repo.Open(ctx, open(t, cfg), password, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r2.Close() })
	sns, err := r2.Snapshots(ctx)
	if err != nil {
		t.Fatalf("Snapshots: %v", err)
	}
	if len(sns) != 1 || sns[0].ID != sn.ID || sns[0].Tree != root || sns[0].Bytes != size {
		t.Fatalf("Snapshots = %+v, want the one saved (%s, tree %s)", sns, sn.ID, root)
	}
	tree, err := r2.LoadTree(ctx, root)
	if err != nil {
		t.Fatalf("LoadTree: %v", err)
	}
	node := tree.Find("data.bin")
	if node == nil || len(node.Content) != len(blobs) {
		t.Fatalf("tree = %+v, want data.bin with %d blobs", tree.Nodes, len(blobs))
	}
	for i, id := range node.Content {
		got, err := r2.LoadBlob(ctx, repo.DataBlob, id, nil)
		if err != nil {
			t.Fatalf("LoadBlob %d: %v", i, err)
		}
		if !bytes.Equal(got, blobs[i]) {
			t.Fatalf("blob %d = %d bytes, not the %d saved", i, len(got), len(blobs[i]))
		}
	}
	if rep := testkit.CheckClean(t, r2); rep.Snapshots != 1 || rep.Packs < 2 {
		t.Fatalf("Check = %+v, want 1 snapshot, 2 or more packs and no damage", rep)
	}
}
