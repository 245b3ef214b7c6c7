package jobs_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// The crash test re-executes this test binary as a child that backs up into a repository
// until it is killed; these variables switch the child on.
const (
	crashRepoEnv   = "BRR_JOBS_TEST_CRASH_REPO"
	crashSourceEnv = "BRR_JOBS_TEST_CRASH_SOURCE"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(crashRepoEnv); dir != "" {
		os.Exit(crashChild(dir, os.Getenv(crashSourceEnv)))
	}
	os.Exit(m.Run())
}

// crashChild backs up source into the repository at dir. It is meant to be killed.
func crashChild(dir, source string) int {
	ctx := context.Background()
	be, err := file.Open(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	r, err := repo.Open(ctx, be, []byte(testkit.Password), testkit.RepoOptions())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	e := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r}, Host: "child"}
	if _, err := e.Backup(ctx, "doomed", brr.BackupJob{Path: source}, nil); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	return 0
}

func TestKilledBackupLeavesRepositoryClean(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and backs up 200 MiB")
	}
	dir := t.TempDir()
	created, _ := testkit.InitRepo(t, dir, testkit.RepoOptions())
	created.Close() // the child opens it
	src := t.TempDir()
	for i := range 25 {
		testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("d%d", i%4), fmt.Sprintf("f%02d", i)), randomBytes(uint64(500+i), 8<<20), 0o644)
	}
	for i := range 300 {
		testkit.WriteFile(t, filepath.Join(src, "small", fmt.Sprintf("s%03d", i)), randomBytes(uint64(1000+i), 4<<10), 0o644)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), crashRepoEnv+"="+dir, crashSourceEnv+"="+src)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// Kill it once packs are being written, so that it dies in the middle of the work.
	deadline := time.Now().Add(60 * time.Second)
	for packs(t, dir) < 2 {
		select {
		case err := <-exited:
			t.Fatalf("the child exited before it was killed: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cmd.Process.Kill()
			t.Fatal("the child wrote no pack in 60 s")
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	t.Logf("killed the child after %d packs", packs(t, dir))

	r, err := openRepo(t, dir, []byte(testkit.Password))
	if err != nil {
		t.Fatalf("open after the kill: %v", err)
	}
	ctx := context.Background()
	rep := testkit.CheckClean(t, r)
	if rep.Snapshots != 0 {
		t.Fatalf("%d snapshots after a killed first backup, want 0", rep.Snapshots)
	}

	e := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r}, Host: "parent"}
	res, err := e.Backup(ctx, "after-kill", brr.BackupJob{Path: src}, nil)
	if err != nil {
		t.Fatalf("backup after the kill: %v", err)
	}
	if res.Files != 325 {
		t.Errorf("backup after the kill has %d files, want 325", res.Files)
	}
	vr, err := e.Verify(ctx, "verify-after-kill", brr.VerifyJob{ReadData: true}, nil)
	if err != nil || !vr.OK() || vr.Snapshots != 1 {
		t.Fatalf("verify after the new backup: %+v, %v", vr, err)
	}
}

func packs(t *testing.T, dir string) int {
	n := 0
	_ = filepath.WalkDir(filepath.Join(dir, "data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() && len(d.Name()) == 64 {
			n++
		}
		return nil
	})
	return n
}
