package main

import (
	"strings"
	"testing"

	"github.com/brr-dev/brr"
)

// TestListFilters: brr jobs takes --kind and --status as the API does, ping jobs (the
// health canary) are hidden from brr jobs and brr events unless --all, brr events takes
// --quiet, and --since takes days as the API does.
func TestListFilters(t *testing.T) {
	t.Parallel()
	_, url := setup(t)
	if r := brrCmd(t, url, "backup", "/srv/app", "--id", "ok1", "--wait"); r.code != 0 {
		t.Fatal(r)
	}
	if r := brrCmd(t, url, "backup", "/fail/x", "--id", "bad1", "--wait"); r.code != 1 {
		t.Fatal(r)
	}
	if r := brrCmd(t, url, "bench", "--jobs", "5"); r.code != 0 {
		t.Fatal(r)
	}

	r := brrCmd(t, url, "jobs")
	if r.code != 0 || !strings.Contains(r.stdout, "ok1") || !strings.Contains(r.stdout, "bad1") || strings.Contains(r.stdout, "ping") {
		t.Fatalf("jobs hides pings: %v", r)
	}
	if r := brrCmd(t, url, "jobs", "--all"); strings.Count(r.stdout, "ping") != 5 {
		t.Fatalf("jobs --all shows the 5 pings: %v", r)
	}
	if r := brrCmd(t, url, "jobs", "--kind", "ping", "--limit", "2"); strings.Count(r.stdout, "ping") != 2 || strings.Contains(r.stdout, "ok1") {
		t.Fatalf("jobs --kind ping --limit 2: %v", r)
	}
	if r := brrCmd(t, url, "jobs", "--status", "failed"); !strings.Contains(r.stdout, "bad1") || strings.Contains(r.stdout, "ok1") {
		t.Fatalf("jobs --status failed: %v", r)
	}
	if r := brrCmd(t, url, "jobs", "--kind", "frobnicate"); r.code != 2 || !strings.Contains(r.stderr, "backup|restore") {
		t.Fatalf("jobs --kind frobnicate: %v", r)
	}

	r = brrCmd(t, url, "events", "--since", "1d")
	if r.code != 0 || !strings.Contains(r.stdout, "job=ok1") || strings.Contains(r.stdout, "job.ping") {
		t.Fatalf("events --since 1d hides pings: %v", r)
	}
	if !strings.Contains(r.stdout, "job.backup.progress") {
		t.Fatalf("events without --quiet shows progress: %v", r)
	}
	if r := brrCmd(t, url, "events", "--all"); !strings.Contains(r.stdout, "job.ping.succeeded") {
		t.Fatalf("events --all shows pings: %v", r)
	}
	if r := brrCmd(t, url, "events", "--quiet", "--since", "2w"); strings.Contains(r.stdout, "progress") || !strings.Contains(r.stdout, "job.backup.succeeded job=ok1") {
		t.Fatalf("events --quiet: %v", r)
	}
	if r := brrCmd(t, url, "events", "--since", "1x"); r.code != 2 || !strings.Contains(r.stderr, "7d") {
		t.Fatalf("events --since 1x: %v", r)
	}
}

// TestJobInfoEveryKind: the INFO column of brr jobs says something for every kind, not
// only for backups.
func TestJobInfoEveryKind(t *testing.T) {
	for _, tt := range []struct {
		e    *brr.Event
		want string
	}{
		{&brr.Event{Kind: brr.KindReplicate, Result: &brr.Result{Replicate: &brr.ReplicateResult{From: "local", To: "offsite", Snapshots: []string{"a", "b"}, Present: 1, BytesSent: 2048}}}, "local → offsite: 2 snapshots copied, 1 there already, 2.0 KiB sent"},
		{&brr.Event{Kind: brr.KindPrune, Result: &brr.Result{Prune: &brr.PruneResult{Repo: "local", Removed: []string{"a"}, Kept: 7, BytesFreed: 1 << 20}}}, "repo local: removed 1 snapshots, kept 7, freed 1.0 MiB"},
		{&brr.Event{Kind: brr.KindPrune, Result: &brr.Result{Prune: &brr.PruneResult{Repo: "local", DryRun: true, Removed: []string{"a", "b"}, Kept: 3}}}, "dry run: would remove 2"},
		{&brr.Event{Kind: brr.KindCheckpoint, Result: &brr.Result{Checkpoint: &brr.CheckpointResult{Point: brr.RecoveryPoint{Repo: "local", Label: "pre-upgrade", Snapshot: "abcdef0123456789"}}}}, `point "pre-upgrade" on snapshot abcdef012345`},
		{&brr.Event{Kind: brr.KindDrill, Result: &brr.Result{Drill: &brr.DrillResult{Snapshot: "abcdef0123456789", Passed: true, Files: 3, Bytes: 300}}}, "passed: snapshot abcdef012345, 3 files"},
		{&brr.Event{Kind: brr.KindDrill, Result: &brr.Result{Drill: &brr.DrillResult{Snapshot: "abcdef0123456789", ProblemCount: 2}}}, "failed: snapshot abcdef012345, 2 problems"},
		{&brr.Event{Kind: brr.KindPing, Result: &brr.Result{Ping: &brr.PingResult{Worker: "w1"}}}, "answered by w1"},
		{&brr.Event{Kind: brr.KindVerify, Status: brr.StatusStarted, Repo: "offsite"}, "repo offsite"},
		{&brr.Event{Kind: brr.KindBackup, Status: brr.StatusProgress, Source: "/srv/app", Repo: "local"}, "/srv/app, repo local"},
	} {
		if got := jobInfo(tt.e); !strings.Contains(got, tt.want) {
			t.Errorf("jobInfo(%s) = %q, want %q", tt.e.Kind, got, tt.want)
		}
	}
}
