package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

// commandSource sets up an engine with the command source "db", whose command prints
// data (several chunks) and a line to stderr, and counts its runs in a file; its
// restore_command writes what it is given to a file. It returns the data and the files.
func commandSource(t *testing.T) (b *bundle, data []byte, runs, restored string) {
	t.Helper()
	b = setup(t)
	dir := t.TempDir()
	data = randomBytes(7, 5<<20+123)
	dump := filepath.Join(dir, "dump")
	testkit.WriteFile(t, dump, data, 0o644)
	runs, restored = filepath.Join(dir, "runs"), filepath.Join(dir, "restored")
	b.engine.Sources = map[string]jobs.Source{"db": {
		Command:        "echo run >> " + runs + "; cat " + dump + "; echo dumped $BRR_SOURCE_NAME for $BRR_JOB_ID >&2",
		RestoreCommand: "cat > " + restored + "; echo restored $BRR_SNAPSHOT >&2",
		Filename:       "db.dump",
		Tags:           []string{"db"},
	}}
	return b, data, runs, restored
}

func lines(t *testing.T, file string) int {
	t.Helper()
	data, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

// A command source stores the command's standard output as one file of a snapshot of
// "source:NAME", with the end of its stderr and its exit code in the result; a restore
// writes that file into a target, or pipes it into the restore_command.
func TestCommandSource(t *testing.T) {
	b, data, runs, restored := commandSource(t)
	ctx := context.Background()
	var progress []brr.Progress
	out, err := b.engine.Handle(ctx, &brr.Job{ID: "dump-1", Kind: brr.KindBackup, Pool: "default",
		Args: brr.BackupJob{SourceName: "db"}}, reporterFunc(func(p brr.Progress) { progress = append(progress, p) }))
	if err != nil {
		t.Fatal(err)
	}
	res := out.Result.Backup
	if res.Source != "source:db" || res.SourceName != "db" || out.Snapshot == "" || res.Files != 1 || res.Dirs != 0 ||
		res.Bytes != int64(len(data)) || res.BytesRead != int64(len(data)) || res.BlobsAdded < 3 {
		t.Fatalf("result %+v: want one file of %d bytes in a snapshot of source:db", res, len(data))
	}
	if c := res.Command; c == nil || c.ExitCode != 0 || c.Bytes != int64(len(data)) || c.Stderr != "dumped db for dump-1\n" {
		t.Fatalf("command run %+v", c)
	}
	if len(progress) == 0 || progress[len(progress)-1].Bytes != int64(len(data)) {
		t.Errorf("progress %+v: want the bytes read, ending with all of them", progress)
	}
	snaps, err := b.engine.Snapshots(ctx, "", "source:db")
	if err != nil || len(snaps) != 1 || snaps[0].Tags[0] != "db" {
		t.Fatalf("snapshots of source:db: %+v, %v", snaps, err)
	}

	// Into a directory: the file, mode 0600.
	target := filepath.Join(t.TempDir(), "out")
	rr, err := b.engine.Restore(ctx, "r1", brr.RestoreJob{Snapshot: "latest", SourceName: "db", Target: target}, nil)
	if err != nil || rr.SourceName != "db" || rr.Command != nil {
		t.Fatalf("restore into a directory: %+v, %v", rr, err)
	}
	got, err := os.ReadFile(filepath.Join(target, "db.dump"))
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("restored file: %d bytes, %v; want the %d bytes of the command's output", len(got), err, len(data))
	}
	if fi, _ := os.Stat(filepath.Join(target, "db.dump")); fi.Mode().Perm() != 0o600 {
		t.Errorf("restored file mode %s, want 0600", fi.Mode())
	}
	// Without a source name, by its key.
	rr, err = b.engine.Restore(ctx, "r2", brr.RestoreJob{Snapshot: "latest", Source: "source:db", Target: filepath.Join(t.TempDir(), "out")}, nil)
	if err != nil || rr.Snapshot != res.Snapshot {
		t.Fatalf("restore of latest of source:db: %+v, %v", rr, err)
	}

	// Through the restore_command.
	out, err = b.engine.Handle(ctx, &brr.Job{ID: "r3", Kind: brr.KindRestore, Pool: "default",
		Args: brr.RestoreJob{Snapshot: res.Snapshot[:12], SourceName: "db"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	rr = out.Result.Restore
	if got, _ := os.ReadFile(restored); !bytes.Equal(got, data) {
		t.Fatalf("restore_command got %d bytes, want the %d of the snapshot", len(got), len(data))
	}
	if c := rr.Command; rr.Target != "" || rr.Files != 1 || rr.Bytes != int64(len(data)) || c == nil || c.ExitCode != 0 ||
		c.Stderr != "restored "+res.Snapshot+"\n" || c.Bytes != int64(len(data)) {
		t.Fatalf("restore through the restore_command: %+v, command %+v", rr, rr.Command)
	}
	// recovery.restored names what was restored: the source's snapshots' source.
	if len(out.Events) != 1 || out.Events[0].Status != brr.StatusRestored || out.Events[0].Source != "source:db" || out.Source != "source:db" {
		t.Errorf("restore by source name: outcome source %q, events %+v; want recovery.restored of source:db", out.Source, out.Events)
	}
	if n := lines(t, runs); n != 1 {
		t.Errorf("the command ran %d times, want 1", n)
	}
}

type reporterFunc func(brr.Progress)

func (f reporterFunc) Progress(p brr.Progress) { f(p) }
func (f reporterFunc) Announce(*brr.Event)     {}

// A backup job delivered again after its snapshot committed returns that snapshot
// without running the command again; a second job runs it and has the first as parent.
func TestCommandSourceRedelivered(t *testing.T) {
	b, _, runs, _ := commandSource(t)
	ctx := context.Background()
	first, err := b.engine.Backup(ctx, "dump-1", brr.BackupJob{SourceName: "db"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	again, err := b.engine.Backup(ctx, "dump-1", brr.BackupJob{SourceName: "db"}, nil)
	if err != nil || again.Snapshot != first.Snapshot || again.Command != nil {
		t.Fatalf("redelivered job: %+v, %v; want snapshot %s, no command run", again, err, first.Snapshot)
	}
	if n := lines(t, runs); n != 1 {
		t.Fatalf("the command ran %d times, want once", n)
	}
	second, err := b.engine.Backup(ctx, "dump-2", brr.BackupJob{SourceName: "db"}, nil)
	if err != nil || second.Parent != first.Snapshot || second.BlobsAdded != 0 {
		t.Fatalf("second backup %+v, %v: want parent %s and nothing added (same output)", second, err, first.Snapshot)
	}
}

// A command that exits non-zero, or outlives the timeout, fails the job for good with the
// end of its stderr, and commits nothing: what it stored is unreferenced.
func TestCommandSourceFails(t *testing.T) {
	b := setup(t)
	after := filepath.Join(t.TempDir(), "after")
	b.engine.Sources = map[string]jobs.Source{
		"bad": {Command: "head -c 3000000 /dev/urandom; echo 'pg_dump: error: database \"nope\" does not exist' >&2; exit 3",
			After: `echo "$BRR_STATUS|$BRR_SNAPSHOT" > ` + after},
		"slow":  {Command: "echo partial; sleep 60 & sleep 60", Timeout: 300 * time.Millisecond},
		"quiet": {Command: "kill -9 $$"},
	}
	ctx := context.Background()
	_, err := b.engine.Backup(ctx, "bad-1", brr.BackupJob{SourceName: "bad"}, nil)
	if !brr.IsPermanent(err) || !strings.Contains(err.Error(), `command of source bad exited 3; nothing was committed: pg_dump: error: database "nope" does not exist`) {
		t.Fatalf("backup of a failing command: %v", err)
	}
	if data, _ := os.ReadFile(after); string(data) != "failed|\n" {
		t.Errorf("after hook saw %q", data)
	}
	start := time.Now()
	_, err = b.engine.Backup(ctx, "slow-1", brr.BackupJob{SourceName: "slow"}, nil)
	if !brr.IsPermanent(err) || !strings.Contains(err.Error(), "did not finish within 300ms") {
		t.Fatalf("backup of a command past its timeout: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("the command held the job %s after its timeout", d)
	}
	_, err = b.engine.Backup(ctx, "quiet-1", brr.BackupJob{SourceName: "quiet"}, nil)
	if !brr.IsPermanent(err) || !strings.Contains(err.Error(), "killed by signal killed") || !strings.Contains(err.Error(), "wrote nothing to stderr") {
		t.Fatalf("backup of a command killed by a signal: %v", err)
	}
	if snaps, _ := b.engine.Snapshots(ctx, "", ""); len(snaps) != 0 {
		t.Fatalf("a failed command committed %+v", snaps)
	}
	// What the failed commands stored is referenced by nothing: the repository checks
	// clean once a later backup has flushed it.
	backup(t, b.engine, "tree-1", t.TempDir())
	testkit.CheckClean(t, b.repo)
}

// A failed command's job carries, besides its error, a result that says how the command
// ended (exit code, end of stderr) and that nothing was committed; a failed before hook's
// job carries the hooks' runs. The consume loop records that result with the failed job
// and puts it in its job.failed event.
func TestCommandSourceFailureResult(t *testing.T) {
	b := setup(t)
	b.engine.Sources = map[string]jobs.Source{
		"bad":  {Command: "echo one line; echo 'pg_dump: error: connection refused' >&2; exit 3", After: "echo after ran"},
		"slow": {Command: "echo partial; echo 'still dumping' >&2; sleep 60 & sleep 60", Timeout: 300 * time.Millisecond},
		"hook": {Command: "echo never", Before: "echo not today >&2; exit 4"},
	}
	ctx := context.Background()
	handle := func(id, name string) (*brr.BackupResult, error) {
		t.Helper()
		out, err := b.engine.Handle(ctx, &brr.Job{ID: id, Kind: brr.KindBackup, Pool: "default", Args: brr.BackupJob{SourceName: name}}, nil)
		// A failed command is not retried; a failed before hook is, like any failed job.
		if err == nil || brr.IsPermanent(err) != (name != "hook") {
			t.Fatalf("backup of %s: %v (permanent %v)", name, err, brr.IsPermanent(err))
		}
		if out == nil || out.Result == nil || out.Result.Backup == nil {
			t.Fatalf("backup of %s failed with outcome %+v: want a result", name, out)
		}
		if out.Snapshot != "" || len(out.Events) != 0 || len(out.Jobs) != 0 || out.Result.Backup.Snapshot != "" {
			t.Fatalf("failed backup of %s states a snapshot, events or jobs: %+v", name, out)
		}
		if got, want := out.Source, jobs.SourceKey(name); got != want {
			t.Errorf("outcome source = %q, want %q", got, want)
		}
		return out.Result.Backup, err
	}

	res, err := handle("bad-1", "bad")
	if !strings.Contains(err.Error(), "exited 3") {
		t.Errorf("error of a command that exited 3: %v", err)
	}
	if res.Command == nil || res.Command.ExitCode != 3 || !strings.Contains(res.Command.Stderr, "connection refused") || res.SourceName != "bad" || res.Repo != "local" {
		t.Fatalf("result of a command that exited 3: %+v (command %+v)", res, res.Command)
	}
	if len(res.Hooks) != 1 || res.Hooks[0].Hook != "after" || !strings.Contains(res.Hooks[0].Output, "after ran") {
		t.Errorf("hooks of the failed backup: %+v", res.Hooks)
	}
	res, _ = handle("slow-1", "slow")
	if res.Command == nil || res.Command.ExitCode != -1 || !strings.Contains(res.Command.Stderr, "still dumping") {
		t.Fatalf("result of a command past its timeout: %+v (command %+v)", res, res.Command)
	}
	res, _ = handle("hook-1", "hook")
	if res.Command != nil || len(res.Hooks) != 1 || res.Hooks[0].ExitCode != 4 || !strings.Contains(res.Hooks[0].Output, "not today") {
		t.Fatalf("result of a failed before hook: %+v (hooks %+v)", res, res.Hooks)
	}
	if snaps, _ := b.engine.Snapshots(ctx, "", ""); len(snaps) != 0 {
		t.Fatalf("failed commands committed %+v", snaps)
	}
}

// A job cancelled while the command runs kills it, commits nothing, and is not marked
// permanent: it runs again.
func TestCommandSourceCancelled(t *testing.T) {
	b := setup(t)
	started := filepath.Join(t.TempDir(), "started")
	b.engine.Sources = map[string]jobs.Source{"db": {Command: "touch " + started + "; echo partial; sleep 60"}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := b.engine.Backup(ctx, "c-1", brr.BackupJob{SourceName: "db"}, nil)
		done <- err
	}()
	testkit.WaitFor(10*time.Second, func() bool { _, err := os.Stat(started); return err == nil })
	cancel()
	select {
	case err := <-done:
		if err == nil || brr.IsPermanent(err) || !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled backup: %v; want a cancellation, not permanent", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the backup did not stop after its job was cancelled")
	}
}

// A dry run of a command source does not run the command: it says what a backup would
// store.
func TestCommandSourceDryRun(t *testing.T) {
	b, _, runs, _ := commandSource(t)
	res, err := b.engine.Backup(context.Background(), "dry-1", brr.BackupJob{SourceName: "db", DryRun: true}, nil)
	if err != nil || !res.DryRun || res.Snapshot != "" || len(res.WouldRead) != 1 || res.WouldRead[0] != "db.dump" ||
		len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "does not run it") {
		t.Fatalf("dry run: %+v, %v", res, err)
	}
	if n := lines(t, runs); n != 0 {
		t.Fatalf("a dry run ran the command %d times", n)
	}
}

// A command that prints nothing stores an empty file.
func TestCommandSourceEmptyOutput(t *testing.T) {
	b := setup(t)
	b.engine.Sources = map[string]jobs.Source{"empty": {Command: "true"}}
	res, err := b.engine.Backup(context.Background(), "e-1", brr.BackupJob{SourceName: "empty"}, nil)
	if err != nil || res.Files != 1 || res.Bytes != 0 || res.Command == nil || res.Command.Bytes != 0 {
		t.Fatalf("backup of an empty output: %+v, %v", res, err)
	}
	target := filepath.Join(t.TempDir(), "out")
	restore(t, b.engine, res.Snapshot, target)
	if fi, err := os.Stat(filepath.Join(target, "empty.out")); err != nil || fi.Size() != 0 {
		t.Fatalf("restored empty.out: %v, %v; want an empty file named after the source", fi, err)
	}
}

// The restore_command's failure fails the restore for good with its exit code and stderr;
// it is given only the source's own snapshots; a source without a restore_command, or a
// source this worker lacks, cannot be restored without a target.
func TestRestoreCommandRules(t *testing.T) {
	b, _, _, restored := commandSource(t)
	ctx := context.Background()
	res, err := b.engine.Backup(ctx, "dump-1", brr.BackupJob{SourceName: "db"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tree := backup(t, b.engine, "tree-1", t.TempDir())
	src := b.engine.Sources["db"]
	src.RestoreCommand = "cat > /dev/null; echo 'pg_restore: error: could not connect' >&2; exit 2"
	b.engine.Sources["failing"] = src
	src.RestoreCommand = ""
	b.engine.Sources["dumponly"] = src

	// The snapshot is of source:db, not source:failing.
	_, err = b.engine.Restore(ctx, "r-other", brr.RestoreJob{Snapshot: res.Snapshot, SourceName: "failing"}, nil)
	if !brr.IsPermanent(err) || !strings.Contains(err.Error(), "is of source:db, not of source failing") {
		t.Fatalf("restore_command of another source's snapshot: %v", err)
	}
	b.engine.Sources["db"] = b.engine.Sources["failing"]
	out, err := b.engine.Handle(ctx, &brr.Job{ID: "r-fail2", Kind: brr.KindRestore, Pool: "default",
		Args: brr.RestoreJob{Snapshot: "latest", SourceName: "db"}}, nil)
	if !brr.IsPermanent(err) || !strings.Contains(err.Error(), "restore_command of source db exited 2: pg_restore: error: could not connect") {
		t.Fatalf("failing restore_command: %v", err)
	}
	if c := out.Result.Restore.Command; c == nil || c.ExitCode != 2 || !strings.Contains(c.Stderr, "could not connect") {
		t.Fatalf("failed restore_command's run: %+v", c)
	}
	_, err = b.engine.Restore(ctx, "r-tree", brr.RestoreJob{Snapshot: tree.Snapshot, SourceName: "db"}, nil)
	if !brr.IsPermanent(err) || !strings.Contains(err.Error(), "not of source db") {
		t.Fatalf("restore_command of a tree's snapshot: %v", err)
	}
	_, err = b.engine.Restore(ctx, "r-none", brr.RestoreJob{Snapshot: "latest", SourceName: "dumponly"}, nil)
	if !brr.IsPermanent(err) || !strings.Contains(err.Error(), "source dumponly has no restore_command") {
		t.Fatalf("restore of a source without restore_command: %v", err)
	}
	job := &brr.Job{ID: "r-x", Kind: brr.KindRestore, Pool: "default", Created: time.Now(), Args: brr.RestoreJob{Snapshot: "latest", SourceName: "other"}}
	if _, err := b.engine.Handle(ctx, job, nil); !strings.Contains(err.Error(), `source "other" is not in this worker's config`) {
		t.Fatalf("restore of a source the worker lacks: %v", err)
	} else if _, snoozed := brr.SnoozeDelay(err); !snoozed {
		t.Fatalf("restore of a source the worker lacks: %v; want a snooze", err)
	}
	if _, err := os.Stat(restored); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the original restore_command ran: %v", err)
	}
}

// A blob that cannot be read kills the restore_command before its input ends, so that it
// cannot take a truncated file for a whole one.
func TestRestoreCommandDamagedBlob(t *testing.T) {
	b, data, _, _ := commandSource(t)
	ctx := context.Background()
	res, err := b.engine.Backup(ctx, "dump-1", brr.BackupJob{SourceName: "db"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	id, _ := repo.ParseID(res.Snapshot)
	sn, err := b.repo.LoadSnapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := b.repo.LoadTree(ctx, sn.Tree)
	if err != nil {
		t.Fatal(err)
	}
	content := tree.Nodes[0].Content
	damageBlob(t, b.repo, b.dir, content[len(content)-1])
	marks := t.TempDir()
	src := b.engine.Sources["db"]
	src.RestoreCommand = "cat > " + filepath.Join(marks, "data") + " && touch " + filepath.Join(marks, "complete")
	b.engine.Sources["db"] = src

	r, err := openRepo(t, b.dir, []byte(testkit.Password)) // no blob cached
	if err != nil {
		t.Fatal(err)
	}
	b.engine.Repos["local"] = r
	_, err = b.engine.Restore(ctx, "r-damaged", brr.RestoreJob{Snapshot: res.Snapshot, SourceName: "db"}, nil)
	if !brr.IsPermanent(err) || !errors.Is(err, repo.ErrDamaged) || !strings.Contains(err.Error(), "killed before the end of its input") {
		t.Fatalf("restore_command of a damaged snapshot: %v", err)
	}
	if _, err := os.Stat(filepath.Join(marks, "complete")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the restore_command saw its input end: %v", err)
	}
	if got, _ := os.ReadFile(filepath.Join(marks, "data")); len(got) >= len(data) {
		t.Fatalf("the restore_command got %d bytes of %d", len(got), len(data))
	}
}

// The output of a command is streamed: the heap does not grow with it.
func TestCommandSourceMemoryIsBounded(t *testing.T) {
	if testing.Short() {
		t.Skip("streams 256 MiB")
	}
	const size = 256 << 20
	b := setup(t)
	b.engine.Sources = map[string]jobs.Source{"big": {Command: "head -c 268435456 /dev/urandom"}}
	defer debug.SetGCPercent(debug.SetGCPercent(25))
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	res, err := b.engine.Backup(context.Background(), "big-1", brr.BackupJob{SourceName: "big"}, nil)
	close(stop)
	<-sampled
	if err != nil {
		t.Fatal(err)
	}
	if res.Bytes != size {
		t.Fatalf("stored %d bytes, want %d", res.Bytes, size)
	}
	grew := int64(peak.Load()) - int64(before.HeapInuse)
	t.Logf("heap in use grew by at most %d MiB while storing %d MiB", grew>>20, size>>20)
	if grew > 96<<20 {
		t.Fatalf("heap in use grew by %d MiB while storing %d MiB: the stream is not bounded", grew>>20, size>>20)
	}
}

// TestLatestOfNamedSource: checkpoint, replicate and drill jobs pick "latest" among the
// snapshots of a named source without a path by its key, source:NAME, as restore does,
// though a newer snapshot of another source is in the repo.
func TestLatestOfNamedSource(t *testing.T) {
	b, _, _, _ := commandSource(t)
	offsite, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	b.engine.Repos["offsite"] = offsite
	ctx := context.Background()
	if _, err := b.engine.Backup(ctx, "dump-1", brr.BackupJob{SourceName: "db"}, nil); err != nil {
		t.Fatal(err)
	}
	second, err := b.engine.Backup(ctx, "dump-2", brr.BackupJob{SourceName: "db"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	tree := backup(t, b.engine, "tree-1", t.TempDir()) // newer, of another source
	if tree.Snapshot == second.Snapshot {
		t.Fatal("the tree's backup is the dump's")
	}
	key := jobs.SourceKey("db")

	cp, err := b.engine.Checkpoint(ctx, &brr.Job{ID: "cp-1", Kind: brr.KindCheckpoint}, brr.CheckpointJob{Snapshot: "latest", Source: key, Label: "before-migration"})
	if err != nil || cp.Point.Snapshot != second.Snapshot {
		t.Fatalf("checkpoint of latest of %s: %+v, %v; want snapshot %s", key, cp, err, second.Snapshot)
	}
	if _, err := b.engine.Replicate(ctx, "rep-1", brr.ReplicateJob{Snapshot: "latest", Source: key, From: "local", To: "offsite"}, nil); err != nil {
		t.Fatalf("replicate latest of %s: %v", key, err)
	}
	copied, err := b.engine.Snapshots(ctx, "offsite", "")
	if err != nil || len(copied) != 1 || copied[0].ID != second.Snapshot {
		t.Fatalf("offsite after replicating latest of %s: %+v, %v; want only %s", key, copied, err, second.Snapshot)
	}
	dr, err := b.engine.Drill(ctx, "drill-1", brr.DrillJob{Snapshot: "latest", Source: key}, nil)
	if err != nil || dr.Snapshot != second.Snapshot {
		t.Fatalf("drill of latest of %s: %+v, %v; want snapshot %s", key, dr, err, second.Snapshot)
	}
}
