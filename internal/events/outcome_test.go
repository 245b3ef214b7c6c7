package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/brr-dev/brr"
)

// typed returns the events of job id with type typ and status.
func (l *eventLog) typed(id string, typ brr.EventType, status brr.Status) []*brr.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*brr.Event
	for _, e := range l.evs {
		if e.JobID == id && e.Type == typ && e.Status == status {
			out = append(out, e)
		}
	}
	return out
}

// waitTyped waits for the first event of job id with type typ and status.
func (l *eventLog) waitTyped(t testing.TB, id string, typ brr.EventType, status brr.Status) *brr.Event {
	t.Helper()
	var e *brr.Event
	testkit.Eventually(t, 15*time.Second, fmt.Sprintf("%s.%s event of job %s", typ, status, id), func() bool {
		if evs := l.typed(id, typ, status); len(evs) > 0 {
			e = evs[0]
		}
		return e != nil
	})
	return e
}

const testSnap = "3f9a0c1d5e7b9f2a4c6e8a0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f"

// checkStamped fails unless e carries what the consume loop stamps on the events a job
// of kind causes: the version, an id, the time, this worker, the job and the attempt.
func checkStamped(t *testing.T, e *brr.Event, jobID string, kind brr.Kind, attempt int) {
	t.Helper()
	if e.V != brr.Version || e.ID == "" || e.Time.IsZero() || e.Worker != "w1" || e.Host != "testhost" ||
		e.JobID != jobID || e.Kind != kind || e.Pool != brr.DefaultPool || e.Attempt != attempt {
		t.Errorf("%s.%s event %+v: want it stamped with job %s (%s), worker w1 on testhost, attempt %d", e.Type, e.Status, e, jobID, kind, attempt)
	}
}

func TestOutcomeIsRecordedAndPublished(t *testing.T) {
	b := setup(t, Config{})
	seen := make(chan *brr.Job, 4)
	b.h.outcome = func(ctx context.Context, job *brr.Job, attempt int, rep brr.Reporter) (*brr.Outcome, error) {
		seen <- job
		if job.Kind != brr.KindBackup {
			return &brr.Outcome{Result: &brr.Result{Ping: &brr.PingResult{}}}, nil
		}
		follow := brr.NewJob(&brr.PingJob{})
		follow.ID, follow.By = "follow-1", "test"
		bad := brr.NewJob(&brr.PingJob{DelayMS: -1})
		bad.ID = "follow-bad"
		return &brr.Outcome{
			Result: &brr.Result{Backup: &brr.BackupResult{Snapshot: testSnap, Repo: "local", Source: "/srv/app"}},
			Repo:   "local", Source: "/srv/app", Snapshot: testSnap,
			Events: []*brr.Event{{Type: brr.EventSnapshot, Status: brr.StatusCommitted, Repo: "local", Source: "/srv/app", Snapshot: testSnap,
				SnapshotInfo: &brr.Snapshot{ID: testSnap, Repo: "local", Host: "h", JobID: job.ID, Files: 3}}},
			Jobs: []*brr.Job{follow, bad},
		}, nil
	}
	b.start(t, b.db)
	job := brr.NewJob(&brr.BackupJob{Path: "/srv/app", Tags: []string{"nightly"}})
	job.ID = "backup-1"
	publishJob(t, b.js, job)

	done := b.ev.wait(t, "backup-1", brr.StatusSucceeded)
	if done.Repo != "local" || done.Source != "/srv/app" || done.Snapshot != testSnap || done.Result == nil || done.Result.Backup == nil {
		t.Errorf("succeeded event = %+v, want the outcome's repo, source and snapshot, and its result", done)
	}
	e := b.ev.waitTyped(t, "backup-1", brr.EventSnapshot, brr.StatusCommitted)
	checkStamped(t, e, "backup-1", brr.KindBackup, 1)
	if e.Repo != "local" || e.Snapshot != testSnap || e.SnapshotInfo == nil || e.SnapshotInfo.Files != 3 || e.SnapshotInfo.Host != "h" {
		t.Errorf("snapshot event = %+v (info %+v), want the handler's", e, e.SnapshotInfo)
	}
	rec, err := b.db.Job("backup-1")
	if err != nil {
		t.Fatalf("Job: %v", err)
	}
	if rec.Snapshot != testSnap || rec.Repo != "local" || rec.Source != "/srv/app" {
		t.Errorf("record snapshot %q repo %q source %q, want the outcome's", rec.Snapshot, rec.Repo, rec.Source)
	}

	// The follow-up job is published under its id and runs; the invalid one is left out.
	b.ev.wait(t, "follow-1", brr.StatusSucceeded)
	waitJobsEmpty(t, b.js)
	var ran []string
	for len(seen) > 0 {
		j := <-seen
		ran = append(ran, j.ID)
		if j.ID == "follow-1" && (j.By != "test" || j.Pool != brr.DefaultPool) {
			t.Errorf("follow-up job ran as %+v", j)
		}
	}
	if strings.Join(ran, " ") != "backup-1 follow-1" {
		t.Errorf("jobs run: %v, want the backup and its valid follow-up job", ran)
	}
}

func TestAnnouncedAndProgressArePublishedAtOnce(t *testing.T) {
	b := setup(t, Config{})
	release := make(chan struct{})
	b.h.outcome = func(ctx context.Context, job *brr.Job, attempt int, rep brr.Reporter) (*brr.Outcome, error) {
		rep.Announce(&brr.Event{Type: brr.EventReplication, Status: brr.StatusStarted, Repo: "offsite",
			Replication: &brr.ReplicationInfo{From: "local", To: "offsite"}})
		for i := range 5 {
			rep.Progress(brr.Progress{Phase: "copy", Files: int64(i)})
		}
		<-release
		return &brr.Outcome{Result: &brr.Result{Replicate: &brr.ReplicateResult{To: "offsite"}}}, nil
	}
	b.start(t, b.db)
	job := brr.NewJob(&brr.ReplicateJob{Snapshot: "latest", To: "offsite"})
	job.ID = "repl-1"
	publishJob(t, b.js, job)

	// While the job still runs.
	e := b.ev.waitTyped(t, "repl-1", brr.EventReplication, brr.StatusStarted)
	checkStamped(t, e, "repl-1", brr.KindReplicate, 1)
	if e.Repo != "offsite" || e.Replication == nil || e.Replication.To != "offsite" {
		t.Errorf("announced event = %+v", e)
	}
	testkit.Eventually(t, 15*time.Second, "five progress events", func() bool { return len(b.ev.typed("repl-1", brr.EventJob, brr.StatusProgress)) == 5 })
	for i, p := range b.ev.typed("repl-1", brr.EventJob, brr.StatusProgress) {
		if p.Progress == nil || p.Progress.Files != int64(i) || p.Attempt != 1 || p.Repo != "offsite" {
			t.Errorf("progress event %d = %+v, want files %d", i, p, i)
		}
	}
	close(release)
	b.ev.wait(t, "repl-1", brr.StatusSucceeded)
}

func TestOutcomeOfAnAttemptRetriedIsNotPublished(t *testing.T) {
	// A job that will be retried publishes none of its outcome's events and jobs for that
	// attempt: its retrying event says so. The attempt that ends it publishes its own.
	b := setup(t, Config{})
	b.h.outcome = func(ctx context.Context, job *brr.Job, attempt int, rep brr.Reporter) (*brr.Outcome, error) {
		if job.Kind != brr.KindReplicate {
			return &brr.Outcome{Result: &brr.Result{Ping: &brr.PingResult{}}}, nil
		}
		if attempt == 1 {
			follow := brr.NewJob(&brr.PingJob{})
			follow.ID = "follow-of-a-retry"
			return &brr.Outcome{
				Result: &brr.Result{Replicate: &brr.ReplicateResult{To: "offsite", BlobsSent: 1}},
				Events: []*brr.Event{{Type: brr.EventReplication, Status: brr.StatusFailed, Repo: "offsite", Error: "target busy"}},
				Jobs:   []*brr.Job{follow},
			}, errors.New("target busy")
		}
		return &brr.Outcome{
			Result: &brr.Result{Replicate: &brr.ReplicateResult{To: "offsite"}},
			Events: []*brr.Event{{Type: brr.EventReplication, Status: brr.StatusCompleted, Repo: "offsite"}},
		}, nil
	}
	b.start(t, b.db)
	job := brr.NewJob(&brr.ReplicateJob{Snapshot: "latest", To: "offsite"})
	job.ID = "repl-retried"
	publishJob(t, b.js, job)

	b.ev.wait(t, "repl-retried", brr.StatusSucceeded)
	retrying := b.ev.wait(t, "repl-retried", brr.StatusRetrying)
	if retrying.Error != "target busy" || retrying.Attempt != 1 {
		t.Errorf("retrying event = %+v", retrying)
	}
	completed := b.ev.waitTyped(t, "repl-retried", brr.EventReplication, brr.StatusCompleted)
	checkStamped(t, completed, "repl-retried", brr.KindReplicate, 2)
	waitJobsEmpty(t, b.js)
	if evs := b.ev.typed("repl-retried", brr.EventReplication, brr.StatusFailed); len(evs) != 0 {
		t.Errorf("the retried attempt published %+v", evs)
	}
	if n := b.h.count("follow-of-a-retry"); n != 0 {
		t.Errorf("the retried attempt's follow-up job ran %d times", n)
	}
}

func TestOutcomeOfAFailedJobIsPublishedWithItsEnd(t *testing.T) {
	b := setup(t, Config{MaxDeliver: 2})
	b.h.outcome = func(ctx context.Context, job *brr.Job, attempt int, rep brr.Reporter) (*brr.Outcome, error) {
		err := errors.New("repo offsite is full")
		if job.ID == "repl-fails" {
			err = brr.Permanent(err)
		}
		ev := &brr.Event{Type: brr.EventReplication, Status: brr.StatusFailed, Repo: "offsite", Error: err.Error(),
			Replication: &brr.ReplicationInfo{From: "local", To: "offsite", BlobsSent: 2}}
		return &brr.Outcome{Result: &brr.Result{Replicate: &brr.ReplicateResult{From: "local", To: "offsite", BlobsSent: 2}},
			Events: []*brr.Event{ev}}, err
	}
	b.start(t, b.db)
	for _, id := range []string{"repl-fails", "repl-dies"} {
		job := brr.NewJob(&brr.ReplicateJob{Snapshot: "latest", To: "offsite"})
		job.ID = id
		publishJob(t, b.js, job)
	}

	// Failed: permanent at once, with the dead letter.
	e := b.ev.waitTyped(t, "repl-fails", brr.EventReplication, brr.StatusFailed)
	checkStamped(t, e, "repl-fails", brr.KindReplicate, 1)
	if !strings.Contains(e.Error, "repo offsite is full") || e.Replication == nil || e.Replication.BlobsSent != 2 {
		t.Errorf("replication.failed = %+v (replication %+v), want the handler's", e, e.Replication)
	}
	failed := b.ev.wait(t, "repl-fails", brr.StatusFailed)
	if failed.Result == nil || failed.Result.Replicate == nil || failed.Result.Replicate.BlobsSent != 2 || failed.Repo != "offsite" {
		t.Errorf("failed event = %+v, want the outcome's result and the job's scope", failed)
	}
	// Dead: out of attempts, with the last attempt's outcome only.
	b.ev.wait(t, "repl-dies", brr.StatusDead)
	e = b.ev.waitTyped(t, "repl-dies", brr.EventReplication, brr.StatusFailed)
	checkStamped(t, e, "repl-dies", brr.KindReplicate, 2)
	deadLetters(t, b.js, 2)
	time.Sleep(100 * time.Millisecond)
	if evs := b.ev.typed("repl-dies", brr.EventReplication, brr.StatusFailed); len(evs) != 1 {
		t.Errorf("%d replication.failed events of a job that died, want the last attempt's", len(evs))
	}
}
