package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestRecoveryThroughTheWorker runs recovery points, drills and prune through a real
// brr-worker: its config's retention policy, its scratch dir, its index of points, the
// checkpoints query and the events.
func TestRecoveryThroughTheWorker(t *testing.T) {
	cfg := writeConfig(t, "retention: {local: {keep_last: 1}}\nprune: {grace: 1h}\n")
	p := startWorkerProc(t, "", "--config", cfg)
	p.waitReady(t)
	c := p.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	start := time.Now()

	run := func(args brr.JobArgs) *brr.Event {
		t.Helper()
		res, err := c.Publish(ctx, args, brr.WithBy("ops@test"))
		if err != nil {
			t.Fatalf("publish %s: %v", args.Kind(), err)
		}
		ev, err := c.Wait(ctx, res.ID, nil)
		if err != nil {
			t.Fatalf("%s job %s: %v", args.Kind(), res.ID, err)
		}
		return ev
	}
	src := t.TempDir()
	var snaps []string
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(src, "data.txt"), []byte(fmt.Sprintf("version %d", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		snaps = append(snaps, run(brr.BackupJob{Path: src}).Result.Backup.Snapshot)
	}

	ev := run(brr.CheckpointJob{Snapshot: snaps[0], Label: "first", Reason: "the very first"})
	if cp := ev.Result.Checkpoint; cp == nil || cp.Point.Snapshot != snaps[0] || cp.Point.By != "ops@test" {
		t.Fatalf("checkpoint result %+v", ev.Result)
	}
	reply, err := c.Checkpoints(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(reply.Points) != 1 || reply.Points[0].Label != "first" || reply.Points[0].Source != src || reply.Points[0].SnapshotTime.IsZero() || len(reply.Unread) != 0 {
		t.Fatalf("checkpoints = %+v", reply)
	}

	// The config's keep_last 1 and the pin keep the first and the last.
	dry := run(brr.PruneJob{DryRun: true}).Result.Prune
	if dry == nil || !dry.DryRun || len(dry.Removed) != 1 || dry.Removed[0] != snaps[1] || dry.Kept != 2 {
		t.Fatalf("prune --dry-run = %+v, want %s removed", dry, snaps[1])
	}
	if ev := run(brr.DrillJob{Snapshot: "latest"}); ev.Result.Drill == nil || !ev.Result.Drill.Passed || ev.Result.Drill.Files != 1 {
		t.Fatalf("drill = %+v", ev.Result)
	}
	if ev := run(brr.VerifyJob{Drill: true}); ev.Result.Verify.Drill == nil || !ev.Result.Verify.Drill.Passed {
		t.Fatalf("verify --drill = %+v", ev.Result.Verify)
	}
	pr := run(brr.PruneJob{}).Result.Prune
	if pr == nil || len(pr.Removed) != 1 || pr.Removed[0] != snaps[1] {
		t.Fatalf("prune = %+v", pr)
	}
	if sns, err := c.Snapshots(ctx, "", ""); err != nil || len(sns) != 2 {
		t.Fatalf("snapshots after prune = %+v, %v", sns, err)
	}
	if ev := run(brr.CheckpointJob{Label: "first", Remove: true}); !ev.Result.Checkpoint.Removed {
		t.Fatalf("checkpoints rm = %+v", ev.Result)
	}

	// Every step announced itself.
	want := map[string]int{
		"recovery.point_created": 1, "recovery.point_removed": 1, "recovery.drill_passed": 2, "snapshot.removed": 1,
	}
	var (
		got     map[string]int
		missing string
	)
	seen := testkit.WaitFor(30*time.Second, func() bool {
		got = map[string]int{}
		for _, typ := range []brr.EventType{brr.EventRecovery, brr.EventSnapshot} {
			evs, err := c.Events(ctx, c.Subjects().Events(typ), start, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range evs {
				got[string(e.Type)+"."+string(e.Status)]++
				if e.Type == brr.EventSnapshot && e.Status == brr.StatusRemoved && (e.Snapshot != snaps[1] || e.SnapshotInfo == nil || e.SnapshotInfo.Source != src) {
					t.Errorf("snapshot.removed event %+v", e)
				}
			}
		}
		missing = ""
		for k, n := range want {
			if got[k] < n {
				missing += fmt.Sprintf(" %s (%d of %d)", k, got[k], n)
			}
		}
		return missing == ""
	})
	if !seen {
		t.Fatalf("events missing:%s; got %v", missing, got)
	}

	// The drills left nothing in the scratch dir.
	ents, err := os.ReadDir(filepath.Join(p.dataDir, "scratch"))
	if err != nil {
		t.Fatalf("scratch dir: %v", err)
	}
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if len(left) != 0 {
		t.Fatalf("left in the scratch dir: %s", strings.Join(left, ", "))
	}
}
