package jobs_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/testkit"
)

// recorder is a brr.Reporter that keeps what a job says while it runs.
type recorder struct {
	mu        sync.Mutex
	progress  []brr.Progress
	announced []*brr.Event
}

func (r *recorder) Progress(p brr.Progress) {
	r.mu.Lock()
	r.progress = append(r.progress, p)
	r.mu.Unlock()
}

func (r *recorder) Announce(e *brr.Event) {
	r.mu.Lock()
	r.announced = append(r.announced, e)
	r.mu.Unlock()
}

// announcedAs returns the announced events of status.
func (r *recorder) announcedAs(status brr.Status) []*brr.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*brr.Event
	for _, e := range r.announced {
		if e.Status == status {
			out = append(out, e)
		}
	}
	return out
}

// handle runs job through Engine.Handle, as the consume loop does, in pool default.
func handle(t *testing.T, e *jobs.Engine, id string, args brr.JobArgs, rep brr.Reporter) (*brr.Outcome, error) {
	t.Helper()
	return e.Handle(context.Background(), &brr.Job{V: brr.Version, ID: id, Kind: args.Kind(), Pool: brr.DefaultPool, Args: args}, rep)
}

// eventsOf returns "type.status" of each event, for messages.
func eventsOf(out *brr.Outcome) []string {
	if out == nil {
		return nil
	}
	var s []string
	for _, e := range out.Events {
		s = append(s, string(e.Type)+"."+string(e.Status))
	}
	return s
}

// checkEvents fails unless out states exactly the events want ("type.status", in
// order), each with the repo, and left for the consume loop to stamp what it stamps.
func checkEvents(t *testing.T, what string, out *brr.Outcome, repoName string, want ...string) {
	t.Helper()
	got := eventsOf(out)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("%s: events %q, want %q", what, got, want)
	}
	for _, e := range out.Events {
		if e.Repo != repoName {
			t.Errorf("%s: %s.%s event of repo %q, want %q", what, e.Type, e.Status, e.Repo, repoName)
		}
		if e.ID != "" || e.V != 0 || e.Worker != "" || !e.Time.IsZero() || e.JobID != "" {
			t.Errorf("%s: %s.%s event has %+v; the consume loop stamps id, version, worker, time and job", what, e.Type, e.Status, e)
		}
	}
}

func TestBackupOutcome(t *testing.T) {
	b := setup(t)
	b.engine.ReplicateTo = map[string][]string{"local": {"offsite", "local"}}
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("hello"), 0o644)
	args := &brr.BackupJob{Path: src, Tags: []string{"nightly"}}

	out, err := handle(t, b.engine, "nightly-1", args, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := out.Result.Backup
	if res == nil || out.Repo != "local" || out.Source != src || out.Snapshot != res.Snapshot {
		t.Fatalf("outcome %+v (result %+v), want the snapshot of %s in local", out, res, src)
	}
	checkEvents(t, "backup", out, "local", "snapshot.committed")
	listed, err := b.engine.Snapshots(context.Background(), "local", src)
	if err != nil || len(listed) != 1 {
		t.Fatalf("Snapshots = %+v, %v", listed, err)
	}
	committed := out.Events[0]
	if committed.Snapshot != res.Snapshot || committed.Source != src || committed.SnapshotInfo == nil {
		t.Fatalf("snapshot.committed = %+v", committed)
	}
	// The event tells what `brr snapshots` lists: the repository's time, not the job's.
	if got, want := *committed.SnapshotInfo, listed[0]; !got.Time.Equal(want.Time) || got.ID != want.ID || got.Host != "testhost" ||
		got.JobID != "nightly-1" || len(got.Tags) != 1 || got.Files != want.Files || got.BytesAdded != want.BytesAdded {
		t.Errorf("snapshot_info = %+v, want what Snapshots lists: %+v", got, want)
	}

	// The replication policy: one job to offsite; a repo is never its own target.
	if len(out.Jobs) != 1 {
		t.Fatalf("follow-up jobs %+v, want one replicate job to offsite", out.Jobs)
	}
	j := out.Jobs[0]
	a, ok := j.Args.(*brr.ReplicateJob)
	if !ok || j.ID != "repl-"+res.Snapshot[:16]+"-offsite" || j.Kind != brr.KindReplicate || j.Pool != brr.DefaultPool || j.By != "policy" ||
		a.Snapshot != res.Snapshot || a.From != "local" || a.To != "offsite" {
		t.Errorf("policy job %+v (args %+v)", j, j.Args)
	}
	if err := j.Validate(); err != nil {
		t.Errorf("policy job does not validate: %v", err)
	}

	// Delivered again after it committed: the same facts, the repository's time again.
	again, err := handle(t, b.engine, "nightly-1", args, nil)
	if err != nil || again.Snapshot != res.Snapshot || len(again.Jobs) != 1 || again.Jobs[0].ID != j.ID {
		t.Fatalf("redelivered backup: %+v, %v", again, err)
	}
	checkEvents(t, "redelivered backup", again, "local", "snapshot.committed")
	if !again.Events[0].SnapshotInfo.Time.Equal(listed[0].Time) {
		t.Errorf("redelivered snapshot.committed time %v, want %v", again.Events[0].SnapshotInfo.Time, listed[0].Time)
	}

	// Without a policy for the repo, no jobs; a failed backup states nothing.
	b.engine.ReplicateTo = map[string][]string{"offsite": {"local"}}
	if out, err := handle(t, b.engine, "nightly-2", args, nil); err != nil || len(out.Jobs) != 0 {
		t.Errorf("backup into a repo without a policy: jobs %+v, %v", out, err)
	}
	if out, err := handle(t, b.engine, "nightly-3", &brr.BackupJob{Path: src, Repo: "nosuch"}, nil); err == nil || out != nil {
		t.Errorf("backup into an unknown repo: %+v, %v; want no outcome and an error", out, err)
	}
}

func TestReplicateOutcomeAndPolicyCycle(t *testing.T) {
	// A cycle: local → offsite → local. The copy back finds the snapshot there and
	// commits nothing, which ends it.
	b := setupReplica(t)
	b.engine.ReplicateTo = map[string][]string{"local": {"offsite"}, "offsite": {"local"}}
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "a.bin"), randomBytes(7, 300<<10), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "sub", "b.txt"), []byte("b"), 0o644)
	bout, err := handle(t, b.engine, "nightly-1", &brr.BackupJob{Path: src}, nil)
	if err != nil || len(bout.Jobs) != 1 {
		t.Fatalf("backup: %+v, %v; want one policy job", bout, err)
	}
	snap := bout.Snapshot
	toOffsite := bout.Jobs[0]

	rec := &recorder{}
	start := time.Now()
	out, err := b.engine.Handle(context.Background(), toOffsite, rec)
	if err != nil {
		t.Fatalf("replicate to offsite: %v", err)
	}
	// Progress comes at most every 250 ms, not once per blob; the job's last report may
	// come sooner.
	if n, most := len(rec.progress), int(time.Since(start)/(250*time.Millisecond))+2; n > most {
		t.Errorf("%d progress reports in %v, want at most %d", n, time.Since(start), most)
	}
	started := rec.announcedAs(brr.StatusStarted)
	if len(started) != 1 || started[0].Type != brr.EventReplication || started[0].Repo != "offsite" || started[0].Snapshot != snap ||
		started[0].Replication == nil || started[0].Replication.From != "local" || started[0].Replication.To != "offsite" {
		t.Errorf("announced replication.started %+v, want one of %s from local to offsite", started, snap)
	}
	progress := rec.announcedAs(brr.StatusProgress)
	if len(progress) == 0 || len(progress) != len(rec.progress) || progress[0].Progress == nil ||
		!strings.HasPrefix(progress[0].Progress.Phase, "copy ") || progress[0].Repo != "offsite" {
		t.Errorf("announced %d replication.progress (%+v) for %d progress reports, want one with each", len(progress), progress, len(rec.progress))
	}
	checkEvents(t, "replicate", out, "offsite", "replication.completed", "snapshot.committed")
	done := out.Events[0]
	if r := done.Replication; r == nil || r.From != "local" || r.To != "offsite" || r.BlobsSent == 0 || r.BytesSent == 0 ||
		r.Lag == nil || r.Lag.Behind != 0 || len(r.Snapshots) != 1 || done.Snapshot != snap {
		t.Errorf("replication.completed = %+v (replication %+v)", done, done.Replication)
	}
	copied := out.Events[1]
	listed, err := b.engine.Snapshots(context.Background(), "offsite", "")
	if err != nil || len(listed) != 1 {
		t.Fatalf("offsite lists %+v, %v", listed, err)
	}
	if si := copied.SnapshotInfo; copied.Snapshot != snap || copied.Source != src || si == nil || si.Repo != "offsite" ||
		!si.Time.Equal(listed[0].Time) || si.Files != listed[0].Files || si.Files != 2 {
		t.Errorf("snapshot.committed of the copy = %+v (info %+v), want what offsite lists: %+v", copied, copied.SnapshotInfo, listed[0])
	}
	if len(out.Jobs) != 1 {
		t.Fatalf("follow-up jobs of the copy %+v, want one back to local", out.Jobs)
	}
	back := out.Jobs[0]
	if a := back.Args.(*brr.ReplicateJob); back.ID != "repl-"+snap[:16]+"-local" || a.From != "offsite" || a.To != "local" || a.Snapshot != snap {
		t.Errorf("policy job of the copy %+v (args %+v), want offsite → local", back, back.Args)
	}

	// The copy back has nothing to copy: it completes and sets off nothing more.
	out, err = b.engine.Handle(context.Background(), back, nil)
	if err != nil {
		t.Fatalf("replicate back to local: %v", err)
	}
	checkEvents(t, "replicate back", out, "local", "replication.completed")
	if r := out.Result.Replicate; r.Present != 1 || len(r.Snapshots) != 0 || len(out.Jobs) != 0 {
		t.Errorf("the copy back copied %v (present %d) and set off %+v; want nothing", r.Snapshots, r.Present, out.Jobs)
	}

	// A replication that fails states replication.failed with the error, and nothing else.
	out, err = handle(t, b.engine, "repl-fails", &brr.ReplicateJob{Snapshot: "latest", Source: "/nowhere", To: "offsite"}, rec)
	if !brr.IsPermanent(err) {
		t.Fatalf("replicate of a source with no snapshot: err = %v, want permanent", err)
	}
	checkEvents(t, "failed replicate", out, "offsite", "replication.failed")
	failed := out.Events[0]
	if failed.Error != err.Error() || failed.Snapshot != "" || failed.Source != "/nowhere" || failed.Replication == nil ||
		failed.Replication.To != "offsite" || failed.Replication.Lag != nil || len(out.Jobs) != 0 {
		t.Errorf("replication.failed = %+v (replication %+v), want the error, no snapshot for \"latest\", no lag", failed, failed.Replication)
	}
}

func TestRecoveryOutcomes(t *testing.T) {
	b := setup(t)
	b.engine.ScratchDir = t.TempDir()
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "good.bin"), randomBytes(41, 200<<10), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "victim.bin"), randomBytes(42, 300<<10), 0o644)
	first := backup(t, b.engine, "rec-1", src)
	testkit.WriteFile(t, filepath.Join(src, "new.txt"), []byte("new"), 0o644)
	second := backup(t, b.engine, "rec-2", src)

	// Checkpoints: created, removed; a failed one states nothing.
	out, err := handle(t, b.engine, "cp-1", &brr.CheckpointJob{Snapshot: "latest", Source: src, Label: "release-1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, "checkpoint", out, "local", "recovery.point_created")
	if e := out.Events[0]; e.Snapshot != second.Snapshot || e.Source != src || e.Result == nil || e.Result.Checkpoint == nil ||
		e.Result.Checkpoint.Point.Label != "release-1" || e.Error != "" {
		t.Errorf("point_created = %+v", e)
	}
	out, err = handle(t, b.engine, "cp-2", &brr.CheckpointJob{Label: "release-1", Remove: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, "checkpoint removed", out, "local", "recovery.point_removed")
	if e := out.Events[0]; e.Snapshot != second.Snapshot || !e.Result.Checkpoint.Removed {
		t.Errorf("point_removed = %+v", e)
	}
	if out, err := handle(t, b.engine, "cp-3", &brr.CheckpointJob{Label: "release-1", Remove: true}, nil); err == nil || len(eventsOf(out)) != 0 {
		t.Errorf("removing a point that is not there: %v, %v; want an error and no events", eventsOf(out), err)
	}

	// Restore: restored when it succeeded, with the source the job named.
	out, err = handle(t, b.engine, "restore-1", &brr.RestoreJob{Snapshot: "latest", Source: src, Target: filepath.Join(t.TempDir(), "r")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, "restore", out, "local", "recovery.restored")
	if e := out.Events[0]; e.Snapshot != second.Snapshot || e.Source != src || e.Result.Restore == nil || e.Result.Restore.Files != 3 {
		t.Errorf("restored = %+v", e)
	}

	// Verify without a drill states nothing; with one, the drill's event.
	out, err = handle(t, b.engine, "verify-1", &brr.VerifyJob{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, "verify", out, "local")
	out, err = handle(t, b.engine, "verify-2", &brr.VerifyJob{Drill: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, "verify with a drill", out, "local", "recovery.drill_passed")
	if e := out.Events[0]; e.Snapshot != second.Snapshot || e.Source != src || e.Result.Drill == nil || !e.Result.Drill.Passed || e.Error != "" {
		t.Errorf("drill_passed of a verify = %+v", e)
	}
	out, err = handle(t, b.engine, "drill-1", &brr.DrillJob{Snapshot: first.Snapshot}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, "drill", out, "local", "recovery.drill_passed")

	// Damage: a drill, and a verify with one, fail with drill_failed and the job's error.
	damageFileBlob(t, b, second.Snapshot, "victim.bin")
	out, err = handle(t, b.engine, "drill-2", &brr.DrillJob{Snapshot: "latest"}, nil)
	if !brr.IsPermanent(err) {
		t.Fatalf("drill of a damaged snapshot: err = %v, want permanent", err)
	}
	checkEvents(t, "failed drill", out, "local", "recovery.drill_failed")
	if e := out.Events[0]; e.Error != err.Error() || e.Result.Drill.ProblemCount == 0 || e.Snapshot != second.Snapshot {
		t.Errorf("drill_failed = %+v", e)
	}
	out, err = handle(t, b.engine, "verify-3", &brr.VerifyJob{Drill: true}, nil)
	if !brr.IsPermanent(err) {
		t.Fatalf("verify --drill of a damaged snapshot: err = %v, want permanent", err)
	}
	checkEvents(t, "verify with a failed drill", out, "local", "recovery.drill_failed")
	if e := out.Events[0]; e.Error != err.Error() || !strings.Contains(e.Error, "victim.bin") || out.Result.Verify == nil {
		t.Errorf("drill_failed of a verify = %+v", e)
	}

	// A restore that failed states nothing.
	out, err = handle(t, b.engine, "restore-2", &brr.RestoreJob{Snapshot: second.Snapshot, Target: filepath.Join(t.TempDir(), "r")}, nil)
	if err == nil || len(eventsOf(out)) != 0 {
		t.Errorf("restore of a damaged snapshot: %v, %v; want an error and no events", eventsOf(out), err)
	}

	// Prune: a dry run states nothing; a prune one snapshot.removed per snapshot removed.
	keepOne := &brr.RetentionPolicy{KeepLast: 1}
	out, err = handle(t, b.engine, "prune-1", &brr.PruneJob{Policy: keepOne, DryRun: true}, nil)
	if err != nil || len(out.Result.Prune.Removed) != 1 {
		t.Fatalf("dry prune: %+v, %v", out, err)
	}
	checkEvents(t, "dry prune", out, "local")
	out, err = handle(t, b.engine, "prune-2", &brr.PruneJob{Policy: keepOne}, nil)
	if err != nil {
		t.Fatal(err)
	}
	checkEvents(t, "prune", out, "local", "snapshot.removed")
	if e, si := out.Events[0], out.Events[0].SnapshotInfo; e.Snapshot != first.Snapshot || e.Source != src || si == nil || si.ID != first.Snapshot ||
		si.Repo != "local" || si.Source != src || si.Host != "testhost" || si.Time.IsZero() {
		t.Errorf("snapshot.removed = %+v (info %+v)", e, si)
	}
}
