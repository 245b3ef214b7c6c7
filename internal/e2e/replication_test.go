package e2e_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestReplicationPolicy runs a worker with a file repo, a repo in its NATS object store,
// and the policy local → offsite: a backup sets off a replicate job by itself, and the
// replica restores the same bytes, through the brr CLI.
func TestReplicationPolicy(t *testing.T) {
	dir := t.TempDir()
	writeKeys(t, dir, "local", "offsite")
	cfg := fmt.Sprintf(`repos:
  local:   {url: "file://%[1]s/repo", key_file: %[1]s/local.key}
  offsite: {url: "nats://brr-offsite", key_file: %[1]s/offsite.key}
replicate: {local: [offsite]}
`, dir)
	w := bins.StartWorker(t, testkit.WorkerOptions{Config: cfg})
	_, c := testkit.Connect(t, w.NATSURL)
	ctx := testkit.Context(t, 2*time.Minute)

	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 7, Sizes: []int{600 << 10, 40 << 10, 0, 3}})
	stdout, stderr, code := bins.RunCLI(t, nil, "--nats", w.NATSURL, "--json", "backup", src, "--wait")
	if code != 0 {
		t.Fatalf("brr backup: exit %d\n%s\n%s", code, stdout, stderr)
	}
	e, err := brr.DecodeEvent([]byte(strings.TrimSpace(stdout)))
	if err != nil || e.Result == nil || e.Result.Backup == nil {
		t.Fatalf("backup --json printed %q: %v", stdout, err)
	}
	snap := e.Result.Backup.Snapshot

	// The worker publishes the replicate job itself; its completion is announced.
	var (
		done   *brr.Event
		events []*brr.Event
	)
	completed := testkit.WaitFor(60*time.Second, func() bool {
		var err error
		if events, err = c.Events(ctx, brr.Subjects{}.Events(brr.EventReplication), time.Time{}, 0); err != nil {
			t.Fatal(err)
		}
		for _, e := range events {
			if e.Status == brr.StatusFailed {
				t.Fatalf("replication failed: %s", e.Error)
			}
			if e.Status == brr.StatusCompleted {
				done = e
			}
		}
		return done != nil
	})
	if !completed {
		t.Fatalf("no replication.completed event after 60s; replication events: %+v", events)
	}
	r := done.Replication
	if r == nil || r.From != "local" || r.To != "offsite" || len(r.Snapshots) != 1 || r.Snapshots[0] != snap || r.BlobsSent == 0 || r.Lag == nil || r.Lag.Behind != 0 {
		t.Fatalf("replication.completed = %+v (replication %+v), want %s copied local → offsite, no lag", done, r, snap)
	}
	if want := "repl-" + snap[:16] + "-offsite"; done.JobID != want {
		t.Errorf("replicate job id = %q, want %q", done.JobID, want)
	}

	target := filepath.Join(t.TempDir(), "from-offsite")
	stdout, stderr, code = bins.RunCLI(t, nil, "--nats", w.NATSURL, "restore", "latest", target, "--source", src, "--from", "offsite", "--wait")
	if code != 0 {
		t.Fatalf("brr restore --from offsite: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "from repo offsite") {
		t.Errorf("restore output does not say it read offsite:\n%s", stdout)
	}
	testkit.SameTree(t, src, target)

	// Asked by hand, the replica has everything: nothing to send, no lag.
	stdout, stderr, code = bins.RunCLI(t, nil, "--nats", w.NATSURL, "replicate", "all", "--to", "offsite", "--wait")
	if code != 0 || !strings.Contains(stdout, "already had the snapshot") || !strings.Contains(stdout, "has every snapshot") {
		t.Errorf("brr replicate all: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if _, stderr, code := bins.RunCLI(t, nil, "--nats", w.NATSURL, "replicate", "latest"); code != 2 || !strings.Contains(stderr, "--to is required") {
		t.Errorf("brr replicate without --to: exit %d, %s; want a usage error", code, stderr)
	}
}
