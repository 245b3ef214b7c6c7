package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

// TestDamagedStateIsMovedAside cuts the worker's state.db short, as a full disk or a bad
// copy of the data dir leaves it. The worker used to die at start with SIGBUS and a
// goroutine dump; now it says so in one line, keeps the damaged file beside the new one,
// and runs.
func TestDamagedStateIsMovedAside(t *testing.T) {
	dir := t.TempDir()
	p := startWorkerProc(t, dir)
	p.waitReady(t)
	if ev := p.ping(t); ev.Status != brr.StatusSucceeded {
		t.Fatalf("ping: %+v", ev)
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.exited(t, 60*time.Second); code != 0 {
		t.Fatalf("worker exited %d", code)
	}
	path := filepath.Join(dir, "state.db")
	if err := os.Truncate(path, 4096+100); err != nil {
		t.Fatal(err)
	}

	p = startWorkerProc(t, dir)
	p.waitReady(t)
	if ev := p.ping(t); ev.Status != brr.StatusSucceeded {
		t.Fatalf("ping after the damaged state: %+v", ev)
	}
	aside, _ := filepath.Glob(path + ".damaged-*")
	if len(aside) != 1 {
		t.Fatalf("damaged state kept as %v, want one file", aside)
	}
	if info, err := os.Stat(aside[0]); err != nil || info.Size() != 4096+100 {
		t.Fatalf("kept file: %v, %v", info, err)
	}
	if out := p.out.String(); !strings.Contains(out, "is damaged") || !strings.Contains(out, "moved it aside") {
		t.Fatalf("the worker did not say the state was damaged; output:\n%s", out)
	}
}
