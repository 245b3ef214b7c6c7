package faults_test

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestRestoreDiskFull restores 3.6 MiB into a 2 MiB file system (a tmpfs mounted for the
// test). The restore must fail with an error that says the disk is full and which files it
// could not write, and leave nothing partial: every file at the target is whole, and no
// temporary file is left behind.
//
// Mounting needs root (or CAP_SYS_ADMIN); without it the test skips and says so. The
// restorer writes with pwrite(2) on file descriptors of its own, so a real file system is
// the only honest way to make the disk fill up under it.
func TestRestoreDiskFull(t *testing.T) {
	faultTest(t)
	mnt := mountTmpfs(t, "2m")
	ns := natstest.StartListening(t)
	bins.StartWorker(t, testkit.WorkerOptions{NATS: ns.ClientURL()})
	_, c := testkit.Connect(t, ns.ClientURL())
	ctx := testkit.Context(t, 3*time.Minute)

	src := t.TempDir()
	srcBytes := testkit.WriteTree(t, src, testkit.Tree{Seed: 11, Small: 40, Sizes: []int{1 << 20, 1 << 20, 1 << 20, 512 << 10}})
	pub, err := c.Publish(ctx, brr.BackupJob{Path: src})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Wait(ctx, pub.ID, nil); err != nil {
		t.Fatalf("backup: %v", err)
	}

	target := filepath.Join(mnt, "restore")
	pub, err = c.Publish(ctx, brr.RestoreJob{Snapshot: "latest", Target: target})
	if err != nil {
		t.Fatal(err)
	}
	ev, err := c.Wait(ctx, pub.ID, nil)
	if err == nil {
		t.Fatalf("restore of %d bytes into a 2 MiB file system succeeded: %+v", srcBytes, ev.Result)
	}
	if ev == nil || ev.Status != brr.StatusFailed {
		t.Fatalf("restore into a full disk: %v (%+v), want status failed", err, ev)
	}
	if !strings.Contains(ev.Error, "no space left on device") {
		t.Errorf("the error does not say the disk is full: %s", ev.Error)
	}
	files, size := checkRestored(t, src, target)
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	free := int64(st.Bavail) * st.Bsize

	// The job failed for good: it is in the DLQ with the same reason, not retried.
	dead, err := c.DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 1 || dead[0].JobID != pub.ID || dead[0].Attempts != 1 {
		t.Errorf("dead letters = %+v, want the restore, after one attempt", dead)
	}
	t.Logf("source %.1f MiB; restored whole %d files, %.1f MiB; nothing partial; %d KiB free at the end; error: %s",
		float64(srcBytes)/(1<<20), files, float64(size)/(1<<20), free>>10, ev.Error)
}

// mountTmpfs mounts a tmpfs of size (as mount's size= takes it) on a new directory,
// unmounted when the test ends; it skips the test when mounting is not allowed here.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	return mountTmpfsAt(t, t.TempDir(), size)
}

// mountTmpfsAt is mountTmpfs on dir, which must exist.
func mountTmpfsAt(t *testing.T, dir, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs: run make test-faults as root (CI does) to test a full disk")
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "brr-faults", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs here (a container without CAP_SYS_ADMIN?): %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// checkRestored fails t unless every regular file under got is whole: the same content
// as the file of the same name under want. It returns the files and bytes found; a file
// of want that is missing from got is not an error (a failed restore may leave it out).
func checkRestored(t *testing.T, want, got string) (files int, size int64) {
	t.Helper()
	err := filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(got, p)
		if strings.HasPrefix(d.Name(), ".brr-restore-") {
			return nil // the marker a failed restore leaves so that its retry resumes
		}
		gd, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		wd, err := os.ReadFile(filepath.Join(want, rel))
		if err != nil {
			t.Errorf("%s: in the target but not in the source (a temporary file left behind?): %v", rel, err)
			return nil
		}
		if !bytes.Equal(gd, wd) {
			t.Errorf("%s: partial or wrong content: %d bytes, want %d", rel, len(gd), len(wd))
		}
		files++
		size += int64(len(gd))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, size
}

// TestBackupAfterDiskFull fills the file system of a file:// repository while a backup
// writes into it, then frees space. A failed pack write used to poison the long-lived
// repository: every later backup on the same worker failed with the same error, even a
// 22-byte one with space free again, until the worker restarted. Now the backup that
// hit the full disk fails, and the next ones, on the same worker, succeed and restore.
func TestBackupAfterDiskFull(t *testing.T) {
	faultTest(t)
	mnt := mountTmpfs(t, "4m")
	dataDir := t.TempDir()
	key := filepath.Join(dataDir, "repo.key")
	if err := os.WriteFile(key, []byte("a key for the full disk test"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "repos:\n  local: {url: \"file://" + filepath.Join(mnt, "repo") + "\", key_file: \"" + key + "\"}\n" +
		"jobs: {max_deliver: 1}\n"
	ns := natstest.StartListening(t)
	bins.StartWorker(t, testkit.WorkerOptions{NATS: ns.ClientURL(), DataDir: dataDir, Config: cfg})
	_, c := testkit.Connect(t, ns.ClientURL())
	ctx := testkit.Context(t, 3*time.Minute)

	// Leave about 1 MiB free, then back up 3 MiB of random data: a pack write fails.
	junk := filepath.Join(mnt, "junk")
	var st unix.Statfs_t
	if err := unix.Statfs(mnt, &st); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(junk, make([]byte, int64(st.Bavail)*st.Bsize-(1<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	big := t.TempDir()
	testkit.WriteTree(t, big, testkit.Tree{Seed: 12, Sizes: []int{1 << 20, 1 << 20, 1 << 20}})
	backup := func(src string) (*brr.Event, error) {
		t.Helper()
		pub, err := c.Publish(ctx, brr.BackupJob{Path: src})
		if err != nil {
			t.Fatal(err)
		}
		return c.Wait(ctx, pub.ID, nil)
	}
	if ev, err := backup(big); err == nil || !strings.Contains(ev.Error, "no space left on device") {
		t.Fatalf("backup into a full disk: %+v, %v; want it to fail saying the disk is full", ev, err)
	}

	if err := os.Remove(junk); err != nil {
		t.Fatal(err)
	}
	small := t.TempDir()
	if err := os.WriteFile(filepath.Join(small, "note.txt"), []byte("22 bytes of something\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, src := range []string{small, big} {
		ev, err := backup(src)
		if err != nil {
			t.Fatalf("backup of %s after space was freed, on the same worker: %v", src, err)
		}
		target := filepath.Join(t.TempDir(), "restore")
		pub, err := c.Publish(ctx, brr.RestoreJob{Snapshot: ev.Result.Backup.Snapshot, Target: target})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Wait(ctx, pub.ID, nil); err != nil {
			t.Fatalf("restore of %s: %v", src, err)
		}
		testkit.SameTree(t, src, target)
	}
}
