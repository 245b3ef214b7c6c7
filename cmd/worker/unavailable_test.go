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
	"github.com/brr-dev/brr/internal/testkit"
)

// TestUnopenableRepoIsRefused: a repo of the config whose key file is missing used to stop
// the whole worker at start. Now the worker serves its other repos and refuses that one,
// saying why (in the log and /readyz), and a job on it is put off with that reason, for a
// worker of the pool that serves it. The default repo still stops start-up: most jobs
// name no repo.
func TestUnopenableRepoIsRefused(t *testing.T) {
	dir := t.TempDir()
	localKey := filepath.Join(dir, "local.key")
	if err := os.WriteFile(localKey, []byte(strings.Repeat("cd", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "offsite.key")
	cfg := writeConfig(t, fmt.Sprintf(`
repos:
  local:   {url: "file://%s/local", key_file: %q}
  offsite: {url: "file://%s/offsite", key_file: %q}
`, dir, localKey, dir, missing))
	p := startWorkerProc(t, "", "--config", cfg)
	p.waitReady(t)

	if _, body, err := get("http://" + p.httpAddr + "/readyz"); err != nil || !strings.Contains(body, "offsite") || !strings.Contains(body, missing) {
		t.Errorf("/readyz = %q, %v; want it to name the refused repo offsite and its missing key file", body, err)
	}
	if out := p.out.String(); !strings.Contains(out, "repo offsite is in this worker's config but this worker cannot open it") || !strings.Contains(out, missing) {
		t.Errorf("log does not say why repo offsite is not served:\n%s", out)
	}

	// The other repo is served.
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "f"), []byte("served"), 0o644)
	c := p.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := c.Publish(ctx, brr.BackupJob{Path: src, Repo: "local"})
	if err != nil {
		t.Fatal(err)
	}
	if ev, err := c.Wait(ctx, res.ID, nil); err != nil || ev.Status != brr.StatusSucceeded {
		t.Fatalf("backup to the served repo: %+v, %v", ev, err)
	}

	// A job on the refused repo is put off, and says why.
	res, err = c.Publish(ctx, brr.VerifyJob{Repo: "offsite"})
	if err != nil {
		t.Fatal(err)
	}
	var last *brr.Event
	if !testkit.WaitFor(60*time.Second, func() bool {
		last, err = c.Job(ctx, res.ID)
		return err == nil && last != nil && last.Status == brr.StatusRetrying
	}) {
		t.Fatalf("verify of the refused repo: %+v, %v; want it put off (retrying)", last, err)
	}
	if !strings.Contains(last.Error, "offsite") || !strings.Contains(last.Error, missing) {
		t.Errorf("verify of the refused repo put off with %q; want the repo and its missing key file named", last.Error)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exited(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}

	// The default repo does not open: start-up stops, naming it.
	cfg = writeConfig(t, fmt.Sprintf(`
repos:
  local:   {url: "file://%s/local", key_file: %q}
  offsite: {url: "file://%s/offsite", key_file: %q}
default_repo: offsite
`, dir, localKey, dir, missing))
	w := startWorkerProc(t, "", "--config", cfg)
	if code := w.exited(t, 60*time.Second); code == 0 {
		t.Fatalf("worker whose default repo does not open exited 0")
	}
	if out := w.out.String(); !strings.Contains(out, "repo offsite") || !strings.Contains(out, missing) {
		t.Fatalf("output does not name the default repo and its missing key file:\n%s", out)
	}
}
