package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

// TestConfiguredRepos runs a worker with a file:// and a nats:// repo from a config file,
// the nats one keyed by an environment variable, and backs up into each.
func TestConfiguredRepos(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "main.key")
	if err := os.WriteFile(keyFile, []byte("  main-repo-key  \n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := writeConfig(t, fmt.Sprintf(`
repos:
  main:    {url: "file://%s", key_file: %s}
  offsite: {url: "nats://brr-offsite", password_env: TEST_OFFSITE_PASSWORD}
default_repo: main
replicate: {main: [offsite]}
`, filepath.Join(dir, "main-repo"), keyFile))

	// Without the password variable the worker refuses to start and says which one.
	dataDir := t.TempDir()
	natsAddr, httpAddr := freeAddr(t), freeAddr(t)
	args := []string{"--config", cfgFile, "--data-dir", dataDir, "--listen", natsAddr, "--http", httpAddr, "--log-format", "json"}
	p := startProc(t, args)
	if code := p.exited(t, 60*time.Second); code == 0 {
		t.Fatalf("worker without TEST_OFFSITE_PASSWORD exited 0")
	}
	if !strings.Contains(p.out.String(), "TEST_OFFSITE_PASSWORD is empty") {
		t.Fatalf("worker without its repo password does not name the variable:\n%s", p.out.String())
	}

	p = startProc(t, args, "TEST_OFFSITE_PASSWORD=offsite-secret")
	p.dataDir, p.natsAddr, p.httpAddr = dataDir, natsAddr, httpAddr
	p.waitReady(t)
	if _, err := os.Stat(filepath.Join(dataDir, "local.key")); err == nil {
		t.Fatalf("local.key created although repos are configured")
	}
	if strings.Contains(p.out.String(), "offsite-secret") || strings.Contains(p.out.String(), "main-repo-key") {
		t.Fatalf("a repository key appears in the log:\n%s", p.out.String())
	}

	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "a.txt"), []byte("hello brr"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := p.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, repoName := range []string{"", "offsite"} {
		res, err := c.Publish(ctx, brr.BackupJob{Path: src, Repo: repoName})
		if err != nil {
			t.Fatalf("publish backup: %v", err)
		}
		ev, err := c.Wait(ctx, res.ID, nil)
		if err != nil {
			t.Fatalf("backup into %q: %v", repoName, err)
		}
		want := repoName
		if want == "" {
			want = "main" // default_repo
		}
		if ev.Result == nil || ev.Result.Backup == nil || ev.Result.Backup.Snapshot == "" || ev.Result.Backup.Repo != want {
			t.Fatalf("backup into %q: result %+v, want a snapshot in repo %s", repoName, ev.Result, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "main-repo", "config")); err != nil {
		t.Fatalf("file repo not created at its URL: %v", err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exited(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}
