package jobs_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// realLeases gives e the leases of events.Leases on a real server, renewed every 200 ms,
// and returns their bucket, for the test to delete a key under a running job.
func realLeases(t *testing.T, e *jobs.Engine) jetstream.KeyValue {
	t.Helper()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	ctx := context.Background()
	cfg := events.Config{Worker: "w-1", LeaseTTL: 600 * time.Millisecond}
	if err := events.EnsureStreams(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	leases, err := events.NewLeases(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.Leases = leases
	kv, err := js.KeyValue(ctx, cfg.Subjects.LeasesBucket())
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

// loseLeaseUnder runs job through e.Handle, deletes the lease key once it is there and
// job is (when held is not nil) held in its storage, and returns the job's error, which
// must name the lost lease: a job stopped by a lost lease used to fail with a bare
// "context canceled" (a backup's said more since a fix in each backup kind; prune,
// replicate and key jobs did not), which tells an operator nothing.
func loseLeaseUnder(t *testing.T, e *jobs.Engine, job *brr.Job, key string, held <-chan struct{}) error {
	t.Helper()
	kv := realLeases(t, e)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() {
		_, err := e.Handle(ctx, job, nil)
		done <- err
	}()
	if held != nil {
		select {
		case <-held:
		case err := <-done:
			t.Fatalf("%s job ended before its storage was held: %v", job.Args.Kind(), err)
		}
	}
	testkit.Eventually(t, 10*time.Second, "lease "+key, func() bool { _, err := kv.Get(ctx, key); return err == nil })
	if err := kv.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	var err error
	select {
	case err = <-done:
	case <-time.After(60 * time.Second):
		t.Fatalf("the %s job did not stop when its lease was lost", job.Args.Kind())
	}
	if err == nil || !strings.Contains(err.Error(), "lease on "+key+" lost") || !errors.Is(err, events.ErrLeaseLost) {
		t.Fatalf("%s job under a lost lease: %v; want an error that names lease %s and says it was lost", job.Args.Kind(), err, key)
	}
	if brr.IsPermanent(err) {
		t.Errorf("%s job under a lost lease: %v is permanent; the job should be tried again", job.Args.Kind(), err)
	}
	return err
}

// heldBackend holds every listing of snapshots (or of what hold names), once armed, until
// the caller's context ends, as storage that stopped answering would: it keeps a job busy
// under its lease, for as long as the lease lasts, on any machine.
type heldBackend struct {
	repo.Backend
	hold  repo.FileType // set before the job starts
	armed atomic.Bool
	once  sync.Once
	held  chan struct{} // closed when a call is first held
}

func (b *heldBackend) List(ctx context.Context, t repo.FileType, fn func(repo.FileInfo) error) error {
	if t == b.hold && b.armed.Load() {
		b.once.Do(func() { close(b.held) })
		<-ctx.Done()
		return ctx.Err()
	}
	return b.Backend.List(ctx, t, fn)
}

// initHeld creates a file repository in a new directory, behind a heldBackend.
func initHeld(t *testing.T) (*repo.Repository, *heldBackend) {
	t.Helper()
	fb, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	hb := &heldBackend{Backend: fb, hold: repo.SnapshotFile, held: make(chan struct{})}
	r, err := repo.Init(context.Background(), hb, []byte(testkit.Password), testkit.RepoOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, hb
}

func TestPruneStoppedByALostLeaseSaysSo(t *testing.T) {
	r, hb := initHeld(t)
	e := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r}, Host: "testhost", Worker: "worker-1"}
	hb.armed.Store(true)
	job := &brr.Job{ID: "prune-lost", Args: brr.PruneJob{Repo: "local", Policy: &brr.RetentionPolicy{KeepLast: 1}}}
	loseLeaseUnder(t, e, job, jobs.RepoLeaseKey(r), hb.held)
}

func TestReplicateStoppedByALostLeaseSaysSo(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "f"), []byte("to be copied"), 0o644)
	snap := backup(t, b.engine, "backup-1", src).Snapshot
	off, hb := initHeld(t)
	b.engine.Repos["offsite"] = off
	hb.armed.Store(true)
	job := &brr.Job{ID: "replicate-lost", Args: brr.ReplicateJob{Snapshot: snap, From: "local", To: "offsite"}}
	loseLeaseUnder(t, b.engine, job, jobs.ReplicaLeaseKey(off), hb.held)
}

// A key job's lease (remove and passwd take one): held in its listing of the keys, the
// job must stop when the lease is lost, and remove nothing.
func TestKeyRemoveStoppedByALostLeaseSaysSo(t *testing.T) {
	r, hb := initHeld(t)
	hb.hold = repo.KeyFile
	other, err := r.AddKeyFor(context.Background(), []byte("the password of another key"), repo.KeyMeta{Host: "testhost"})
	if err != nil {
		t.Fatal(err)
	}
	e := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r}, Host: "testhost", Worker: "worker-1"}
	hb.armed.Store(true)
	job := &brr.Job{ID: "key-lost", Args: brr.KeyJob{Action: brr.KeyRemove, Repo: "local", ID: other.ID}}
	loseLeaseUnder(t, e, job, jobs.KeyLeaseKey(r), hb.held)
	hb.armed.Store(false)
	if _, err := r.FindKey(context.Background(), other.ID); err != nil {
		t.Errorf("key %s after its remove job lost its lease: %v; want it still in the repo", other.ID, err)
	}
}

// A backup's source lease, through the same path: the test deletes the key as soon as it
// is there, and a backup of 256 MiB of random data outlasts the next renewal on any
// machine this runs on.
func TestBackupStoppedByALostLeaseSaysSo(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	for i := range 16 {
		data := make([]byte, 16<<20)
		_, _ = rand.Read(data)
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("f%02d", i)), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	job := &brr.Job{ID: "backup-lost", Args: brr.BackupJob{Path: src}}
	loseLeaseUnder(t, b.engine, job, jobs.SourceLeaseKey(b.engine.Host, src), nil)
}
