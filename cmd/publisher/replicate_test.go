package main

import (
	"bytes"
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
