package events

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
)

func TestRecoveryEvents(t *testing.T) {
	c := &Consumer{cfg: Config{Subjects: brr.Subjects{Prefix: "brr"}, Worker: "w1", Host: "h1"}}
	job := func(args brr.JobArgs) *delivery {
		return &delivery{job: &brr.Job{V: brr.Version, ID: "job-1", Kind: args.Kind(), Pool: "default", Args: args}}
	}
	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	point := brr.RecoveryPoint{Repo: "local", Label: "release-1", Snapshot: "aaaa", Source: "/srv/app", Time: t0}
	drillOK := &brr.DrillResult{Repo: "local", Snapshot: "bbbb", Source: "/srv/app", Passed: true, Files: 3}
	drillBad := &brr.DrillResult{Repo: "local", Snapshot: "bbbb", Source: "/srv/app", Problems: []string{"/x: missing"}, ProblemCount: 1}
	cause := brr.Permanent(errors.New("restore drill found 1 problem"))
	prune := &brr.PruneResult{Repo: "local", Removed: []string{"cccc"}, Kept: 1, Decisions: []brr.SnapshotDecision{
		{ID: "dddd", Time: t0, Host: "h1", Source: "/srv/app", Keep: true, Reasons: []string{"last 1/1"}},
		{ID: "cccc", Time: t0.Add(-time.Hour), Host: "h1", Source: "/srv/app", Tags: []string{"nightly"}},
	}}
	dryPrune := *prune
	dryPrune.DryRun = true

	type want struct {
		subject  string
		snapshot string
		error    bool
	}
	for _, tc := range []struct {
		name   string
		d      *delivery
		status brr.Status
		res    *brr.Result
		cause  error
		want   []want
	}{
		{"checkpoint created", job(&brr.CheckpointJob{Label: "release-1", Snapshot: "latest"}), brr.StatusSucceeded,
			&brr.Result{Checkpoint: &brr.CheckpointResult{Point: point}}, nil,
			[]want{{"brr.events.recovery.point_created", "aaaa", false}}},
		{"checkpoint removed", job(&brr.CheckpointJob{Label: "release-1", Remove: true}), brr.StatusSucceeded,
			&brr.Result{Checkpoint: &brr.CheckpointResult{Point: point, Removed: true}}, nil,
			[]want{{"brr.events.recovery.point_removed", "aaaa", false}}},
		{"checkpoint failed", job(&brr.CheckpointJob{Label: "release-1", Snapshot: "latest"}), brr.StatusFailed, nil, cause, nil},
		{"drill passed", job(&brr.DrillJob{Snapshot: "latest"}), brr.StatusSucceeded,
			&brr.Result{Drill: drillOK}, nil,
			[]want{{"brr.events.recovery.drill_passed", "bbbb", false}}},
		{"drill failed", job(&brr.DrillJob{Snapshot: "latest"}), brr.StatusFailed,
			&brr.Result{Drill: drillBad}, cause,
			[]want{{"brr.events.recovery.drill_failed", "bbbb", true}}},
		{"verify with a drill", job(&brr.VerifyJob{Drill: true}), brr.StatusSucceeded,
			&brr.Result{Verify: &brr.VerifyResult{Repo: "local", Drill: drillOK}}, nil,
			[]want{{"brr.events.recovery.drill_passed", "bbbb", false}}},
		{"verify with a failed drill", job(&brr.VerifyJob{Drill: true}), brr.StatusFailed,
			&brr.Result{Verify: &brr.VerifyResult{Repo: "local", Drill: drillBad}}, cause,
			[]want{{"brr.events.recovery.drill_failed", "bbbb", true}}},
		{"verify without a drill", job(&brr.VerifyJob{}), brr.StatusSucceeded,
			&brr.Result{Verify: &brr.VerifyResult{Repo: "local"}}, nil, nil},
		{"restore", job(&brr.RestoreJob{Snapshot: "latest", Source: "/srv/app", Target: "/tmp/r"}), brr.StatusSucceeded,
			&brr.Result{Restore: &brr.RestoreResult{Repo: "local", Snapshot: "eeee", Target: "/tmp/r"}}, nil,
			[]want{{"brr.events.recovery.restored", "eeee", false}}},
		{"restore failed", job(&brr.RestoreJob{Snapshot: "latest", Target: "/tmp/r"}), brr.StatusFailed,
			&brr.Result{Restore: &brr.RestoreResult{Repo: "local", Snapshot: "eeee"}}, cause, nil},
		{"prune", job(&brr.PruneJob{}), brr.StatusSucceeded, &brr.Result{Prune: prune}, nil,
			[]want{{"brr.events.snapshot.removed", "cccc", false}}},
		{"prune dry run", job(&brr.PruneJob{DryRun: true}), brr.StatusSucceeded, &brr.Result{Prune: &dryPrune}, nil, nil},
		{"backup", job(&brr.BackupJob{Path: "/srv/app"}), brr.StatusSucceeded, &brr.Result{Backup: &brr.BackupResult{Snapshot: "ffff"}}, nil, nil},
		{"no job", &delivery{}, brr.StatusFailed, &brr.Result{Drill: drillBad}, cause, nil},
	} {
		evs := c.recoveryEvents(tc.d, tc.status, tc.res, tc.cause)
		if len(evs) != len(tc.want) {
			t.Errorf("%s: %d events, want %d", tc.name, len(evs), len(tc.want))
			continue
		}
		for i, e := range evs {
			w := tc.want[i]
			if got := c.cfg.Subjects.Event(e); got != w.subject {
				t.Errorf("%s: subject %q, want %q", tc.name, got, w.subject)
			}
			if e.Snapshot != w.snapshot || e.Repo != "local" || e.JobID != "job-1" || e.Pool != "default" || e.Kind != tc.d.job.Kind || e.Worker != "w1" || e.ID == "" {
				t.Errorf("%s: event %+v", tc.name, e)
			}
			if got := e.Error != ""; got != w.error {
				t.Errorf("%s: error %q, want set = %v", tc.name, e.Error, w.error)
			}
			// Each event round-trips through the outbox.
			msgs := c.cfg.outboxMsgs(e)
			d, err := brr.DecodeEvent(msgs[0].Data)
			if err != nil || d.ID != e.ID || d.Status != e.Status {
				t.Errorf("%s: decoded %+v, %v", tc.name, d, err)
			}
		}
	}

	// What each event carries for a subscriber to act on without asking.
	e := c.recoveryEvents(job(&brr.CheckpointJob{Label: "release-1", Snapshot: "latest"}), brr.StatusSucceeded,
		&brr.Result{Checkpoint: &brr.CheckpointResult{Point: point}}, nil)[0]
	if e.Source != "/srv/app" || e.Result.Checkpoint.Point.Label != "release-1" {
		t.Errorf("point_created event %+v", e)
	}
	e = c.recoveryEvents(job(&brr.VerifyJob{Drill: true}), brr.StatusFailed, &brr.Result{Verify: &brr.VerifyResult{Repo: "local", Drill: drillBad}}, cause)[0]
	if e.Result.Drill == nil || e.Result.Drill.ProblemCount != 1 || !strings.Contains(e.Error, "1 problem") {
		t.Errorf("drill_failed event %+v", e)
	}
	e = c.recoveryEvents(job(&brr.PruneJob{}), brr.StatusSucceeded, &brr.Result{Prune: prune}, nil)[0]
	if si := e.SnapshotInfo; si == nil || si.ID != "cccc" || !si.Time.Equal(t0.Add(-time.Hour)) || si.Source != "/srv/app" || len(si.Tags) != 1 || si.Repo != "local" {
		t.Errorf("snapshot.removed info %+v", e.SnapshotInfo)
	}
}

// pointsFixture answers both queries.
type pointsFixture struct {
	*fixtureQueries
	unread map[string]string
}

func (q pointsFixture) Checkpoints(ctx context.Context, repo string) ([]brr.RecoveryPoint, map[string]string, error) {
	if repo == "nosuch" {
		return nil, nil, errors.New(`repo "nosuch" is not configured (configured: local)`)
	}
	return []brr.RecoveryPoint{{Repo: "local", Label: "release-1", Snapshot: "s1"}}, q.unread, nil
}

func TestAPICheckpoints(t *testing.T) {
	t.Parallel()
	s := natstest.Start(t)
	cfg := Config{Pools: []string{"default"}}
	serveAPI(t, s, cfg, pointsFixture{newFixture(), map[string]string{"offsite": "bucket gone"}})
	nc := s.Connect(t)
	subject := cfg.Subjects.API("default", "checkpoints")

	ask := func(data string) brr.CheckpointsReply {
		t.Helper()
		request(t, nc, cfg.Subjects.API("default", "snapshots"), []byte(`{"v":1,"repo":"local"}`)) // wait for the service
		m, err := nc.Request(subject, []byte(data), 5*time.Second)
		if err != nil {
			t.Fatalf("request %s: %v", subject, err)
		}
		var reply brr.CheckpointsReply
		if err := json.Unmarshal(m.Data, &reply); err != nil || reply.V != brr.Version {
			t.Fatalf("reply %s: %v", m.Data, err)
		}
		return reply
	}
	reply := ask(`{"v":1}`)
	if reply.Error != "" || len(reply.Points) != 1 || reply.Points[0].Label != "release-1" || reply.Unread["offsite"] != "bucket gone" {
		t.Fatalf("checkpoints reply %+v", reply)
	}
	if reply := ask(`{"v":1,"repo":"nosuch"}`); !strings.Contains(reply.Error, "not configured") {
		t.Fatalf("checkpoints of an unknown repo: %+v", reply)
	}
	if reply := ask(`{"v":2}`); !strings.Contains(reply.Error, "version 2") {
		t.Fatalf("checkpoints request of version 2: %+v", reply)
	}
	if reply := ask(`not json`); !strings.Contains(reply.Error, "not valid JSON") {
		t.Fatalf("checkpoints request that is not JSON: %+v", reply)
	}

	// Queries without PointQueries do not serve checkpoints.
	s2 := natstest.Start(t)
	serveAPI(t, s2, cfg, newFixture())
	nc2 := s2.Connect(t)
	request(t, nc2, cfg.Subjects.API("default", "snapshots"), []byte(`{"v":1,"repo":"local"}`))
	if _, err := nc2.Request(subject, []byte(`{"v":1}`), 5*time.Second); err == nil {
		t.Fatal("checkpoints answered by a service whose queries do not list points")
	}
}
