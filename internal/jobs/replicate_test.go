package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/faulty"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/repo/natsobj"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
)

var (
	_ jobs.BlobMap = (*state.DB)(nil)

	offsitePassword = []byte("another password entirely")
)

// replicaBundle is a source repo "local" (a file repo, read through a counting backend)
// and a target repo "offsite", with an engine that has both and the policy
// local → offsite.
type replicaBundle struct {
	dir     string // local's directory
	local   *repo.Repository
	loads   *faulty.Backend // local's backend: counts what replication reads
	offsite *repo.Repository
	engine  *jobs.Engine
	db      *state.DB
}

// setupReplica makes the bundle with offsite in a JetStream object store on an
// embedded server, created with its own password (so its own keys).
func setupReplica(t *testing.T) *replicaBundle {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.JetStream(t)
	be, err := natsobj.Open(context.Background(), js, "brr-offsite", 1)
	if err != nil {
		t.Fatalf("open object store: %v", err)
	}
	// Small packs: the object store reads an object from its start, so a blob costs the
	// part of its pack before it.
	opts := testkit.RepoOptions()
	opts.PackSize = 256 << 10
	off, err := repo.Init(context.Background(), be, offsitePassword, opts)
	if err != nil {
		t.Fatalf("init offsite: %v", err)
	}
	t.Cleanup(func() { off.Close() })
	return newReplicaBundle(t, off)
}

func newReplicaBundle(t *testing.T, offsite *repo.Repository) *replicaBundle {
	t.Helper()
	b := &replicaBundle{dir: t.TempDir(), offsite: offsite, db: openState(t)}
	b.local, b.loads = openCounted(t, b.dir, true)
	b.engine = b.newEngine(b.local, offsite)
	b.engine.BlobMap = b.db
	return b
}

// openCounted opens (or with create, creates) the file repository in dir through a
// faulty backend.
func openCounted(t *testing.T, dir string, create bool) (*repo.Repository, *faulty.Backend) {
	t.Helper()
	fb, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	be := faulty.New(fb)
	var r *repo.Repository
	if create {
		r, err = repo.Init(context.Background(), be, []byte(testkit.Password), testkit.RepoOptions())
	} else {
		r, err = repo.Open(context.Background(), be, []byte(testkit.Password), testkit.RepoOptions())
	}
	if err != nil {
		t.Fatalf("open repo %s: %v", dir, err)
	}
	t.Cleanup(func() { r.Close() })
	return r, be
}

func (b *replicaBundle) newEngine(local, offsite *repo.Repository) *jobs.Engine {
	return &jobs.Engine{
		Repos:       map[string]*repo.Repository{"local": local, "offsite": offsite},
		ReplicateTo: map[string][]string{"local": {"offsite"}},
		Host:        "testhost",
		Worker:      "worker-1",
	}
}

func replicate(t *testing.T, e *jobs.Engine, jobID string, a brr.ReplicateJob) *brr.ReplicateResult {
	t.Helper()
	res, err := e.Replicate(context.Background(), jobID, a, nil)
	if err != nil {
		t.Fatalf("replicate %+v: %v", a, err)
	}
	return res
}

func restoreFrom(t *testing.T, e *jobs.Engine, repoName, snapshot, target string) *brr.RestoreResult {
	t.Helper()
	res, err := e.Restore(context.Background(), "restore-"+repoName, brr.RestoreJob{Snapshot: snapshot, Target: target, Repo: repoName}, nil)
	if err != nil {
		t.Fatalf("restore %s from %s: %v", snapshot, repoName, err)
	}
	return res
}

func TestReplicateFileToNATSWithOtherKeys(t *testing.T) {
	b := setupReplica(t)
	if b.local.SharesIDKey(b.offsite) {
		t.Fatal("two repositories made by Init share their id key")
	}
	ctx := context.Background()
	src := t.TempDir()
	makeEveryKind(t, src)
	// Smaller: through an object store on an in-process server, under the race
	// detector, every MiB costs.
	for _, name := range []string{"big.bin", "sparse-ish"} {
		if err := os.Truncate(filepath.Join(src, name), 600<<10); err != nil {
			t.Fatal(err)
		}
	}
	first := backup(t, b.engine, "backup-1", src)

	res := replicate(t, b.engine, "repl-1", brr.ReplicateJob{Snapshot: "latest", To: "offsite"})
	if len(res.Snapshots) != 1 || res.Snapshots[0] != first.Snapshot || res.Present != 0 {
		t.Fatalf("replicate copied %v (present %d), want the one snapshot %s", res.Snapshots, res.Present, first.Snapshot)
	}
	if res.From != "local" || res.To != "offsite" {
		t.Errorf("result From, To = %q, %q; want local, offsite", res.From, res.To)
	}
	// The target was empty: every blob the source has was sent, once.
	if got, want := res.BlobsSent, int64(b.local.Stats().Blobs); got != want {
		t.Errorf("BlobsSent = %d, want %d (every blob of the source)", got, want)
	}
	if got, want := int64(b.offsite.Stats().Blobs), res.BlobsSent; got != want {
		t.Errorf("offsite has %d blobs, want the %d sent", got, want)
	}
	if res.BytesSent <= 0 || res.Lag.Behind != 0 || res.Lag.Oldest != nil {
		t.Errorf("BytesSent %d, lag %+v; want bytes and no lag", res.BytesSent, res.Lag)
	}
	if len(res.Copied) != 1 || res.Copied[0].Repo != "offsite" || res.Copied[0].Source != src || res.Copied[0].JobID != "backup-1" {
		t.Errorf("Copied = %+v, want the snapshot as offsite lists it", res.Copied)
	}

	// The copy has the same id, time, host and source, and restores byte for byte.
	id, _ := repo.ParseID(first.Snapshot)
	orig, err := b.local.LoadSnapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := b.offsite.LoadSnapshot(ctx, id)
	if err != nil {
		t.Fatalf("the copy is not in offsite under the same id: %v", err)
	}
	if !cp.Time.Equal(orig.Time) || cp.Host != orig.Host || cp.Source != orig.Source || cp.Files != orig.Files || cp.Tree == orig.Tree {
		t.Errorf("copy %+v differs from %+v (the tree id must differ: other keys)", cp, orig)
	}
	if vr, err := b.engine.Verify(ctx, "verify-offsite", brr.VerifyJob{Repo: "offsite"}, nil); err != nil || !vr.OK() {
		t.Fatalf("verify offsite: %+v, %v", vr, err)
	}
	target := filepath.Join(t.TempDir(), "from-offsite")
	if rr := restoreFrom(t, b.engine, "offsite", first.Snapshot, target); rr.Repo != "offsite" || rr.FellBackFrom != "" {
		t.Errorf("restore result %+v, want it read from offsite, no fallback", rr)
	}
	compareTrees(t, src, target)

	// The same snapshot again: present, nothing sent, nothing read.
	reads := b.loads.Loads(repo.PackFile)
	again := replicate(t, b.engine, "repl-2", brr.ReplicateJob{Snapshot: first.Snapshot[:12], To: "offsite"})
	if again.Present != 1 || len(again.Snapshots) != 0 || again.BlobsSent != 0 {
		t.Errorf("replicating it again: %+v, want it present and nothing sent", again)
	}
	if got := b.loads.Loads(repo.PackFile) - reads; got != 0 {
		t.Errorf("replicating a present snapshot read %d blobs from the source", got)
	}

	// A small change: only what the source's backup added is sent, and only that is read
	// from the source (the blob map knows the rest).
	testkit.WriteFile(t, filepath.Join(src, "dir", "nested", "file"), []byte("nested, changed"), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "added.txt"), []byte("a new file"), 0o644)
	blobs := b.local.Stats().Blobs
	second := backup(t, b.engine, "backup-2", src)
	added := int64(b.local.Stats().Blobs - blobs)
	reads = b.loads.Loads(repo.PackFile)
	res = replicate(t, b.engine, "repl-3", brr.ReplicateJob{Snapshot: "latest", To: "offsite"})
	if got, want := res.BlobsSent, added; got != want || got == 0 {
		t.Errorf("after a small change BlobsSent = %d, want %d (what the backup added, trees included)", got, want)
	}
	if res.BlobsPresent == 0 {
		t.Errorf("BlobsPresent = 0 after a small change, want the unchanged subtrees counted")
	}
	if got, want := int64(b.loads.Loads(repo.PackFile)-reads), res.BlobsSent; got != want {
		t.Errorf("the second replication read %d blobs from the source, want %d (only those sent)", got, want)
	}
	target = filepath.Join(t.TempDir(), "second")
	restoreFrom(t, b.engine, "offsite", second.Snapshot, target)
	compareTrees(t, src, target)

	// "all" copies what offsite lacks, oldest first.
	testkit.WriteFile(t, filepath.Join(src, "third.txt"), []byte("third"), 0o644)
	third := backup(t, b.engine, "backup-3", src)
	other := t.TempDir()
	testkit.WriteFile(t, filepath.Join(other, "x"), []byte("another source"), 0o644)
	fourth := backup(t, b.engine, "backup-4", other)
	res = replicate(t, b.engine, "repl-4", brr.ReplicateJob{Snapshot: "all", To: "offsite", Source: src})
	if len(res.Snapshots) != 1 || res.Snapshots[0] != third.Snapshot || res.Present != 2 {
		t.Errorf("all of %s: copied %v, present %d; want %s, 2 present", src, res.Snapshots, res.Present, third.Snapshot)
	}
	if res.Lag.Behind != 1 {
		t.Errorf("lag after copying all of one source = %+v, want the other source's snapshot behind", res.Lag)
	}
	res = replicate(t, b.engine, "repl-5", brr.ReplicateJob{Snapshot: "all", To: "offsite"})
	if len(res.Snapshots) != 1 || res.Snapshots[0] != fourth.Snapshot || res.Present != 3 || res.Lag.Behind != 0 {
		t.Errorf("all: copied %v, present %d, lag %+v; want %s, 3 present, no lag", res.Snapshots, res.Present, res.Lag, fourth.Snapshot)
	}
}

// cloneKeys makes dir a repository with the keys and config of the file repository in
// from, and no data: the two share their id key.
func cloneKeys(t *testing.T, from, dir string) *repo.Repository {
	t.Helper()
	ctx := context.Background()
	src, err := file.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	handles := []repo.Handle{{Type: repo.ConfigFile, Name: "config"}}
	err = src.List(ctx, repo.KeyFile, func(fi repo.FileInfo) error {
		handles = append(handles, repo.Handle{Type: repo.KeyFile, Name: fi.Name})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range handles {
		data, err := src.Load(ctx, h, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := dst.Save(ctx, h, repo.NewByteReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := repo.Open(ctx, dst, []byte(testkit.Password), testkit.RepoOptions())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func TestReplicateSameKeyCopiesTreesAsTheyAre(t *testing.T) {
	dir := t.TempDir()
	local, loads := openCounted(t, dir, true)
	offsite := cloneKeys(t, dir, t.TempDir())
	if !local.SharesIDKey(offsite) {
		t.Fatal("the clone does not share the id key")
	}
	b := &replicaBundle{dir: dir, local: local, loads: loads, offsite: offsite}
	b.engine = b.newEngine(local, offsite)
	src := t.TempDir()
	makeEveryKind(t, src)
	first := backup(t, b.engine, "same-1", src)

	res := replicate(t, b.engine, "same-repl-1", brr.ReplicateJob{Snapshot: "latest", To: "offsite"})
	if got, want := res.BlobsSent, int64(local.Stats().Blobs); got != want {
		t.Errorf("BlobsSent = %d, want %d", got, want)
	}
	id, _ := repo.ParseID(first.Snapshot)
	orig, _ := local.LoadSnapshot(context.Background(), id)
	cp, err := offsite.LoadSnapshot(context.Background(), id)
	if err != nil || cp.Tree != orig.Tree {
		t.Fatalf("copy %+v, %v: want the same tree id as the source's %s", cp, err, orig.Tree)
	}

	// After a change, only the changed blobs are read: the subtrees offsite has are
	// skipped unread, without a blob map.
	testkit.WriteFile(t, filepath.Join(src, "dir", "nested", "file"), []byte("changed"), 0o644)
	blobs := local.Stats().Blobs
	second := backup(t, b.engine, "same-2", src)
	added := int64(local.Stats().Blobs - blobs)
	reads := loads.Loads(repo.PackFile)
	res = replicate(t, b.engine, "same-repl-2", brr.ReplicateJob{Snapshot: "latest", To: "offsite"})
	if got, want := res.BlobsSent, added; got != want || got == 0 {
		t.Errorf("BlobsSent = %d, want %d (what the backup added, trees included)", got, want)
	}
	if got, want := int64(loads.Loads(repo.PackFile)-reads), res.BlobsSent; got != want {
		t.Errorf("read %d blobs from the source, want %d (only those sent)", got, want)
	}
	target := filepath.Join(t.TempDir(), "restore")
	restoreFrom(t, b.engine, "offsite", second.Snapshot, target)
	compareTrees(t, src, target)
}

// sourceOfDirs writes dirs directories of files files of size random bytes each: every
// file one blob, every directory one tree.
func sourceOfDirs(t *testing.T, dirs, files, size int) string {
	t.Helper()
	src := t.TempDir()
	for d := range dirs {
		for f := range files {
			testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("d%d", d), fmt.Sprintf("f%d", f)), randomBytes(uint64(100*d+f+7), size), 0o644)
		}
	}
	return src
}

// cancelAfterPacks is a backend that calls cancel once it has stored packs of bytes or
// more: a worker killed in the middle of a replication into it. (Its progress reports,
// at most four a second, are too few to stop it at a given blob.)
type cancelAfterPacks struct {
	repo.Backend
	bytes  int64
	cancel func()
	stored atomic.Int64
}

func (b *cancelAfterPacks) Save(ctx context.Context, h repo.Handle, rd repo.RewindReader) error {
	err := b.Backend.Save(ctx, h, rd)
	if err == nil && h.Type == repo.PackFile && b.stored.Add(rd.Length()) >= b.bytes {
		b.cancel()
	}
	return err
}

func TestReplicationKilledMidwayIsTakenUpWithoutSendingAgain(t *testing.T) {
	ctx := context.Background()
	src := sourceOfDirs(t, 6, 4, 200<<10) // 24 data blobs, 7 trees
	const blobs = 24 + 7

	// The target closes a pack every 64 KiB, so the replication checkpoints after every
	// 256 KiB sent, here after each directory.
	offDir := t.TempDir()
	opts := testkit.RepoOptions()
	opts.PackSize = 64 << 10
	offBe, err := file.Open(offDir)
	if err != nil {
		t.Fatal(err)
	}
	// The first worker is stopped in the middle of the third directory, once the target
	// has stored about ten blobs: the first two are durable in the target, the blobs of
	// the third it sent are not.
	killCtx, kill := context.WithCancel(ctx)
	defer kill()
	off1, err := repo.Init(ctx, &cancelAfterPacks{Backend: offBe, bytes: 10 * (200 << 10), cancel: kill}, offsitePassword, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := newReplicaBundle(t, off1)
	snap := backup(t, b.engine, "kill-1", src).Snapshot
	if got := b.local.Stats().Blobs; got != blobs {
		t.Fatalf("the source has %d blobs, want %d", got, blobs)
	}

	var calls, odd atomic.Int64
	res1, err := b.engine.Replicate(killCtx, "kill-repl", brr.ReplicateJob{Snapshot: "latest", To: "offsite"}, func(p brr.Progress) {
		calls.Add(1)
		if p.Phase != "copy "+snap[:8] || p.TotalFiles != 24 || p.TotalBytes != 24*(200<<10) || p.Files > p.TotalFiles {
			odd.Add(1)
		}
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("replication stopped midway: err = %v, want context.Canceled", err)
	}
	if odd.Load() > 0 {
		t.Errorf("%d of %d progress reports do not describe the copy of snapshot %s (24 files)", odd.Load(), calls.Load(), snap[:8])
	}
	if res1 == nil || res1.BlobsSent == 0 || res1.BlobsSent >= blobs {
		t.Fatalf("the stopped replication sent %+v, want some but not all of the %d blobs durable", res1, blobs)
	}
	off1.Close()

	// Another worker, with its own view of the target and no blob map, takes it up.
	off2, err := repo.Open(ctx, offBe, offsitePassword, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { off2.Close() })
	e2 := b.newEngine(b.local, off2)
	res2 := replicate(t, e2, "kill-repl", brr.ReplicateJob{Snapshot: "latest", To: "offsite"})
	t.Logf("first run sent %d blobs (%d progress calls), second %d with %d present", res1.BlobsSent, calls.Load(), res2.BlobsSent, res2.BlobsPresent)
	if got := res1.BlobsSent + res2.BlobsSent; got != blobs {
		t.Errorf("the two runs sent %d blobs in all, want %d: each blob once", got, blobs)
	}
	if got, want := res2.BlobsPresent, res1.BlobsSent; got != want {
		t.Errorf("the second run found %d blobs present, want the %d the first made durable", got, want)
	}
	if len(res2.Snapshots) != 1 || res2.Snapshots[0] != snap {
		t.Errorf("the second run copied %v, want %s", res2.Snapshots, snap)
	}

	off3, err := repo.Open(ctx, offBe, offsitePassword, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { off3.Close() })
	if got := off3.Stats().Blobs; got != blobs {
		t.Errorf("the target indexes %d blobs, want %d", got, blobs)
	}
	e3 := b.newEngine(b.local, off3)
	if vr, err := e3.Verify(ctx, "verify-kill", brr.VerifyJob{Repo: "offsite", ReadData: true}, nil); err != nil || !vr.OK() {
		t.Fatalf("verify the target: %+v, %v", vr, err)
	}
	target := filepath.Join(t.TempDir(), "restore")
	restoreFrom(t, e3, "offsite", snap, target)
	compareTrees(t, src, target)
}

func TestReplicationLagPerTarget(t *testing.T) {
	b := setupReplica(t)
	base := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	var snaps []string
	for i := range 3 {
		b.engine.Now = func() time.Time { return base.Add(time.Duration(i) * time.Hour) }
		src := t.TempDir()
		testkit.WriteFile(t, filepath.Join(src, "f"), []byte(fmt.Sprintf("version %d", i)), 0o644)
		snaps = append(snaps, backup(t, b.engine, fmt.Sprintf("lag-%d", i), src).Snapshot)
	}
	now := base.Add(10 * time.Hour)
	b.engine.Now = func() time.Time { return now }

	res := replicate(t, b.engine, "lag-repl-1", brr.ReplicateJob{Snapshot: snaps[0], To: "offsite"})
	want := base.Add(time.Hour)
	if res.Lag.Behind != 2 || res.Lag.Oldest == nil || !res.Lag.Oldest.Equal(want) || res.Lag.AgeSeconds != 9*3600 || !res.Lag.Measured.Equal(now) {
		t.Fatalf("lag after copying the oldest of 3 = %+v, want 2 behind, oldest %v, 9h old", res.Lag, want)
	}
	cursors, err := b.db.ReplicationCursors()
	if err != nil {
		t.Fatal(err)
	}
	if len(cursors) != 1 || cursors[0].From != "local" || cursors[0].To != "offsite" || cursors[0].Lag.Behind != 2 {
		t.Fatalf("cursors = %+v, want local → offsite 2 behind", cursors)
	}

	res = replicate(t, b.engine, "lag-repl-2", brr.ReplicateJob{Snapshot: "all", To: "offsite"})
	if res.Lag.Behind != 0 || res.Lag.Oldest != nil || res.Lag.AgeSeconds != 0 {
		t.Errorf("lag after all = %+v, want none", res.Lag)
	}
	if len(res.Snapshots) != 2 || res.Snapshots[0] != snaps[1] || res.Snapshots[1] != snaps[2] || res.Present != 1 {
		t.Errorf("all copied %v (present %d), want %v oldest first, 1 present", res.Snapshots, res.Present, snaps[1:])
	}
	cursors, _ = b.db.ReplicationCursors()
	if len(cursors) != 1 || cursors[0].Lag.Behind != 0 || len(cursors[0].Copied) != 2 || !cursors[0].LastRun.Equal(now) {
		t.Errorf("cursor after all = %+v, want no lag and 2 copied", cursors)
	}
}

func TestReplicateRefusals(t *testing.T) {
	b := setupReplica(t)
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "f"), []byte("x"), 0o644)
	backup(t, b.engine, "ref-1", src)
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		a    brr.ReplicateJob
		want string
	}{
		{"to itself", brr.ReplicateJob{Snapshot: "latest", From: "local", To: "local"}, "to itself"},
		{"default to itself", brr.ReplicateJob{Snapshot: "latest", To: "local"}, "replicate to another repository"},
		{"unknown target", brr.ReplicateJob{Snapshot: "latest", To: "cold"}, `repo "cold" is not configured`},
		{"no such snapshot", brr.ReplicateJob{Snapshot: "abcdef12", To: "offsite"}, "brr snapshots --repo local"},
		{"no snapshot of source", brr.ReplicateJob{Snapshot: "latest", Source: "/nowhere", To: "offsite"}, `of "/nowhere"`},
	} {
		_, err := b.engine.Replicate(ctx, "ref-"+tt.name, tt.a, nil)
		if !brr.IsPermanent(err) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want a permanent error with %q", tt.name, err, tt.want)
		}
	}
	// "all" of a source with no snapshot copies nothing and is not an error.
	res := replicate(t, b.engine, "ref-all", brr.ReplicateJob{Snapshot: "all", Source: "/nowhere", To: "offsite"})
	if len(res.Snapshots) != 0 || res.Lag.Behind != 1 {
		t.Errorf("all of a source with no snapshots: %+v", res)
	}

	// One replication into a repo at a time: another waits for the lease.
	l := newKVLeaser(t)
	b.engine.Leases = l
	key := jobs.ReplicaLeaseKey(b.offsite)
	if _, err := l.kv.Create(ctx, key, []byte("other-worker")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.engine.Replicate(ctx, "ref-lease", brr.ReplicateJob{Snapshot: "latest", To: "offsite"}, nil); err == nil {
		t.Fatal("replicate with the target's lease held elsewhere succeeded")
	} else if _, ok := brr.SnoozeDelay(err); !ok {
		t.Fatalf("replicate with the target's lease held elsewhere: err = %v, want a snooze", err)
	}
	if err := l.kv.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if res := replicate(t, b.engine, "ref-lease", brr.ReplicateJob{Snapshot: "latest", To: "offsite"}); len(res.Snapshots) != 1 {
		t.Errorf("replicate once the lease is free copied %v, want the snapshot", res.Snapshots)
	}
	if _, err := l.kv.Get(ctx, key); !errors.Is(err, jetstream.ErrKeyNotFound) && !errors.Is(err, jetstream.ErrKeyDeleted) {
		t.Errorf("lease %s after the replication: err = %v, want released", key, err)
	}

	// Damaged data in the source is not copied, and reading it again will not mend it.
	testkit.WriteFile(t, filepath.Join(src, "g"), []byte("new"), 0o644)
	backup(t, b.engine, "ref-2", src)
	b.loads.CorruptLoad(repo.PackFile, 0)
	_, err := b.engine.Replicate(ctx, "ref-damaged", brr.ReplicateJob{Snapshot: "latest", To: "offsite"}, nil)
	if !brr.IsPermanent(err) || !errors.Is(err, repo.ErrDamaged) || !strings.Contains(err.Error(), "brr verify --read-data") {
		t.Errorf("replicate from a damaged source: err = %v, want a permanent error about the damage", err)
	}
}

// TestReplicateSnapshotAnotherWorkerWrote: a worker replicates a snapshot that another
// worker backed up into the shared source after this one loaded its index. (It read the
// source with the index it had, and failed every attempt with "blob not in index".)
func TestReplicateSnapshotAnotherWorkerWrote(t *testing.T) {
	b := setupReplica(t)
	stale, _ := openCounted(t, b.dir, false) // the other worker's view, loaded before the backup
	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 11, Sizes: []int{300 << 10, 5 << 10, 0}})
	snap := backup(t, b.engine, "backup-elsewhere", src)

	other := b.newEngine(stale, b.offsite)
	res := replicate(t, other, "repl-elsewhere", brr.ReplicateJob{Snapshot: "latest", To: "offsite"})
	if len(res.Snapshots) != 1 || res.Snapshots[0] != snap.Snapshot {
		t.Fatalf("replicate copied %v, want %s", res.Snapshots, snap.Snapshot)
	}
	target := filepath.Join(t.TempDir(), "out")
	restoreFrom(t, b.engine, "offsite", snap.Snapshot, target)
	testkit.SameTree(t, src, target)
}
