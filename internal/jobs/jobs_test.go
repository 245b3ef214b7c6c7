package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// bundle is what most tests need: a repository in a temporary directory and an engine
// that uses it as its only repo.
type bundle struct {
	dir    string // the repository's directory
	repo   *repo.Repository
	engine *jobs.Engine
}

func setup(t testing.TB) *bundle {
	t.Helper()
	return setupWith(t, testkit.RepoOptions())
}

func setupWith(t testing.TB, opts repo.Options) *bundle {
	t.Helper()
	dir := t.TempDir()
	r, _ := testkit.InitRepo(t, dir, opts)
	return &bundle{
		dir:  dir,
		repo: r,
		engine: &jobs.Engine{
			Repos:  map[string]*repo.Repository{"local": r},
			Host:   "testhost",
			Worker: "worker-1",
		},
	}
}

func openRepo(t testing.TB, dir string, password []byte) (*repo.Repository, error) {
	t.Helper()
	be, err := file.Open(dir)
	if err != nil {
		t.Fatalf("open backend: %v", err)
	}
	r, err := repo.Open(context.Background(), be, password, testkit.RepoOptions())
	if err == nil {
		t.Cleanup(func() { r.Close() })
	}
	return r, err
}

func backup(t testing.TB, e *jobs.Engine, jobID, src string) *brr.BackupResult {
	t.Helper()
	res, err := e.Backup(context.Background(), jobID, brr.BackupJob{Path: src}, nil)
	if err != nil {
		t.Fatalf("backup %s: %v", src, err)
	}
	return res
}

func restore(t testing.TB, e *jobs.Engine, snapshot, target string) *brr.RestoreResult {
	t.Helper()
	res, err := e.Restore(context.Background(), "restore-"+snapshot[:8], brr.RestoreJob{Snapshot: snapshot, Target: target}, nil)
	if err != nil {
		t.Fatalf("restore %s: %v", snapshot, err)
	}
	return res
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), 1})
	_, _ = r.Read(b)
	return b
}

// entryInfo is what a tree comparison looks at for one path.
type entryInfo struct {
	mode    fs.FileMode
	mtimeNS int64
	uid     uint32
	gid     uint32
	size    int64
	content []byte
	link    string
	ino     uint64
}

// scanTree records every entry below root, by slash path relative to root.
func scanTree(t testing.TB, root string) map[string]entryInfo {
	t.Helper()
	out := make(map[string]entryInfo)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == root {
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entryInfo{mode: fi.Mode(), mtimeNS: fi.ModTime().UnixNano(), uid: st.Uid, gid: st.Gid, ino: st.Ino}
		switch {
		case fi.Mode().IsRegular():
			e.size = fi.Size()
			if e.content, err = os.ReadFile(p); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.link, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.IsDir():
		default:
			return nil // special files are not compared
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatalf("scan %s: %v", root, err)
	}
	return out
}

// pairTrees scans the trees below a (the source) and b (a restore of it), fails the test
// for every path in only one of them, and calls same for every path in both.
func pairTrees(t testing.TB, a, b string, same func(rel string, ea, eb entryInfo)) (ta, tb map[string]entryInfo) {
	t.Helper()
	ta, tb = scanTree(t, a), scanTree(t, b)
	for rel, ea := range ta {
		if eb, ok := tb[rel]; ok {
			same(rel, ea, eb)
		} else {
			t.Errorf("%q: missing from the restore", rel)
		}
	}
	for rel := range tb {
		if _, ok := ta[rel]; !ok {
			t.Errorf("%q: in the restore, not in the source", rel)
		}
	}
	return ta, tb
}

// compareTrees fails the test for every difference between the trees below a and b,
// including which files share an inode.
func compareTrees(t testing.TB, a, b string) {
	t.Helper()
	ta, tb := pairTrees(t, a, b, func(rel string, ea, eb entryInfo) {
		t.Helper()
		if ea.mode != eb.mode {
			t.Errorf("%q: mode %v, want %v", rel, eb.mode, ea.mode)
		}
		if ea.mtimeNS != eb.mtimeNS {
			t.Errorf("%q: mtime %d, want %d", rel, eb.mtimeNS, ea.mtimeNS)
		}
		if ea.uid != eb.uid || ea.gid != eb.gid {
			t.Errorf("%q: owner %d:%d, want %d:%d", rel, eb.uid, eb.gid, ea.uid, ea.gid)
		}
		if ea.size != eb.size || !bytes.Equal(ea.content, eb.content) {
			t.Errorf("%q: content differs (%d bytes, want %d)", rel, eb.size, ea.size)
		}
		if ea.link != eb.link {
			t.Errorf("%q: symlink target %q, want %q", rel, eb.link, ea.link)
		}
	})
	// Files that share an inode in a share one in b, and only those.
	for r1, e1 := range ta {
		for r2, e2 := range ta {
			if r1 >= r2 || !e1.mode.IsRegular() || !e2.mode.IsRegular() {
				continue
			}
			if got, want := tb[r1].ino == tb[r2].ino, e1.ino == e2.ino; got != want {
				t.Errorf("%q and %q: same inode in restore = %v, in source = %v", r1, r2, got, want)
			}
		}
	}
}

// noTempFiles fails the test if a restore left a temporary file below root (not a
// marker, .brr-restore-JOBID, which a failed restore leaves for its retry).
func noTempFiles(t testing.TB, root string) {
	t.Helper()
	temp := regexp.MustCompile(`^\.brr-restore-[0-9a-f]{12}-`)
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && temp.MatchString(d.Name()) {
			t.Errorf("temporary file left behind: %s", p)
		}
		return nil
	})
}

func TestHandleDispatch(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("hello"), 0o644)
	ctx := context.Background()

	// Args by value and by pointer (as DecodeJob gives them) run alike.
	out, err := b.engine.Handle(ctx, &brr.Job{ID: "ping-1", Kind: brr.KindPing, Args: brr.PingJob{DelayMS: 1}}, nil)
	if err != nil || out.Result.Ping == nil || out.Result.Ping.Worker != "worker-1" {
		t.Fatalf("ping: %+v, %v", out, err)
	}
	out, err = b.engine.Handle(ctx, &brr.Job{ID: "backup-1", Kind: brr.KindBackup, Args: &brr.BackupJob{Path: src}}, nil)
	if err != nil || out.Result.Backup == nil || out.Result.Backup.Files != 1 {
		t.Fatalf("backup: %+v, %v", out, err)
	}
	out, err = b.engine.Handle(ctx, &brr.Job{ID: "verify-1", Kind: brr.KindVerify, Args: &brr.VerifyJob{ReadData: true}}, nil)
	if err != nil || out.Result.Verify == nil || !out.Result.Verify.OK() || out.Result.Verify.Snapshots != 1 {
		t.Fatalf("verify: %+v, %v", out, err)
	}
	target := filepath.Join(t.TempDir(), "out")
	out, err = b.engine.Handle(ctx, &brr.Job{ID: "restore-1", Kind: brr.KindRestore, Args: brr.RestoreJob{Snapshot: "latest", Target: target}}, nil)
	if err != nil || out.Result.Restore == nil || out.Result.Restore.Files != 1 {
		t.Fatalf("restore: %+v, %v", out, err)
	}
	compareTrees(t, src, target)

	_, err = b.engine.Handle(ctx, &brr.Job{ID: "backup-2", Kind: brr.KindBackup, Args: &brr.BackupJob{Path: src, Repo: "offsite"}}, nil)
	if !brr.IsPermanent(err) || !strings.Contains(err.Error(), `repo "offsite" is not configured (configured: local)`) {
		t.Fatalf("unknown repo: err = %v, want a permanent error naming the configured repos", err)
	}
	_, err = b.engine.Handle(ctx, &brr.Job{ID: "other-1", Kind: "other", Args: otherArgs{}}, nil)
	if !brr.IsPermanent(err) || !errors.Is(err, brr.ErrUnknownKind) {
		t.Fatalf("unknown kind: err = %v, want a permanent ErrUnknownKind", err)
	}
	ctx2, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := b.engine.Ping(ctx2, brr.PingJob{DelayMS: 60000}); !errors.Is(err, context.Canceled) {
		t.Fatalf("ping with cancelled context: err = %v", err)
	}
	snaps, err := b.engine.Snapshots(ctx, "", src)
	if err != nil || len(snaps) != 1 || snaps[0].Source != src || snaps[0].JobID != "backup-1" || snaps[0].Repo != "local" {
		t.Fatalf("snapshots: %+v, %v", snaps, err)
	}
	if snaps, _ := b.engine.Snapshots(ctx, "", "/elsewhere"); len(snaps) != 0 {
		t.Fatalf("snapshots of another source: %+v, want none", snaps)
	}
}

// otherArgs are the args of a kind no worker runs.
type otherArgs struct{}

func (otherArgs) Kind() brr.Kind   { return "other" }
func (otherArgs) Validate() error  { return nil }
func (otherArgs) Scope() brr.Scope { return brr.Scope{} }

func TestProgressReported(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	for i := range 4 {
		testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("f%d", i)), randomBytes(uint64(i), 16<<20), 0o644)
	}
	var last brr.Progress
	calls := 0
	res, err := b.engine.Backup(context.Background(), "progress-1", brr.BackupJob{Path: src}, func(p brr.Progress) {
		calls++
		last = p
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d progress calls, last %+v, backup took %d ms", calls, last, res.DurationMS)
	if res.DurationMS > 2000 && calls == 0 {
		t.Fatalf("backup ran %d ms and reported no progress", res.DurationMS)
	}
	if calls > 0 && (last.Bytes > 64<<20 || last.TotalFiles > 4) {
		t.Fatalf("progress %+v beyond the tree's size", last)
	}
}

// TestRefusedRepo runs jobs on an engine that refuses its repo "local" (its pool means
// another repository by that name): a job on it, named or by default, is snoozed while
// young, since another worker of the pool may serve it, and fails for good once it is
// RefusedFor old; the repo it does serve works as before.
func TestRefusedRepo(t *testing.T) {
	b := setup(t)
	const why = "repo local refused: this worker's repo local is another repository"
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	e := &jobs.Engine{
		Repos:   map[string]*repo.Repository{"offsite": b.repo},
		Refused: map[string]string{"local": why},
		Worker:  "worker-2",
		Now:     func() time.Time { return now },
	}
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("hello"), 0o644)
	ctx := context.Background()
	job := func(id string, created time.Time, a brr.JobArgs) *brr.Job {
		return &brr.Job{ID: id, Kind: a.Kind(), Pool: "default", Created: created, Args: a}
	}

	for _, a := range []brr.JobArgs{brr.BackupJob{Path: src}, brr.BackupJob{Path: src, Repo: "local"},
		brr.RestoreJob{Snapshot: "latest", Target: t.TempDir()}, brr.VerifyJob{Repo: "local"},
		brr.ReplicateJob{Snapshot: "latest", From: "offsite", To: "local"}} {
		_, err := e.Handle(ctx, job("young", now.Add(-time.Minute), a), nil)
		delay, snoozed := brr.SnoozeDelay(err)
		if !snoozed || brr.IsPermanent(err) || !strings.Contains(err.Error(), why) || delay < time.Second || delay > time.Minute {
			t.Errorf("%s %+v a minute old: err = %v (snooze %v, %s); want a snooze of 1s-1m that says why", a.Kind(), a, err, snoozed, delay)
		}
		_, err = e.Handle(ctx, job("old", now.Add(-jobs.RefusedFor), a), nil)
		if !brr.IsPermanent(err) || !strings.Contains(err.Error(), "no worker of pool default serves repo local with the pool's id") || !strings.Contains(err.Error(), why) {
			t.Errorf("%s %+v an hour old: err = %v; want a permanent error that no worker serves local", a.Kind(), a, err)
		}
	}
	if _, err := e.Handle(ctx, job("undated", time.Time{}, brr.BackupJob{Path: src}), nil); !brr.IsPermanent(err) {
		t.Errorf("job with no creation time: err = %v, want permanent (it cannot tell how long it waited)", err)
	}

	// A query is told why; the repo the worker serves is served.
	if _, err := e.Snapshots(ctx, "", ""); err == nil || !strings.Contains(err.Error(), why) {
		t.Errorf("Snapshots of the default repo: err = %v, want the refusal", err)
	}
	if _, name, err := e.Repo(""); name != "local" || err == nil {
		t.Errorf(`Repo("") = %q, %v; want local, refused: a refused local is still the default`, name, err)
	}
	out, err := e.Handle(ctx, job("served", now, brr.BackupJob{Path: src, Repo: "offsite"}), nil)
	if err != nil || out.Repo != "offsite" {
		t.Fatalf("backup to the repo it serves: %+v, %v", out, err)
	}
	_, err = e.Handle(ctx, job("unknown", now, brr.BackupJob{Path: src, Repo: "cloud"}), nil)
	if !brr.IsPermanent(err) || !strings.Contains(err.Error(), `repo "cloud" is not configured (configured: local, offsite)`) {
		t.Errorf("unknown repo: err = %v", err)
	}
}
