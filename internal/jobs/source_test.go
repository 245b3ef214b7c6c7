package jobs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/testkit"
)

// A job that names a source backs up the source's path with its excludes and tags, and
// runs its hooks around the backup: before first, after last with the outcome in its
// environment; both runs are in the result.
func TestNamedSourceWithHooks(t *testing.T) {
	b := setup(t)
	src, marks := t.TempDir(), t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "app.db"), []byte("rows"), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "debug.log"), []byte("noise"), 0o644)
	after := filepath.Join(marks, "after")
	b.engine.Sources = map[string]jobs.Source{"app": {
		Path: src, Excludes: []string{"*.log"}, Tags: []string{"app"},
		// The before hook writes a file into the source: the backup, which runs after
		// it, must see it.
		Before: "echo checkpointed > " + filepath.Join(src, "checkpoint") + " && echo before ran; echo to stderr >&2",
		After:  `echo "$BRR_STATUS $BRR_SNAPSHOT $BRR_JOB_ID $BRR_SOURCE_NAME" > ` + after,
	}}

	out, err := b.engine.Handle(context.Background(), &brr.Job{ID: "src-1", Kind: brr.KindBackup, Pool: "default",
		Args: brr.BackupJob{SourceName: "app", Tags: []string{"nightly"}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := out.Result.Backup
	if res.SourceName != "app" || res.Source != src || out.Snapshot == "" {
		t.Fatalf("result %+v: want a snapshot of %s named app", res, src)
	}
	if len(res.Hooks) != 2 || res.Hooks[0].Hook != "before" || !strings.Contains(res.Hooks[0].Output, "before ran") ||
		!strings.Contains(res.Hooks[0].Output, "to stderr") || res.Hooks[1].Hook != "after" || res.Hooks[1].ExitCode != 0 {
		t.Fatalf("hook runs %+v", res.Hooks)
	}
	data, err := os.ReadFile(after)
	if want := "succeeded " + res.Snapshot + " src-1 app\n"; err != nil || string(data) != want {
		t.Fatalf("after hook saw %q (%v), want %q", data, err, want)
	}
	target := filepath.Join(t.TempDir(), "out")
	restore(t, b.engine, res.Snapshot, target)
	if got := regularFiles(t, target); !slices.Equal(got, []string{"app.db", "checkpoint"}) {
		t.Fatalf("restored %q: want the source without *.log, with what the before hook wrote", got)
	}
	snaps, err := b.engine.Snapshots(context.Background(), "", src)
	if err != nil || len(snaps) != 1 || !slices.Equal(snaps[0].Tags, []string{"nightly", "app"}) {
		t.Fatalf("snapshots %+v, %v: want one tagged nightly and app", snaps, err)
	}
}

// A failing before hook fails the job before anything is read: no snapshot, and the
// after hook still runs, told that the job failed and why.
func TestBeforeHookFails(t *testing.T) {
	b := setup(t)
	src, after := t.TempDir(), filepath.Join(t.TempDir(), "after")
	testkit.WriteFile(t, filepath.Join(src, "f"), []byte("x"), 0o644)
	b.engine.Sources = map[string]jobs.Source{"app": {
		Path:   src,
		Before: "echo cannot freeze >&2; exit 3",
		After:  `echo "$BRR_STATUS|$BRR_SNAPSHOT|$BRR_ERROR" > ` + after,
	}}
	_, err := b.engine.Backup(context.Background(), "src-fail", brr.BackupJob{SourceName: "app"}, nil)
	if err == nil || !strings.Contains(err.Error(), "before hook of source app exited 3: cannot freeze") {
		t.Fatalf("backup with a failing before hook: %v", err)
	}
	if snaps, _ := b.engine.Snapshots(context.Background(), "", ""); len(snaps) != 0 {
		t.Fatalf("a snapshot was committed: %+v", snaps)
	}
	data, _ := os.ReadFile(after)
	if got := string(data); !strings.HasPrefix(got, "failed||") || !strings.Contains(got, "exited 3") {
		t.Fatalf("after hook saw %q", got)
	}
}

// A hook that outlives the source's timeout is killed, with whatever it started.
func TestHookTimeout(t *testing.T) {
	b := setup(t)
	b.engine.Sources = map[string]jobs.Source{"app": {Path: t.TempDir(), Before: "sleep 60 & sleep 60", Timeout: 300 * time.Millisecond}}
	start := time.Now()
	_, err := b.engine.Backup(context.Background(), "src-slow", brr.BackupJob{SourceName: "app"}, nil)
	if err == nil || !strings.Contains(err.Error(), "did not finish within 300ms") {
		t.Fatalf("backup with a hook past its timeout: %v", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Fatalf("the hook held the job %s after its timeout", d)
	}
}

// A job naming a source this worker lacks is refused: snoozed for a worker that has it,
// until it is old; a message cannot smuggle in a path with the name.
func TestUnknownSourceIsRefused(t *testing.T) {
	b := setup(t)
	b.engine.Sources = map[string]jobs.Source{"app": {Path: t.TempDir()}}
	job := &brr.Job{ID: "src-x", Kind: brr.KindBackup, Pool: "default", Created: time.Now(), Args: brr.BackupJob{SourceName: "db"}}
	_, err := b.engine.Handle(context.Background(), job, nil)
	if _, snoozed := brr.SnoozeDelay(err); !snoozed || !strings.Contains(err.Error(), `source "db" is not in this worker's config (its sources: app)`) {
		t.Fatalf("job on a source the worker lacks: %v; want a snooze naming its sources", err)
	}
	job.Created = time.Now().Add(-2 * jobs.RefusedFor)
	if _, err := b.engine.Handle(context.Background(), job, nil); !brr.IsPermanent(err) {
		t.Fatalf("old job on a source the worker lacks: %v; want a permanent failure", err)
	}
	both := brr.BackupJob{SourceName: "app", Path: "/etc"}
	if _, err := b.engine.Backup(context.Background(), "src-both", both, nil); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("job naming a source and a path: %v; want ErrInvalid", err)
	}
}
