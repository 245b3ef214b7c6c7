package jobs_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
)

var _ jobs.PointIndex = (*state.DB)(nil)

func checkpoint(e *jobs.Engine, id string, a brr.CheckpointJob) (*brr.CheckpointResult, error) {
	return e.Checkpoint(context.Background(), &brr.Job{ID: id, Kind: brr.KindCheckpoint, By: "ops@host", Args: &a}, a)
}

func TestCheckpoint(t *testing.T) {
	b := setup(t)
	db := openState(t)
	b.engine.Points = db
	ctx := context.Background()
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("one"), 0o644)
	first := backup(t, b.engine, "cp-backup-1", src)
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("two"), 0o644)
	second := backup(t, b.engine, "cp-backup-2", src)

	res, err := checkpoint(b.engine, "cp-1", brr.CheckpointJob{Snapshot: "latest", Source: src, Label: "before-upgrade", Reason: "upgrade to 2.0"})
	if err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	pt := res.Point
	if res.Removed || pt.Repo != "local" || pt.Label != "before-upgrade" || pt.Snapshot != second.Snapshot || pt.Source != src ||
		pt.Reason != "upgrade to 2.0" || pt.By != "ops@host" || pt.Time.IsZero() || pt.SnapshotTime.IsZero() {
		t.Fatalf("checkpoint result %+v, want a point on snapshot %s", res, second.Snapshot)
	}

	// Delivered again after a newer backup: "latest" moved on, the point did not.
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("three"), 0o644)
	third := backup(t, b.engine, "cp-backup-3", src)
	again, err := checkpoint(b.engine, "cp-1", brr.CheckpointJob{Snapshot: "latest", Source: src, Label: "before-upgrade"})
	if err != nil || again.Point.Snapshot != second.Snapshot || !again.Point.Time.Equal(pt.Time) {
		t.Fatalf("redelivered checkpoint = %+v, %v; want the same point", again, err)
	}
	// Another job asking for the same label on another snapshot conflicts, for good.
	_, err = checkpoint(b.engine, "cp-2", brr.CheckpointJob{Snapshot: "latest", Label: "before-upgrade"})
	if !brr.IsPermanent(err) || !strings.Contains(err.Error(), "already pins snapshot") {
		t.Fatalf("checkpoint of a label in use: err = %v, want a permanent conflict", err)
	}
	// The same label on the same snapshot, asked again by another job, is no conflict.
	if res, err := checkpoint(b.engine, "cp-3", brr.CheckpointJob{Snapshot: second.Snapshot[:10], Label: "before-upgrade"}); err != nil || res.Point.Snapshot != second.Snapshot {
		t.Fatalf("checkpoint of the same label and snapshot = %+v, %v", res, err)
	}
	if _, err := checkpoint(b.engine, "cp-4", brr.CheckpointJob{Snapshot: "abcdef12", Label: "nothing"}); !brr.IsPermanent(err) || !strings.Contains(err.Error(), "brr snapshots") {
		t.Fatalf("checkpoint of a missing snapshot: err = %v, want permanent with a hint", err)
	}
	if _, err := checkpoint(b.engine, "cp-5", brr.CheckpointJob{Snapshot: "latest", Label: "bad label"}); !brr.IsPermanent(err) {
		t.Fatalf("checkpoint with a bad label: err = %v, want permanent", err)
	}
	if _, err := checkpoint(b.engine, "cp-6", brr.CheckpointJob{Snapshot: first.Snapshot, Label: "first", Reason: "oldest"}); err != nil {
		t.Fatal(err)
	}

	// Listed from the repository, joined with the snapshots, and indexed.
	pts, unread, err := b.engine.Checkpoints(ctx, "")
	if err != nil || len(unread) != 0 {
		t.Fatalf("Checkpoints: %v, unread %v", err, unread)
	}
	if len(pts) != 2 || pts[0].Label != "before-upgrade" || pts[1].Label != "first" || pts[1].Snapshot != first.Snapshot || pts[1].Source != src {
		t.Fatalf("Checkpoints = %+v", pts)
	}
	if idx, _ := db.Points("local"); len(idx) != 2 {
		t.Fatalf("index holds %+v, want both points", idx)
	}
	// Through Handle, as a worker runs it.
	out, err := b.engine.Handle(ctx, &brr.Job{ID: "cp-7", Kind: brr.KindCheckpoint, Args: &brr.CheckpointJob{Snapshot: third.Snapshot, Label: "third"}}, nil)
	if err != nil || out.Result.Checkpoint == nil || out.Result.Checkpoint.Point.Snapshot != third.Snapshot {
		t.Fatalf("Handle(checkpoint) = %+v, %v", out, err)
	}

	// Remove.
	rm, err := checkpoint(b.engine, "cp-rm-1", brr.CheckpointJob{Label: "first", Remove: true})
	if err != nil || !rm.Removed || rm.Point.Snapshot != first.Snapshot || rm.Point.Reason != "oldest" {
		t.Fatalf("remove = %+v, %v", rm, err)
	}
	if _, err := b.repo.Pin(ctx, "first"); err == nil {
		t.Fatal("the removed point is still in the repository")
	}
	if _, err := checkpoint(b.engine, "cp-rm-2", brr.CheckpointJob{Label: "first", Remove: true}); !brr.IsPermanent(err) || !strings.Contains(err.Error(), "brr checkpoints") {
		t.Fatalf("remove of a point that is not there: err = %v, want permanent with a hint", err)
	}
	// A remove that stopped after the repository and before the index: its next
	// delivery succeeds from the index.
	if err := b.repo.RemovePin(ctx, "third"); err != nil {
		t.Fatal(err)
	}
	rm, err = checkpoint(b.engine, "cp-rm-3", brr.CheckpointJob{Label: "third", Remove: true})
	if err != nil || !rm.Removed || rm.Point.Snapshot != third.Snapshot {
		t.Fatalf("remove found only in the index = %+v, %v", rm, err)
	}
	if idx, _ := db.Points("local"); len(idx) != 1 || idx[0].Label != "before-upgrade" {
		t.Fatalf("index after removes = %+v, want before-upgrade only", idx)
	}
}

func TestCheckpointsOfAnUnreadableRepo(t *testing.T) {
	b := setup(t)
	db := openState(t)
	b.engine.Points = db
	offDir := t.TempDir()
	b.engine.Repos["offsite"], _ = testkit.InitRepo(t, offDir, testkit.RepoOptions())
	ctx := context.Background()
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("one"), 0o644)
	for _, name := range []string{"local", "offsite"} {
		res, err := b.engine.Backup(ctx, "up-"+name, brr.BackupJob{Path: src, Repo: name}, nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := checkpoint(b.engine, "cp-"+name, brr.CheckpointJob{Snapshot: res.Snapshot, Repo: name, Label: "keep-" + name}); err != nil {
			t.Fatal(err)
		}
	}
	if pts, _, err := b.engine.Checkpoints(ctx, "offsite"); err != nil || len(pts) != 1 || pts[0].Repo != "offsite" {
		t.Fatalf("Checkpoints(offsite) = %+v, %v", pts, err)
	}

	// offsite's recovery points cannot be listed any more.
	pins := filepath.Join(offDir, string(repo.PinFile))
	if err := os.RemoveAll(pins); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(pins, []byte("not a directory"), 0o600); err != nil {
		t.Fatal(err)
	}
	pts, unread, err := b.engine.Checkpoints(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 2 || pts[0].Label != "keep-local" || pts[1].Label != "keep-offsite" || pts[1].Snapshot == "" {
		t.Fatalf("Checkpoints = %+v, want local's from the repo and offsite's from the index", pts)
	}
	if len(unread) != 1 || !strings.Contains(unread["offsite"], "from this worker's index") {
		t.Fatalf("unread = %v, want offsite, saying the points come from the index", unread)
	}
	if _, _, err := b.engine.Checkpoints(ctx, "nosuch"); !brr.IsPermanent(err) {
		t.Fatalf("Checkpoints of an unknown repo: err = %v", err)
	}
	// Without an index, the reply says there is nothing to fall back on.
	b.engine.Points = nil
	pts, unread, err = b.engine.Checkpoints(ctx, "")
	if err != nil || len(pts) != 1 || !strings.Contains(unread["offsite"], "no index") {
		t.Fatalf("Checkpoints without an index = %+v, %v, %v", pts, unread, err)
	}
}
