package events

import (
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

func TestNewEvent(t *testing.T) {
	cfg := Config{Worker: "w1", Host: "h1"}
	before := time.Now().UTC()
	e := cfg.newEvent(brr.EventJob, brr.StatusStarted)
	if e.V != brr.Version || e.Type != brr.EventJob || e.Status != brr.StatusStarted || e.Worker != "w1" || e.Host != "h1" {
		t.Errorf("newEvent = %+v", e)
	}
	if e.ID == "" {
		t.Errorf("newEvent has no id")
	}
	if e.Time.Before(before) || e.Time.Location() != time.UTC {
		t.Errorf("Time = %v, want UTC, not before %v", e.Time, before)
	}
	if e2 := cfg.newEvent(brr.EventJob, brr.StatusStarted); e2.ID == e.ID {
		t.Errorf("two events share id %s", e.ID)
	}
}

func TestOutboxMsgs(t *testing.T) {
	cfg := Config{Subjects: brr.Subjects{Prefix: "acme"}, Worker: "w1"}
	for _, tc := range []struct {
		typ     brr.EventType
		status  brr.Status
		subject string
		result  bool
	}{
		{brr.EventJob, brr.StatusAccepted, "acme.events.job.backup.accepted", false},
		{brr.EventJob, brr.StatusStarted, "acme.events.job.backup.started", true},
		{brr.EventJob, brr.StatusProgress, "acme.events.job.backup.progress", false},
		{brr.EventJob, brr.StatusRetrying, "acme.events.job.backup.retrying", false},
		{brr.EventJob, brr.StatusSucceeded, "acme.events.job.backup.succeeded", true},
		{brr.EventJob, brr.StatusFailed, "acme.events.job.backup.failed", true},
		{brr.EventJob, brr.StatusDead, "acme.events.job.backup.dead", true},
		{brr.EventSnapshot, brr.StatusCommitted, "acme.events.snapshot.committed", false},
	} {
		e := cfg.newEvent(tc.typ, tc.status)
		e.JobID, e.Kind, e.Pool = "job-1", brr.KindBackup, "default"
		msgs := cfg.outboxMsgs(e)
		want := 1
		if tc.result {
			want = 2
		}
		if len(msgs) != want {
			t.Fatalf("%s %s: %d messages, want %d", tc.typ, tc.status, len(msgs), want)
		}
		if got := msgs[0].Subject; got != tc.subject {
			t.Errorf("%s %s: subject %q, want %q", tc.typ, tc.status, got, tc.subject)
		}
		if got := msgs[0].MsgID; got != e.ID {
			t.Errorf("%s %s: msg id %q, want %q", tc.typ, tc.status, got, e.ID)
		}
		d, err := brr.DecodeEvent(msgs[0].Data)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.typ, tc.status, err)
		}
		if d.ID != e.ID || d.Status != tc.status || d.JobID != "job-1" || d.Worker != "w1" {
			t.Errorf("%s %s: decoded %+v", tc.typ, tc.status, d)
		}
		if tc.result {
			r := msgs[1]
			if got, want := r.Subject, "$KV.ACME_RESULTS.job-1"; got != want {
				t.Errorf("%s: result subject %q, want %q", tc.status, got, want)
			}
			if got, want := r.MsgID, e.ID+"-r"; got != want {
				t.Errorf("%s: result msg id %q, want %q", tc.status, got, want)
			}
			if string(r.Data) != string(msgs[0].Data) {
				t.Errorf("%s: result data differs from the event", tc.status)
			}
		}
	}
}
