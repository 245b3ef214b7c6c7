package main

import (
	"bytes"
	"testing"

	"github.com/brr-dev/brr"
)

func TestProgressView(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	v := newProgressView(&buf, false)
	job := &brr.Event{Type: brr.EventJob, Kind: brr.KindBackup, JobID: "p1", Worker: "w1"}
	for _, st := range []brr.Status{brr.StatusAccepted, brr.StatusStarted, brr.StatusProgress, brr.StatusRetrying, brr.StatusSucceeded} {
		e := *job
		e.Status = st
		if st == brr.StatusProgress {
			e.Progress = &brr.Progress{Phase: "scan", Files: 1, Bytes: 1536, TotalFiles: 4, TotalBytes: 3072, BytesPerSec: 2048, ETASeconds: 2}
		}
		if st == brr.StatusRetrying {
			e.Attempt, e.Error, e.RetryInMS = 1, "lease held", 1500
		}
		v.event(&e)
	}
	v.done()
	want := "accepted by worker w1\nstarted (attempt 1)\n" +
		"backup: scan 1/4 files, 1.5 KiB/3.0 KiB (50%), 2.0 KiB/s, ETA 2s\n" +
		"attempt 1 failed, retrying in 1.5s: lease held\n"
	if got := buf.String(); got != want {
		t.Fatalf("progress view wrote\n%q\nwant\n%q", got, want)
	}
	// The results bucket keeps a job's latest entry only, so a watcher can miss a start:
	// a later attempt's progress seen right after its accepted entry still says it started.
	var skipped bytes.Buffer
	s := newProgressView(&skipped, false)
	for _, e := range []brr.Event{
		{Status: brr.StatusAccepted, Worker: "w1", Attempt: 2},
		{Status: brr.StatusProgress, Attempt: 2, Progress: &brr.Progress{Phase: "restore", Files: 3, TotalFiles: 4}},
	} {
		e.Kind = brr.KindRestore
		s.event(&e)
	}
	if want := "accepted by worker w1\nstarted (attempt 2)\nrestore: 3/4 files (75%)\n"; skipped.String() != want {
		t.Fatalf("progress view after a missed start wrote\n%q\nwant\n%q", skipped.String(), want)
	}
	var quiet bytes.Buffer
	q := newProgressView(&quiet, true)
	q.event(job)
	if quiet.Len() != 0 {
		t.Fatalf("quiet view wrote %q", quiet.String())
	}
}

func TestJobProgressText(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		kind brr.Kind
		p    brr.Progress
		want string
	}{
		{brr.KindBackup, brr.Progress{Phase: "backup", Files: 5210, Bytes: 700 << 20, TotalFiles: 15036, TotalBytes: 1 << 30, BytesPerSec: 140 << 20, ETASeconds: 2.3},
			"backup: 5210/15036 files, 700.0 MiB/1.0 GiB (68%), 140.0 MiB/s, ETA 2s"},
		{brr.KindRestore, brr.Progress{Phase: "restore", Files: 3, Bytes: 2048},
			"restore: 3 files, 2.0 KiB"},
		// A verify counts objects and no bytes: no "0 B", the percentage from the count.
		{brr.KindVerify, brr.Progress{Phase: "read data", Files: 120, TotalFiles: 452, ETASeconds: 9},
			"verify: read data 120/452 objects (27%), ETA 9s"},
		{brr.KindVerify, brr.Progress{Phase: "check structure", Files: 0, TotalFiles: 2},
			"verify: check structure 0/2 objects (0%)"},
		{brr.KindVerify, brr.Progress{Phase: "check structure"},
			"verify: check structure 0 objects"},
		// An event of unknown kind (brr events) shows the phase alone, as before.
		{"", brr.Progress{Phase: "backup", Files: 1, Bytes: 1536, TotalFiles: 4, TotalBytes: 3072},
			"backup: 1/4 files, 1.5 KiB/3.0 KiB (50%)"},
	} {
		if got := jobProgressText(tt.kind, &tt.p); got != tt.want {
			t.Errorf("jobProgressText(%q, %+v) =\n%q, want\n%q", tt.kind, tt.p, got, tt.want)
		}
	}
}
