package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
)

func TestRecoveryJobFlags(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	run := func(args ...string) {
		t.Helper()
		if r := brrCmd(t, url, args...); r.code != 0 {
			t.Fatalf("brr %s: %v", strings.Join(args, " "), r)
		}
	}
	run("checkpoint", "latest", "--label", "before-upgrade", "--reason", "schema 2", "--source", "srv/app", "--repo", "local", "--id", "c1", "--wait")
	if a := w.deliveries("c1")[0].Args.(*brr.CheckpointJob); a.Snapshot != "latest" || a.Label != "before-upgrade" || a.Reason != "schema 2" ||
		a.Source != "/home/u/srv/app" || a.Repo != "local" || a.Remove {
		t.Errorf("checkpoint args = %+v", a)
	}
	run("checkpoints", "rm", "before-upgrade", "--repo", "offsite", "--id", "c2")
	w.waitFor(t, "c2", 1)
	if a := w.deliveries("c2")[0].Args.(*brr.CheckpointJob); !a.Remove || a.Label != "before-upgrade" || a.Repo != "offsite" {
		t.Errorf("checkpoints rm args = %+v", a)
	}

	run("prune", "--repo", "local", "--keep-last", "3", "--keep-daily", "7", "--keep-weekly", "4", "--keep-monthly", "12",
		"--keep-yearly", "2", "--keep-hourly", "24", "--id", "p1")
	w.waitFor(t, "p1", 1)
	a := w.deliveries("p1")[0].Args.(*brr.PruneJob)
	want := brr.RetentionPolicy{KeepLast: 3, KeepHourly: 24, KeepDaily: 7, KeepWeekly: 4, KeepMonthly: 12, KeepYearly: 2}
	if a.Repo != "local" || a.DryRun || a.Policy == nil || a.Policy.KeepLast != want.KeepLast || a.Policy.KeepHourly != 24 ||
		a.Policy.KeepDaily != 7 || a.Policy.KeepWeekly != 4 || a.Policy.KeepMonthly != 12 || a.Policy.KeepYearly != 2 {
		t.Errorf("prune args = %+v (policy %+v), want %+v", a, a.Policy, want)
	}
	// Without --keep-* the worker's policy applies; --dry-run waits for the report.
	r := brrCmd(t, url, "prune", "--dry-run", "--id", "p2")
	if r.code != 0 || !strings.Contains(r.stderr, "prune job p2 published") || !strings.Contains(r.stdout, "p2 succeeded") {
		t.Fatalf("prune --dry-run does not wait: %v", r)
	}
	if a := w.deliveries("p2")[0].Args.(*brr.PruneJob); !a.DryRun || a.Policy != nil {
		t.Errorf("prune --dry-run args = %+v", a)
	}
	// Any --keep-* flag given, even 0, makes the job's own policy, overriding the
	// worker's: all zero is the policy that keeps everything.
	run("prune", "--keep-last", "0", "--id", "p3")
	w.waitFor(t, "p3", 1)
	if a := w.deliveries("p3")[0].Args.(*brr.PruneJob); a.Policy == nil || !a.Policy.Empty() {
		t.Errorf("prune --keep-last 0 args = %+v, want an empty policy of the job's own", a)
	}

	run("drill", "latest", "--source", "/srv/app", "--repo", "offsite", "--id", "d1", "--wait")
	if a := w.deliveries("d1")[0].Args.(*brr.DrillJob); a.Snapshot != "latest" || a.Source != "/srv/app" || a.Repo != "offsite" {
		t.Errorf("drill args = %+v", a)
	}
	run("verify", "--drill", "--id", "v1", "--wait")
	if a := w.deliveries("v1")[0].Args.(*brr.VerifyJob); !a.Drill || a.ReadData {
		t.Errorf("verify --drill args = %+v", a)
	}
}

func TestRecoveryUsageErrors(t *testing.T) {
	t.Parallel()
	_, url := setup(t)
	for _, args := range [][]string{
		{"checkpoint"},
		{"checkpoint", "latest"},
		{"checkpoint", "latest", "--label", "bad label"},
		{"checkpoint", "nothex", "--label", "x"},
		{"checkpoints", "extra"},
		{"checkpoints", "rm"},
		{"checkpoints", "rm", "a", "b"},
		{"checkpoints", "--repo", "bad name"},
		{"prune", "--keep-last", "many"},
		{"prune", "--keep-daily", "-1"},
		{"prune", "extra"},
		{"drill"},
		{"drill", "latest", "--repo", "bad name"},
		{"verify", "--drill=maybe"},
	} {
		r := brrCmd(t, url, args...)
		if r.code != exitUsage {
			t.Errorf("brr %s: %v\nwant exit 2", strings.Join(args, " "), r)
		}
	}
}

func TestCheckpointsList(t *testing.T) {
	t.Parallel()
	srv := natstest.StartListening(t)
	startWorker(t, srv)
	nc := srv.Connect(t)
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	sub, err := nc.Subscribe(brr.Subjects{}.API("default", "checkpoints"), func(m *nats.Msg) {
		var req brr.CheckpointsRequest
		_ = json.Unmarshal(m.Data, &req)
		reply := brr.CheckpointsReply{V: brr.Version, Points: []brr.RecoveryPoint{
			{Repo: "local", Label: "before-upgrade", Snapshot: "abcdef0123456789", Source: "/srv/app", Reason: "schema\nmigration", By: "ops@h1", Time: t0, SnapshotTime: t0.Add(-time.Hour)},
			{Repo: "offsite", Label: "audit", Snapshot: "0123456789abcdef", Time: t0},
		}}
		if req.Repo == "" {
			reply.Unread = map[string]string{"offsite": "bucket not found"}
		} else {
			reply.Points = reply.Points[:1]
		}
		data, _ := json.Marshal(reply)
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()

	r := brrCmd(t, url, "checkpoints")
	if r.code != 0 {
		t.Fatal(r)
	}
	for _, want := range []string{"REPO", "before-upgrade", "abcdef012345", "/srv/app", "schema migration", "ops@h1", "audit", "(snapshot gone)"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("checkpoints lacks %q:\n%v", want, r)
		}
	}
	if !strings.Contains(r.stderr, "repo offsite could not be read") || !strings.Contains(r.stderr, "bucket not found") {
		t.Errorf("checkpoints does not warn about offsite:\n%v", r)
	}
	r = brrCmd(t, url, "checkpoints", "ls", "--repo", "local", "--json")
	if r.code != 0 {
		t.Fatal(r)
	}
	objs := jsonLines(t, "checkpoints ls --json", r.stdout)
	if len(objs) != 1 || objs[0]["label"] != "before-upgrade" || objs[0]["repo"] != "local" || r.stderr != "" {
		t.Fatalf("checkpoints ls --repo local --json: %v", r)
	}
}

func TestPrintRecovery(t *testing.T) {
	t.Parallel()
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.Local)
	until := t0.Add(time.Hour)
	var buf bytes.Buffer
	printRecovery(&buf, &brr.Result{Prune: &brr.PruneResult{
		Repo: "local", DryRun: true, Kept: 1, Removed: []string{"bbbbbbbbbbbbbbbb"},
		Decisions: []brr.SnapshotDecision{
			{ID: "aaaaaaaaaaaaaaaa", Time: t0, Host: "h1", Source: "/srv/app", Keep: true, Reasons: []string{"last 1/1", "pinned release"}},
			{ID: "bbbbbbbbbbbbbbbb", Time: t0.Add(-time.Hour), Host: "h1", Source: "/srv/app", Tags: []string{"nightly"}},
		},
		PacksCondemned: 2, PendingPacks: 2, PendingBytes: 3 << 20, PendingUntil: &until, DurationMS: 1500,
	}})
	out := buf.String()
	for _, want := range []string{
		"prune of repo local (dry run: nothing was changed)",
		"keep    aaaaaaaaaaaa  2026-11-26 12:00:00",
		"last 1/1, pinned release",
		"remove  bbbbbbbbbbbb",
		"nightly  no rule keeps it",
		"snapshots: 1 kept, 1 to remove",
		"pending:   2 packs (3.0 MiB) condemned, deleted by a prune after 2026-11-26 13:00:00",
		"packs:     0 deleted (0 B freed, 0 blobs), 0 repacked (0 B copied), 2 condemned",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("prune report lacks %q:\n%s", want, out)
		}
	}

	buf.Reset()
	printRecovery(&buf, &brr.Result{Drill: &brr.DrillResult{Repo: "local", Snapshot: "cccccccccccccccc", Source: "/srv/app", Files: 3,
		Problems: []string{"/a: missing from the restored copy"}, ProblemCount: 2}})
	if out := buf.String(); !strings.Contains(out, "FAILED with 2 problems") || !strings.Contains(out, "  /a: missing") || !strings.Contains(out, "and 1 more") {
		t.Errorf("drill report:\n%s", out)
	}
	buf.Reset()
	printRecovery(&buf, &brr.Result{Checkpoint: &brr.CheckpointResult{Removed: true, Point: brr.RecoveryPoint{
		Repo: "local", Label: "release", Snapshot: "dddddddddddddddd", Source: "/srv/app", SnapshotTime: t0, Time: t0, By: "ops", Reason: "r"}}})
	if out := buf.String(); !strings.HasPrefix(out, "removed recovery point release of repo local: snapshot dddddddddddd of /srv/app") {
		t.Errorf("checkpoint report:\n%s", out)
	}
}
