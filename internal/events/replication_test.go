package events

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

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
	eventually(t, fmt.Sprintf("%s.%s event of job %s", typ, status, id), func() bool {
		if evs := l.typed(id, typ, status); len(evs) > 0 {
			e = evs[0]
		}
		return e != nil
	})
	return e
}

const testSnap = "3f9a0c1d5e7b9f2a4c6e8a0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f"

// replicaHandler answers a backup with testSnap committed in local, and a replicate job
// with testSnap copied into its target, unless the target is local, which has it.
func replicaHandler(jobs chan<- *brr.Job) func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
	return func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		jobs <- job
		switch a := job.Args.(type) {
		case *brr.BackupJob:
			return &brr.Result{Backup: &brr.BackupResult{Snapshot: testSnap, Repo: "local", Source: a.Path}}, nil
		case *brr.ReplicateJob:
			progress(brr.Progress{Phase: "copy 3f9a0c1d", Files: 1, TotalFiles: 2})
			r := &brr.ReplicateResult{From: a.From, To: a.To, Snapshots: []string{}, Lag: brr.ReplicationLag{Measured: time.Now().UTC()}}
			if a.To == "local" {
				r.Present = 1
			} else {
				r.Snapshots = []string{testSnap}
				r.Copied = []brr.Snapshot{{ID: testSnap, Repo: a.To, Source: "/srv/app", Files: 7}}
				r.BlobsSent, r.BytesSent = 12, 4096
			}
			return &brr.Result{Replicate: r}, nil
		}
		return nil, brr.Permanent(fmt.Errorf("unexpected %s job", job.Kind))
	}
}

func TestReplicationPolicyAndEvents(t *testing.T) {
	// A cycle: local → offsite → local. The copy back finds the snapshot there and
	// commits nothing, which ends it.
	b := setup(t, Config{Replicate: map[string][]string{"local": {"offsite"}, "offsite": {"local"}}})
	jobs := make(chan *brr.Job, 10)
	b.h.fn = replicaHandler(jobs)
	b.start(t, b.db)

	backup := brr.NewJob(&brr.BackupJob{Path: "/srv/app"})
	backup.ID = "nightly-1"
	publishJob(t, b.js, backup)
	b.ev.wait(t, "nightly-1", brr.StatusSucceeded)

	toOffsite := "repl-" + testSnap[:16] + "-offsite"
	back := "repl-" + testSnap[:16] + "-local"
	got := map[string]*brr.Job{}
	for len(got) < 3 {
		select {
		case j := <-jobs:
			got[j.ID] = j
		case <-time.After(15 * time.Second):
			t.Fatalf("jobs run: %v; want the backup and two replicate jobs", got)
		}
	}
	j := got[toOffsite]
	if j == nil {
		t.Fatalf("no job %s among %v", toOffsite, got)
	}
	if a, ok := j.Args.(*brr.ReplicateJob); !ok || a.Snapshot != testSnap || a.From != "local" || a.To != "offsite" || j.By != policyBy || j.Pool != brr.DefaultPool {
		t.Errorf("policy job = %+v (args %+v), want snapshot %s local → offsite by %s", j, j.Args, testSnap, policyBy)
	}
	if a, ok := got[back].Args.(*brr.ReplicateJob); !ok || a.From != "offsite" || a.To != "local" {
		t.Errorf("job %s = %+v, want offsite → local", back, got[back])
	}

	started := b.ev.waitTyped(t, toOffsite, brr.EventReplication, brr.StatusStarted)
	if r := started.Replication; r == nil || r.From != "local" || r.To != "offsite" || started.Repo != "offsite" || started.Snapshot != testSnap {
		t.Errorf("replication.started = %+v (replication %+v)", started, started.Replication)
	}
	progress := b.ev.waitTyped(t, toOffsite, brr.EventReplication, brr.StatusProgress)
	if progress.Progress == nil || progress.Progress.Files != 1 {
		t.Errorf("replication.progress = %+v, want the handler's progress", progress)
	}
	done := b.ev.waitTyped(t, toOffsite, brr.EventReplication, brr.StatusCompleted)
	if r := done.Replication; r == nil || r.BlobsSent != 12 || r.BytesSent != 4096 || r.Lag == nil || len(r.Snapshots) != 1 || done.Repo != "offsite" {
		t.Errorf("replication.completed = %+v (replication %+v)", done, done.Replication)
	}
	committed := b.ev.waitTyped(t, toOffsite, brr.EventSnapshot, brr.StatusCommitted)
	if committed.Repo != "offsite" || committed.Snapshot != testSnap || committed.SnapshotInfo == nil || committed.SnapshotInfo.Files != 7 {
		t.Errorf("snapshot.committed of the copy = %+v", committed)
	}
	b.ev.waitTyped(t, back, brr.EventReplication, brr.StatusCompleted)
	if evs := b.ev.typed(back, brr.EventSnapshot, brr.StatusCommitted); len(evs) != 0 {
		t.Errorf("the copy back committed nothing, yet announced %d snapshots", len(evs))
	}

	// Nothing more: the cycle ended. The jobs stream is empty and no fourth job ran.
	waitJobsEmpty(t, b.js)
	select {
	case j := <-jobs:
		t.Errorf("a fourth job ran: %+v", j)
	case <-time.After(300 * time.Millisecond):
	}
}

func TestReplicationFailedEvent(t *testing.T) {
	b := setup(t, Config{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		a := job.Args.(*brr.ReplicateJob)
		return &brr.Result{Replicate: &brr.ReplicateResult{From: "local", To: a.To, Snapshots: []string{}, BlobsSent: 2}},
			brr.Permanent(errors.New("repo offsite is full"))
	}
	b.start(t, b.db)
	job := brr.NewJob(&brr.ReplicateJob{Snapshot: "latest", To: "offsite"})
	job.ID = "repl-fails"
	publishJob(t, b.js, job)

	e := b.ev.waitTyped(t, "repl-fails", brr.EventReplication, brr.StatusFailed)
	if !strings.Contains(e.Error, "repo offsite is full") || e.Repo != "offsite" || e.Snapshot != "" {
		t.Errorf("replication.failed = %+v, want the error, repo offsite and no snapshot for \"latest\"", e)
	}
	if r := e.Replication; r == nil || r.From != "local" || r.To != "offsite" || r.BlobsSent != 2 || r.Lag != nil {
		t.Errorf("replication.failed info = %+v, want what the job sent and no lag", e.Replication)
	}
	b.ev.wait(t, "repl-fails", brr.StatusFailed)
	if evs := b.ev.typed("repl-fails", brr.EventReplication, brr.StatusCompleted); len(evs) != 0 {
		t.Errorf("a failed replication announced completed: %+v", evs)
	}
}

func TestNoPolicyNoJobs(t *testing.T) {
	// A backup into a repo without a policy, and a ping, set off nothing.
	c := &Consumer{cfg: Config{Replicate: map[string][]string{"local": {"offsite"}}}.withDefaults()}
	d := &delivery{job: &brr.Job{ID: "b", Kind: brr.KindBackup, Pool: "default", Args: &brr.BackupJob{Path: "/x"}}}
	if out := c.policyJobs(d, &brr.Result{Backup: &brr.BackupResult{Snapshot: testSnap, Repo: "offsite"}}); len(out) != 0 {
		t.Errorf("backup into offsite: %d policy jobs, want none", len(out))
	}
	if out := c.policyJobs(d, &brr.Result{Ping: &brr.PingResult{}}); len(out) != 0 {
		t.Errorf("ping: %d policy jobs, want none", len(out))
	}
	out := c.policyJobs(d, &brr.Result{Backup: &brr.BackupResult{Snapshot: testSnap, Repo: "local"}})
	if len(out) != 1 || out[0].Subject != "brr.jobs.default.replicate" || out[0].MsgID != "repl-3f9a0c1d5e7b9f2a-offsite" {
		t.Fatalf("backup into local: %+v, want one replicate job to offsite", out)
	}
	job, err := brr.DecodeJob(out[0].Data)
	if err != nil || job.ID != out[0].MsgID {
		t.Errorf("the policy job does not decode as the job %s: %+v, %v", out[0].MsgID, job, err)
	}
}
