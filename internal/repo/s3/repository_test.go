package s3_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/faulty"
	"github.com/brr-dev/brr/internal/testkit"
)

// backup does what a backup job does through a Writer: save the blobs of a few files,
// their tree, Flush, then the snapshot. It returns the blobs saved by content, and the
// first error, as a job stops at it.
func backup(t *testing.T, r *repo.Repository, job string, files int) (map[repo.ID][]byte, error) {
	t.Helper()
	ctx := context.Background()
	w, err := r.StartWriter(ctx, job)
	if err != nil {
		return nil, fmt.Errorf("start writer: %w", err)
	}
	defer w.Release()
	saved := map[repo.ID][]byte{}
	var tree repo.Tree
	for f := 0; f < files; f++ {
		node := &repo.Node{Name: fmt.Sprintf("file-%d", f), Type: repo.NodeFile, Mode: 0o644, ModTime: time.Unix(1e9, 0)}
		for c := 0; c < 4; c++ {
			data := backendtest.RandomData(t, 200_000+f*1000+c)
			id := r.BlobID(data)
			if _, _, err := w.SaveBlob(ctx, repo.DataBlob, id, data); err != nil {
				return nil, fmt.Errorf("save blob: %w", err)
			}
			saved[id] = data
			node.Content = append(node.Content, id)
			node.Size += int64(len(data))
		}
		tree.Nodes = append(tree.Nodes, node)
	}
	treeID, err := r.SaveTree(ctx, &tree)
	if err != nil {
		return nil, fmt.Errorf("save tree: %w", err)
	}
	if err := w.Flush(ctx); err != nil {
		return nil, fmt.Errorf("flush: %w", err)
	}
	sn := &repo.Snapshot{ID: r.SnapshotIDFor(job), Time: time.Now(), Source: "/srv/app", Tree: treeID, JobID: job, Files: int64(files)}
	if err := r.SaveSnapshot(ctx, sn); err != nil {
		return nil, fmt.Errorf("save snapshot: %w", err)
	}
	return saved, nil
}

// verify opens the repository on a new backend and checks it: Check reads every pack
// and finds no damage, the snapshots are those of jobs, and every blob of want loads
// with its content.
func verify(t *testing.T, be repo.Backend, jobs []string, want map[repo.ID][]byte) {
	t.Helper()
	ctx := context.Background()
	r, err := repo.Open(ctx, be, []byte(testkit.Password), testkit.RepoOptions())
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer r.Close()
	testkit.CheckClean(t, r)
	sns, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, sn := range sns {
		got[sn.JobID] = true
		if _, err := r.LoadTree(ctx, sn.Tree); err != nil {
			t.Fatalf("snapshot of %s: load tree: %v", sn.JobID, err)
		}
	}
	if len(got) != len(jobs) {
		t.Errorf("snapshots of %v, want those of %v", got, jobs)
	}
	for _, j := range jobs {
		if !got[j] {
			t.Errorf("no snapshot of %s", j)
		}
	}
	for id, data := range want {
		loaded, err := r.LoadBlob(ctx, repo.DataBlob, id, nil)
		if err != nil {
			t.Fatalf("load blob %s: %v", id, err)
		}
		if !bytes.Equal(loaded, data) {
			t.Fatalf("blob %s loads %d bytes other than the %d saved", id, len(loaded), len(data))
		}
	}
}

// TestRepository runs a repository on S3: init, two backups through writers (more than
// one 4 MiB pack each), close; then open it afresh on a new connection and read it all
// back.
func TestRepository(t *testing.T) {
	srv := testkit.StartS3(t)
	cfg := config(srv, srv.Bucket(t, "brr-repo"), "offsite")
	ctx := context.Background()
	r, err := repo.Init(ctx, open(t, cfg), []byte(testkit.Password), testkit.RepoOptions())
	if err != nil {
		t.Fatal(err)
	}
	all := map[repo.ID][]byte{}
	for i, job := range []string{"job-1", "job-2"} {
		saved, err := backup(t, r, job, 6+i)
		if err != nil {
			t.Fatalf("%s: %v", job, err)
		}
		for id, data := range saved {
			all[id] = data
		}
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	verify(t, open(t, cfg), []string{"job-1", "job-2"}, all)
}

// TestRepositoryFaults arms the fault wrapper over an S3 backend: a failed pack write
// fails its backup, leaves no snapshot of it, and the next backup on the same
// Repository succeeds.
func TestRepositoryFaults(t *testing.T) {
	srv := testkit.StartS3(t)
	cfg := config(srv, srv.Bucket(t, "brr-faults"), "")
	ctx := context.Background()
	fb := faulty.New(open(t, cfg))
	r, err := repo.Init(ctx, fb, []byte(testkit.Password), testkit.RepoOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	base, err := backup(t, r, "base", 3)
	if err != nil {
		t.Fatal(err)
	}
	fb.FailSave(repo.PackFile, 0, nil)
	if _, err := backup(t, r, "failed", 8); !errors.Is(err, faulty.ErrInjected) {
		t.Fatalf("backup with a failing pack write: %v, want the injected fault", err)
	}
	after, err := backup(t, r, "after", 3)
	if err != nil {
		t.Fatalf("backup after the failure: %v", err)
	}
	for id, data := range after {
		base[id] = data
	}
	verify(t, open(t, cfg), []string{"base", "after"}, base)
}
