package events_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
)

// pipeline is a worker's consume loop, outbox and API with the real engine, as
// cmd/worker wires them: an embedded server, bbolt, file repositories.
type pipeline struct {
	nc     *nats.Conn
	client *brr.Client
	engine *jobs.Engine
	cfg    events.Config
}

// startPipeline starts a pipeline with a file repository per name in repos, the first
// the default, and the replication policy replicateTo.
func startPipeline(t *testing.T, repos []string, replicateTo map[string][]string) *pipeline {
	t.Helper()
	ns := natstest.Start(t)
	nc, js := ns.JetStream(t)
	ctx := context.Background()

	cfg := events.Config{Worker: "w1", Host: "testhost", DrainTimeout: 5 * time.Second}
	if err := events.EnsureStreams(ctx, js, cfg); err != nil {
		t.Fatalf("ensure streams: %v", err)
	}
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if err != nil {
		t.Fatalf("open state: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })
	engine := &jobs.Engine{Repos: map[string]*repo.Repository{}, DefaultRepo: repos[0], Cache: db, BlobMap: db,
		ReplicateTo: replicateTo, Host: "testhost", Worker: "w1"}
	for _, name := range repos {
		engine.Repos[name], _ = testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	}
	log := zerolog.Nop()
	outbox := events.NewOutbox(js, db, log)
	testkit.Go(t, "outbox", outbox.Run)
	testkit.Go(t, "consumer", events.NewConsumer(js, db, engine, outbox, cfg, log).Run)
	testkit.Go(t, "api", func(ctx context.Context) error { return events.ServeAPI(ctx, nc, cfg, engine, log) })
	c, err := brr.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	return &pipeline{nc: nc, client: c, engine: engine, cfg: cfg}
}

// watch collects the events on brr.events.<typ>.<status> ("*" for any; job events of
// every kind) from now on.
func (p *pipeline) watch(t *testing.T, typ brr.EventType, status brr.Status) chan *brr.Event {
	t.Helper()
	ch := make(chan *brr.Event, 256)
	sub, err := p.nc.Subscribe(p.cfg.Subjects.Event(&brr.Event{Type: typ, Kind: "*", Status: status}), func(m *nats.Msg) {
		if e, err := brr.DecodeEvent(m.Data); err == nil {
			ch <- e
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := p.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return ch
}

// wait waits for job id to end and fails unless it succeeded.
func (p *pipeline) wait(t *testing.T, id string) *brr.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	e, err := p.client.Wait(ctx, id, nil)
	if err != nil {
		t.Fatalf("job %s: %v", id, err)
	}
	return e
}

// next returns the next event from ch, or fails after a while.
func next(t *testing.T, ch chan *brr.Event, what string) *brr.Event {
	t.Helper()
	select {
	case e := <-ch:
		return e
	case <-time.After(15 * time.Second):
		t.Fatalf("no %s event", what)
		return nil
	}
}

// backupSource writes a small source tree and returns its path.
func backupSource(t *testing.T) string {
	t.Helper()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	return src
}

// TestSnapshotCommittedTellsTheRepositorysTime runs a backup through the consume loop and
// the engine and checks that the snapshot.committed event describes the snapshot as
// `brr snapshots` lists it. The event once took the time the job started, the repository
// the time the snapshot committed.
func TestSnapshotCommittedTellsTheRepositorysTime(t *testing.T) {
	p := startPipeline(t, []string{"local"}, nil)
	committed := p.watch(t, brr.EventSnapshot, brr.StatusCommitted)
	src := backupSource(t)
	ctx := context.Background()
	pub, err := p.client.Publish(ctx, brr.BackupJob{Path: src, Tags: []string{"nightly"}}, brr.WithID("nightly-1"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	p.wait(t, pub.ID)
	e := next(t, committed, "snapshot.committed")
	listed, err := p.client.Snapshots(ctx, "local", src)
	if err != nil || len(listed) != 1 {
		t.Fatalf("Snapshots = %+v, %v; want the one snapshot", listed, err)
	}
	got, want := e.SnapshotInfo, listed[0]
	if got == nil || got.ID != want.ID || e.Snapshot != want.ID || e.JobID != "nightly-1" {
		t.Fatalf("snapshot.committed %+v (info %+v), want snapshot %s of job nightly-1", e, got, want.ID)
	}
	if !got.Time.Equal(want.Time) {
		t.Errorf("snapshot.committed says snapshot_info.time %v; brr snapshots lists %v", got.Time, want.Time)
	}
	if got.Host != want.Host || got.Source != want.Source || got.Parent != want.Parent || got.JobID != want.JobID ||
		len(got.Tags) != 1 || got.Files != want.Files || got.Bytes != want.Bytes || got.BytesAdded != want.BytesAdded {
		t.Errorf("snapshot_info = %+v, want %+v", *got, want)
	}
}

// TestReplicationPolicyThroughTheConsumer: with the policy local → offsite → local, a
// backup into local sets off a replicate job to offsite, whose copy sets off one back to
// local, which finds the snapshot there, copies nothing and sets off nothing: the cycle
// ends.
func TestReplicationPolicyThroughTheConsumer(t *testing.T) {
	p := startPipeline(t, []string{"local", "offsite"}, map[string][]string{"local": {"offsite"}, "offsite": {"local"}})
	jobEvents := p.watch(t, brr.EventJob, "*")
	replication := p.watch(t, brr.EventReplication, "*")
	committed := p.watch(t, brr.EventSnapshot, brr.StatusCommitted)
	src := backupSource(t)
	pub, err := p.client.Publish(context.Background(), brr.BackupJob{Path: src}, brr.WithID("nightly-1"))
	if err != nil {
		t.Fatalf("publish: %v", err)
	}
	snap := p.wait(t, pub.ID).Result.Backup.Snapshot
	toOffsite, back := "repl-"+snap[:16]+"-offsite", "repl-"+snap[:16]+"-local"
	p.wait(t, toOffsite)
	p.wait(t, back)

	// Replication events of the job to offsite: started (at once), completed; the copy's
	// snapshot.committed. Of the job back: started and completed, no copy.
	byJob := map[string][]string{}
	for len(byJob[toOffsite]) < 2 || len(byJob[back]) < 2 {
		e := next(t, replication, "replication")
		byJob[e.JobID] = append(byJob[e.JobID], string(e.Status))
		if e.Status == brr.StatusStarted && (e.Attempt != 1 || e.Worker != "w1" || e.Kind != brr.KindReplicate || e.Replication == nil) {
			t.Errorf("replication.started = %+v", e)
		}
		if e.JobID == toOffsite && e.Status == brr.StatusCompleted && (e.Repo != "offsite" || e.Snapshot != snap || e.Replication.BlobsSent == 0) {
			t.Errorf("replication.completed to offsite = %+v (replication %+v)", e, e.Replication)
		}
	}
	for _, id := range []string{toOffsite, back} {
		if got := byJob[id]; got[0] != "started" || got[len(got)-1] != "completed" {
			t.Errorf("replication events of %s: %v, want started … completed", id, got)
		}
	}
	for _, want := range []string{"nightly-1", toOffsite} {
		e := next(t, committed, "snapshot.committed")
		if e.JobID != want || e.Snapshot != snap {
			t.Errorf("snapshot.committed %+v, want one of snapshot %s by job %s", e, snap, want)
		}
	}

	// Nothing more: the cycle ended with three jobs.
	time.Sleep(300 * time.Millisecond)
	ended := map[string]bool{}
	for len(jobEvents) > 0 {
		if e := <-jobEvents; e.Status.Final() {
			ended[e.JobID] = true
		}
	}
	if len(ended) != 3 || !ended["nightly-1"] || !ended[toOffsite] || !ended[back] {
		t.Errorf("jobs ended: %v, want the backup and the two replicate jobs", ended)
	}
	select {
	case e := <-committed:
		t.Errorf("another snapshot.committed: %+v", e)
	default:
	}
}
