package main

import (
	"strings"
	"testing"
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
