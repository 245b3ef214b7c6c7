package brr

import "testing"

func TestSubjects(t *testing.T) {
	var s Subjects
	tests := []struct{ got, want string }{
		{s.Job("default", KindBackup), "brr.jobs.default.backup"},
		{s.Jobs("p1"), "brr.jobs.p1.>"},
		{s.Schedule("nightly"), "brr.schedules.nightly"},
		{s.DLQ("default", KindRestore), "brr.dlq.default.restore"},
		{s.Event(&Event{Type: EventJob, Kind: KindBackup, Status: StatusSucceeded}), "brr.events.job.backup.succeeded"},
		{s.Event(&Event{Type: EventSnapshot, Status: StatusCommitted}), "brr.events.snapshot.committed"},
		{s.Events(""), "brr.events.>"},
		{s.Events(EventHealth), "brr.events.health.>"},
		{s.API("default", "snapshots"), "brr.api.default.snapshots"},
		{s.JobsStream(), "BRR_JOBS"},
		{s.EventsStream(), "BRR_EVENTS"},
		{s.DLQStream(), "BRR_DLQ"},
		{s.LeasesBucket(), "BRR_LEASES"},
		{s.ResultsBucket(), "BRR_RESULTS"},
		{s.ReposBucket(), "BRR_REPOS"},
		{s.RepoKey("default", "local"), "default.local"},
		{Subjects{Prefix: "acme.x"}.ReposBucket(), "ACME_X_REPOS"},
		{Subjects{Prefix: "acme"}.JobsStream(), "ACME_JOBS"},
		{Subjects{Prefix: "acme"}.Job("x", KindPing), "acme.jobs.x.ping"},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestParseJob(t *testing.T) {
	var s Subjects
	tests := []struct {
		subject string
		pool    string
		kind    Kind
		ok      bool
	}{
		{"brr.jobs.default.backup", "default", KindBackup, true},
		{"brr.jobs.p.frobnicate", "p", "frobnicate", true},
		{"brr.jobs.default", "", "", false},
		{"brr.jobs.a.b.c", "", "", false},
		{"brr.events.job.backup.started", "", "", false},
		{"other.jobs.default.backup", "", "", false},
	}
	for _, tt := range tests {
		pool, kind, ok := s.ParseJob(tt.subject)
		if pool != tt.pool || kind != tt.kind || ok != tt.ok {
			t.Errorf("ParseJob(%q) = %q, %q, %v; want %q, %q, %v", tt.subject, pool, kind, ok, tt.pool, tt.kind, tt.ok)
		}
	}
}
