package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

func TestReplicateAndRestoreFrom(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	r := brrCmd(t, url, "replicate", "latest", "--to", "offsite", "--from", "local", "--source", "data", "--id", "rp1")
	if r.code != 0 || r.stdout != "rp1\n" {
		t.Fatalf("replicate: %v", r)
	}
	w.waitFor(t, "rp1", 1)
	a := w.deliveries("rp1")[0].Args.(*brr.ReplicateJob)
	if *a != (brr.ReplicateJob{Snapshot: "latest", Source: "/home/u/data", From: "local", To: "offsite"}) {
		t.Errorf("replicate args = %+v", a)
	}

	r = brrCmd(t, url, "restore", "latest", "out", "--from", "offsite", "--id", "rf1")
	if r.code != 0 {
		t.Fatalf("restore --from: %v", r)
	}
	w.waitFor(t, "rf1", 1)
	if got := w.deliveries("rf1")[0].Args.(*brr.RestoreJob).Repo; got != "offsite" {
		t.Errorf("restore --from offsite asked repo %q", got)
	}

	for _, args := range [][]string{
		{"replicate", "latest"},
		{"replicate", "latest", "--to", "local", "--from", "local"},
		{"replicate", "yesterday", "--to", "offsite"},
		{"restore", "latest", "out", "--from", "offsite", "--repo", "local"},
	} {
		if r := brrCmd(t, url, args...); r.code != 2 {
			t.Errorf("brr %s: %v\nwant exit 2", strings.Join(args, " "), r)
		}
	}
}

func TestPrintReplicate(t *testing.T) {
	oldest := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	measured := oldest.Add(3 * time.Hour)
	for _, tt := range []struct {
		name    string
		r       brr.ReplicateResult
		want    []string
		notWant []string
	}{
		{
			name: "copied, behind",
			r: brr.ReplicateResult{From: "local", To: "offsite", Snapshots: []string{"3f9a0c1d5e7b9f2a4c6e", "77e0b1c2d3e4f5a6"}, Present: 1,
				BlobsSent: 12, BytesSent: 3 << 20, BlobsPresent: 40,
				Lag: brr.ReplicationLag{Behind: 2, Oldest: &oldest, AgeSeconds: 3 * 3600, Measured: measured}},
			want: []string{"copied 2 snapshots from repo local to repo offsite: 3f9a0c1d5e7b, 77e0b1c2d3e4", "present: 1 snapshot",
				"sent:    3.0 MiB in 12 blobs (40 blobs the target had)", "lag:     repo offsite lacks 2 snapshots of repo local", "(3h0m0s ago)"},
		},
		{
			name:    "present",
			r:       brr.ReplicateResult{From: "local", To: "offsite", Present: 3, Lag: brr.ReplicationLag{Measured: measured}},
			want:    []string{"repo offsite already had the 3 snapshots", "has every snapshot of repo local"},
			notWant: []string{"sent:"},
		},
		{
			name:    "failed midway",
			r:       brr.ReplicateResult{From: "local", To: "offsite", BlobsSent: 5, Warnings: []string{"update blob map: disk full"}},
			want:    []string{"no snapshot copied", "in 5 blobs", "warning: update blob map: disk full"},
			notWant: []string{"lag:"},
		},
	} {
		var buf bytes.Buffer
		printReplicate(&buf, &tt.r)
		for _, s := range tt.want {
			if !strings.Contains(buf.String(), s) {
				t.Errorf("%s: output lacks %q:\n%s", tt.name, s, buf.String())
			}
		}
		for _, s := range tt.notWant {
			if strings.Contains(buf.String(), s) {
				t.Errorf("%s: output has %q:\n%s", tt.name, s, buf.String())
			}
		}
	}
}

func TestReplicatePolicy(t *testing.T) {
	t.Parallel()
	url, _, registry := repoServer(t)
	for _, args := range [][]string{
		{"repo", "add", "local", "file:///srv/brr", "--key-file", "/etc/brr/local.key"},
		{"repo", "add", "offsite", "s3://s3.example.com/bkt", "--password-env", "P"},
		{"repo", "add", "archive", "nats://archive", "--password-env", "P"},
	} {
		if r := brrCmd(t, url, args...); r.code != 0 {
			t.Fatalf("brr %s: %v", strings.Join(args, " "), r)
		}
	}
	if got := policy(t, registry, "default", "local"); got != nil {
		t.Fatalf("a repo just added has the policy %q", got)
	}

	r := brrCmd(t, url, "replicate", "policy", "set", "local", "--to", "offsite", "--to", "archive,offsite")
	if r.code != 0 || !strings.HasPrefix(r.stdout, "repo local of pool default replicates each new snapshot to offsite, archive\n") ||
		!strings.Contains(r.stdout, "brr replicate all --from local --to offsite") {
		t.Fatalf("replicate policy set: %v", r)
	}
	if got := policy(t, registry, "default", "local"); !slices.Equal(got, []string{"offsite", "archive"}) {
		t.Fatalf("local's policy = %q, want [offsite archive]", got)
	}
	r = brrCmd(t, url, "replicate", "policy", "ls")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); r.code != 0 || len(lines) != 2 ||
		!slices.Equal(strings.Fields(lines[1]), []string{"local", "offsite,archive"}) {
		t.Fatalf("replicate policy ls: %v", r)
	}

	// A policy that names no repo of the pool, or the repo itself, is refused and the
	// policy kept.
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"set", "local", "--to", "nosuch"}, 1, "pool default has no repo nosuch to replicate to; add it first with `brr repo add nosuch URL`"},
		{[]string{"set", "local", "--to", "offsite", "--to", "local"}, 2, "repo local cannot replicate to itself"},
		{[]string{"set", "nosuch", "--to", "offsite"}, 1, "pool default has no repo nosuch"},
		{[]string{"set", "local"}, 2, "give the repos to replicate local to with --to NAME"},
		{[]string{"set", "local", "--to", "a.b"}, 2, `repo name "a.b"`},
		{[]string{"set", "--to", "offsite"}, 2, "replicate policy set takes 1 argument, got 0"},
		{[]string{"rm"}, 2, "replicate policy rm takes 1 argument, got 0"},
		{[]string{"rm", "nosuch"}, 1, "pool default has no repo nosuch"},
	} {
		r := brrCmd(t, url, append([]string{"replicate", "policy"}, tt.args...)...)
		if r.code != tt.code || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("brr replicate policy %s: %v\nwant exit %d saying %q", strings.Join(tt.args, " "), r, tt.code, tt.want)
		}
	}
	if got := policy(t, registry, "default", "local"); !slices.Equal(got, []string{"offsite", "archive"}) {
		t.Fatalf("local's policy after refused changes = %q, want [offsite archive]", got)
	}

	r = brrCmd(t, url, "replicate", "policy", "set", "offsite", "--to", "archive", "--json")
	if objs := jsonLines(t, "replicate policy set --json", r.stdout); r.code != 0 || len(objs) != 1 || objs[0]["repo"] != "offsite" {
		t.Fatalf("replicate policy set --json: %v", r)
	}
	// rm leaves an empty policy, not none: a worker's config no longer seeds one.
	r = brrCmd(t, url, "replicate", "policy", "rm", "local")
	if r.code != 0 || !strings.Contains(r.stdout, "repo local of pool default has no replication policy now") {
		t.Fatalf("replicate policy rm: %v", r)
	}
	if got := policy(t, registry, "default", "local"); got == nil || len(got) != 0 {
		t.Fatalf("local's policy after rm = %#v, want empty", got)
	}
	r = brrCmd(t, url, "replicate", "policy", "--json")
	if objs := jsonLines(t, "replicate policy --json", r.stdout); r.code != 0 || len(objs) != 1 || objs[0]["repo"] != "offsite" {
		t.Fatalf("replicate policy --json after rm local: %v", r)
	}
}

// TestReplicateRoutes checks that "policy" after replicate is its subcommand, and that
// anything else is still the SNAPSHOT of a replicate job, scheduled ones included.
func TestReplicateRoutes(t *testing.T) {
	t.Parallel()
	w, url := setup(t) // a stub worker: the job streams, no repo registry
	r := brrCmd(t, url, "replicate", "latest", "--to", "x", "--id", "rr1")
	if r.code != 0 || r.stdout != "rr1\n" {
		t.Fatalf("replicate latest --to x: %v", r)
	}
	w.waitFor(t, "rr1", 1)
	if a := w.deliveries("rr1")[0].Args.(*brr.ReplicateJob); *a != (brr.ReplicateJob{Snapshot: "latest", To: "x"}) {
		t.Errorf("replicate args = %+v", a)
	}
	// The policy subcommand asks the registry, which this server lacks.
	r = brrCmd(t, url, "replicate", "policy", "set", "latest", "--to", "x")
	if r.code != 3 || !strings.Contains(r.stderr, "bucket BRR_REPOS not found") {
		t.Fatalf("replicate policy set: %v", r)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"replicate", "policy", "set", "local", "--to", "x", "--wait"}, "unknown flag: --wait"},
		{[]string{"replicate", "policy", "nosuch"}, `unknown command "nosuch" for brr replicate policy (its commands: `},
		{[]string{"schedule", "add", "p", "--cron", "@daily", "--", "replicate", "policy", "set", "local", "--to", "x"}, "is not a job command"},
		{[]string{"schedule", "add", "p", "--cron", "@daily", "--", "repo", "add", "x", "file:///x", "--password-env", "P"}, "is not a job command"},
	} {
		if r := brrCmd(t, url, tt.args...); r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("brr %s: %v\nwant exit 2 saying %q", strings.Join(tt.args, " "), r, tt.want)
		}
	}
}
