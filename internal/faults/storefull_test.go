package faults_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestJetStreamStoreFull fills the file system under the JetStream store of a worker's
// embedded nats-server (data_dir/jetstream, a small tmpfs here), then frees it.
// nats-server then drops publishes to a stream it cannot write without an answer: a job
// used to fail with only "nats: timeout", /readyz said ready, and the stream kept its
// write error until the worker restarted, even with space free again. Now the publish's
// error says that the store is full, where, and what to do; /readyz says so with 503
// and the pool's health has a critical disk result for the store; the worker stays up;
// and once space is free the worker starts JetStream again by itself and jobs flow.
func TestJetStreamStoreFull(t *testing.T) {
	faultTest(t)
	dataDir := t.TempDir()
	store := filepath.Join(dataDir, "jetstream")
	if err := os.Mkdir(store, 0o700); err != nil {
		t.Fatal(err)
	}
	mountTmpfsAt(t, store, "32m")
	w := bins.StartWorker(t, testkit.WorkerOptions{DataDir: dataDir, Config: "health: {interval: 1s}\n"})
	_, c := testkit.Connect(t, w.NATSURL)
	ctx := testkit.Context(t, 4*time.Minute)

	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 21, Small: 10})
	backup := func(ctx context.Context) (brr.PublishResult, error) {
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		defer cancel()
		return c.Publish(pctx, brr.BackupJob{Path: src})
	}
	wait := func(id string) {
		t.Helper()
		if _, err := c.Wait(ctx, id, nil); err != nil {
			t.Fatalf("backup %s: %v", id, err)
		}
	}
	pub, err := backup(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wait(pub.ID)

	// Fill the store's file system to the last byte.
	junk := filepath.Join(store, "junk")
	fillUp(t, junk)

	// A publish to a stream whose write failed is not answered. The first jobs may still
	// be taken: the server writes behind its ack, and the last page of a block file has
	// room for a few. Keep publishing (pings: cheap to run later) until one fails.
	var accepted []string
	var pubErr error
	for range 100 {
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		pub, err := c.Publish(pctx, brr.PingJob{})
		cancel()
		if err != nil {
			pubErr = err
			break
		}
		accepted = append(accepted, pub.ID)
	}
	if pubErr == nil {
		t.Fatalf("%d jobs published into a full JetStream store, none failed", len(accepted))
	}
	for _, want := range []string{"no space left on device", store, "free space"} {
		if !strings.Contains(pubErr.Error(), want) {
			t.Errorf("the error of a publish into a full store does not say %q: %v", want, pubErr)
		}
	}

	var ready readyz
	testkit.Eventually(t, time.Minute, "/readyz to say that the store is full", func() bool {
		code := getJSON(t, w.HTTP, "/readyz", &ready)
		return code == http.StatusServiceUnavailable && strings.Contains(ready.Reason, "no space left on device") && strings.Contains(ready.Reason, store)
	})
	if ready.Health != string(brr.HealthCritical) {
		t.Errorf("/readyz health = %q while the store is full, want critical", ready.Health)
	}
	var rep brr.HealthReport
	if code := getJSON(t, w.HTTP, "/api/v1/health", &rep); code != http.StatusOK {
		t.Fatalf("GET /api/v1/health: %d", code)
	}
	if res, ok := storeResult(rep); !ok || res.Status != brr.HealthCritical || !strings.Contains(res.Message, store) {
		t.Errorf("the pool's health has no critical disk result for the store (%v): %+v", ok, rep.Checks)
	}
	if code := getJSON(t, w.HTTP, "/healthz", nil); code != http.StatusOK {
		t.Errorf("/healthz = %d with the store full: the worker went down", code)
	}

	// Space back: the worker starts JetStream again, and jobs flow without a restart.
	pid := w.PID()
	if err := os.Remove(junk); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 2*time.Minute, "/readyz to be ready again once space is free", func() bool {
		return getJSON(t, w.HTTP, "/readyz", &ready) == http.StatusOK
	})
	pub, err = backup(ctx)
	if err != nil {
		t.Fatalf("publish once space is free again: %v", err)
	}
	wait(pub.ID)
	for _, id := range accepted {
		wait(id)
	}
	if got := w.PID(); got != pid {
		t.Errorf("the worker restarted (pid %d, then %d): it must recover in place", pid, got)
	}
	if code := getJSON(t, w.HTTP, "/api/v1/health", &rep); code != http.StatusOK {
		t.Fatalf("GET /api/v1/health: %d", code)
	}
	if res, ok := storeResult(rep); ok {
		t.Errorf("the store's critical result outlived the full disk: %+v", res)
	}
	t.Logf("publish into the full store: %v; %d job(s) taken before it failed, all done after", pubErr, len(accepted))
}

// fillUp writes path until its file system is full.
func fillUp(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	if err := f.Sync(); err != nil && !errors.Is(err, unix.ENOSPC) {
		t.Fatal(err)
	}
}

// readyz is the body of /readyz.
type readyz struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
	Health string `json:"health"`
}

// storeResult is the disk result about a worker's JetStream store in rep, if any.
func storeResult(rep brr.HealthReport) (brr.HealthCheck, bool) {
	for _, res := range rep.Checks {
		if res.Check == brr.CheckDisk && strings.HasSuffix(res.Subject, ":jetstream") {
			return res, true
		}
	}
	return brr.HealthCheck{}, false
}

// getJSON gets path from the worker's HTTP server at addr, decodes the body into v
// (when not nil) and returns the status code; 0 when the request failed.
func getJSON(t *testing.T, addr, path string, v any) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	if v != nil {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("GET %s: decode: %v", path, err)
		}
	}
	return resp.StatusCode
}
