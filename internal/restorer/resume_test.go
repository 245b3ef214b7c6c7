package restorer_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/restorer"
	"github.com/brr-dev/brr/internal/testkit"
	"golang.org/x/sys/unix"
)

// runJob restores sn into target for job, as a job's attempt does, and returns the
// restorer.
func runJob(t *testing.T, r *repo.Repository, sn *repo.Snapshot, target, job string, overwrite bool) *restorer.Restorer {
	t.Helper()
	ctx := context.Background()
	if err := restorer.PrepareTarget(target); err != nil {
		t.Fatal(err)
	}
	pl, err := restorer.NewPlan(ctx, r, sn, nil)
	if err != nil {
		t.Fatal(err)
	}
	rs := restorer.New(r, target, restorer.Options{Workers: 2, Job: job, Overwrite: overwrite})
	if err := rs.Run(ctx, pl); err != nil {
		t.Fatal(err)
	}
	return rs
}

// A restore for a job that failed leaves its marker; the job's next attempt keeps what
// the first one restored (files, symlinks, hard links), removes its temporary files,
// restores the rest and removes the marker. Nothing else is taken for restored: a file
// changed since, or a restore for another job, still fails without overwrite.
func TestRestoreResumesItsJobsEarlierAttempt(t *testing.T) {
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	src := t.TempDir()
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 890, time.UTC)
	for _, name := range []string{"a/one", "a/two", "b/c/three", "top", "blocked"} {
		p := filepath.Join(src, name)
		testkit.WriteFile(t, p, randomBytes(uint64(len(name)), 5000+len(name)), 0o640)
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(src, "a", "one"), filepath.Join(src, "b", "hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../a/two", filepath.Join(src, "b", "link")); err != nil {
		t.Fatal(err)
	}
	sn := snapshotOf(t, r, src)
	target := filepath.Join(t.TempDir(), "out")
	marker := filepath.Join(target, ".brr-restore-job-1")

	// First attempt: a foreign file is in the way of /blocked, the rest is restored.
	testkit.WriteFile(t, filepath.Join(target, "blocked"), []byte("foreign"), 0o644)
	rs := runJob(t, r, sn, target, "job-1", false)
	if f := rs.Failures(); len(f) != 1 || !strings.HasPrefix(f[0], "/blocked: ") {
		t.Fatalf("first attempt: failures %q, want /blocked alone", f)
	}
	if rs.Marker() != ".brr-restore-job-1" {
		t.Fatalf("Marker() = %q", rs.Marker())
	}
	prefixes, err := os.ReadFile(marker)
	if err != nil {
		t.Fatalf("no marker after a failed restore: %v", err)
	}
	// The temporary file a killed attempt would have left, and a foreign file that only
	// looks like one.
	prefix, _, _ := strings.Cut(string(prefixes), "\n") // then the attempt's boot id
	left := filepath.Join(target, "a", ".brr-restore-"+prefix+"zz")
	foreign := filepath.Join(target, "a", ".brr-restore-0123456789ab-1")
	testkit.WriteFile(t, left, []byte("partial"), 0o600)
	testkit.WriteFile(t, foreign, []byte("not ours"), 0o600)

	// A restore for another job takes nothing for restored.
	other := runJob(t, r, sn, target, "job-2", false)
	if got := len(other.Failures()); got != 7 { // every file, symlink and hard link
		t.Errorf("a restore for another job: %d failures %q, want 7", got, other.Failures())
	}
	if err := os.Remove(filepath.Join(target, ".brr-restore-job-2")); err != nil {
		t.Fatal(err)
	}

	// The same job again, once /blocked is out of the way, but with /top changed since.
	if err := os.Remove(filepath.Join(target, "blocked")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(target, "top"), mtime, mtime.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	rs = runJob(t, r, sn, target, "job-1", false)
	if f := rs.Failures(); len(f) != 1 || !strings.HasPrefix(f[0], "/top: ") || !strings.Contains(f[0], "overwrite") {
		t.Fatalf("second attempt: failures %q, want /top alone, changed since the first", f)
	}
	if got, want := rs.Progress().Kept, int64(5); got != want { // a/one, a/two, b/c/three, b/link, b/hard
		t.Errorf("Kept = %d, want %d", got, want)
	}
	if _, err := os.Lstat(left); !os.IsNotExist(err) {
		t.Errorf("the first attempt's temporary file is still there (%v)", err)
	}
	if _, err := os.Lstat(foreign); err != nil {
		t.Errorf("a file that only looks temporary was removed: %v", err)
	}
	if err := os.Remove(foreign); err != nil {
		t.Fatal(err)
	}

	// And with overwrite: everything is the snapshot's, the marker is gone.
	rs = runJob(t, r, sn, target, "job-1", true)
	if f := rs.Failures(); len(f) != 0 {
		t.Fatalf("third attempt: failures %q", f)
	}
	if _, err := os.Lstat(marker); !os.IsNotExist(err) {
		t.Errorf("the marker is still there after the restore succeeded (%v)", err)
	}
	sameAsSource(t, src, target)
	noTempFiles(t, target)
}

// A restore does not sync a file before renaming it to its name, so after a crash of
// the system (not just of the worker) a file the first attempt restored may have its
// name, size, mode and mtime and not its data. An attempt that resumes after the
// machine booted again (the marker holds the boot id of each attempt) writes such files
// again, and relinks their hard links, instead of keeping them.
func TestResumeAfterABootRewritesRestoredFiles(t *testing.T) {
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	src := t.TempDir()
	mtime := time.Date(2021, 3, 4, 5, 6, 7, 890, time.UTC)
	for _, name := range []string{"a/one", "a/two", "blocked"} {
		p := filepath.Join(src, name)
		testkit.WriteFile(t, p, randomBytes(uint64(len(name)), 5000+len(name)), 0o640)
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(src, "a", "one"), filepath.Join(src, "hard")); err != nil {
		t.Fatal(err)
	}
	sn := snapshotOf(t, r, src)
	target := filepath.Join(t.TempDir(), "out")
	marker := filepath.Join(target, ".brr-restore-job-1")

	// First attempt: /blocked is in the way, the rest is restored; the marker stays.
	testkit.WriteFile(t, filepath.Join(target, "blocked"), []byte("foreign"), 0o644)
	if f := runJob(t, r, sn, target, "job-1", false).Failures(); len(f) != 1 {
		t.Fatalf("first attempt: failures %q, want /blocked alone", f)
	}
	// Same boot: the second attempt would keep a/one. Now the system crashes: a/one
	// keeps its metadata, its data never reached the disk. And the machine boots again.
	one := filepath.Join(target, "a", "one")
	if err := os.WriteFile(one, make([]byte, 5000+len("a/one")), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(one, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	m, err := os.ReadFile(marker)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(m)), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[1], "boot ") {
		t.Fatalf("marker %q: want the attempt's prefix and boot id", m)
	}
	lines[1] = "boot 00000000-0000-0000-0000-000000000000"
	if err := os.WriteFile(marker, []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(target, "blocked")); err != nil {
		t.Fatal(err)
	}

	rs := runJob(t, r, sn, target, "job-1", false)
	if f := rs.Failures(); len(f) != 0 {
		t.Fatalf("attempt after the boot: failures %q", f)
	}
	if got := rs.Progress().Kept; got != 0 {
		t.Errorf("Kept = %d after a boot, want 0: files restored before it are written again", got)
	}
	sameAsSource(t, src, target)
	noTempFiles(t, target)
}

// A restore renames its files to their names without syncing each, so it syncs the file
// system before it is done: a restore whose sync fails is not done (an I/O error means
// the files may not be on disk), and keeps its marker, so that its job's next attempt
// checks what it wrote. The marker goes only after a sync that succeeded.
func TestRestoreSyncsBeforeItIsDone(t *testing.T) {
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "a", "one"), randomBytes(1, 5000), 0o640)
	sn := snapshotOf(t, r, src)
	target := filepath.Join(t.TempDir(), "out")
	marker := filepath.Join(target, ".brr-restore-job-1")
	ctx := context.Background()
	if err := restorer.PrepareTarget(target); err != nil {
		t.Fatal(err)
	}
	restore := func() error {
		pl, err := restorer.NewPlan(ctx, r, sn, nil)
		if err != nil {
			t.Fatal(err)
		}
		return restorer.New(r, target, restorer.Options{Workers: 2, Job: "job-1"}).Run(ctx, pl)
	}

	restorer.SetSyncFS(t, func(int) error { return syscall.EIO })
	if err := restore(); err == nil || !strings.Contains(err.Error(), "sync the restored files") {
		t.Fatalf("restore whose sync fails: err %v, want it to say the sync failed", err)
	}
	if _, err := os.Lstat(marker); err != nil {
		t.Fatalf("the marker is gone though the sync failed: %v", err)
	}

	syncs := 0
	restorer.SetSyncFS(t, func(fd int) error {
		syncs++
		if _, err := os.Lstat(marker); err != nil {
			t.Errorf("synced after the marker was removed: %v", err)
		}
		return unix.Syncfs(fd)
	})
	if err := restore(); err != nil {
		t.Fatal(err)
	}
	if syncs != 1 {
		t.Errorf("%d syncs of the target's file system, want 1", syncs)
	}
	if _, err := os.Lstat(marker); !os.IsNotExist(err) {
		t.Errorf("the marker is still there after the restore succeeded (%v)", err)
	}
	sameAsSource(t, src, target)
}
