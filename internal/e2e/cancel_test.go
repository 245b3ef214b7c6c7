package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// cancelReply is what `brr cancel --json` prints.
type cancelReply struct {
	ID     string     `json:"id"`
	Status brr.Status `json:"status"`
	Final  brr.Status `json:"final"`
	TookMS int64      `json:"took_ms"`
}

// startUntil publishes args as job id and returns once the job's progress has passed
// minBytes, with the bytes reached; it fails the test when the job ends first.
func startUntil(t *testing.T, ctx context.Context, c *brr.Client, id string, args brr.JobArgs, minBytes int64) *brr.Waiter {
	t.Helper()
	var reached atomic.Int64
	w, err := c.Watch(ctx, id, func(e *brr.Event) {
		if e.Status == brr.StatusProgress && e.Progress != nil {
			reached.Store(e.Progress.Bytes)
		}
	})
	if err != nil {
		t.Fatalf("watch %s: %v", id, err)
	}
	if _, err := c.Publish(ctx, args, brr.WithID(id)); err != nil {
		t.Fatalf("publish %s: %v", id, err)
	}
	got := make(chan *brr.Event, 1)
	go func() {
		e, _ := w.Result(ctx)
		got <- e
	}()
	testkit.Eventually(t, 3*time.Minute, fmt.Sprintf("job %s to pass %d bytes", id, minBytes), func() bool {
		select {
		case e := <-got:
			t.Fatalf("job %s ended %s before it could be cancelled", id, e.Status)
		default:
		}
		return reached.Load() >= minBytes
	})
	// A second waiter for the end: the first one's Result is taken.
	w2, err := c.Watch(ctx, id, nil)
	if err != nil {
		t.Fatalf("watch %s: %v", id, err)
	}
	return w2
}

// publishWait publishes a job of args and waits for its end: the final event, and an
// error unless it succeeded.
func publishWait(t *testing.T, ctx context.Context, c *brr.Client, args brr.JobArgs, opts ...brr.PublishOption) (*brr.Event, error) {
	t.Helper()
	pub, err := c.Publish(ctx, args, opts...)
	if err != nil {
		t.Fatalf("publish %T: %v", args, err)
	}
	return c.Wait(ctx, pub.ID, nil)
}

// metric returns the value of the sample of the worker's /metrics whose line starts
// with prefix, or "" when there is none.
func metric(t *testing.T, w *testkit.Worker, prefix string) string {
	t.Helper()
	res, err := http.Get("http://" + w.HTTP + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, prefix+" ") {
			return strings.TrimPrefix(line, prefix+" ")
		}
	}
	return ""
}

// deleteJob sends DELETE /api/v1/jobs/{id} with key and returns the status and body.
func deleteJob(t *testing.T, w *testkit.Worker, key, id string) (int, string) {
	t.Helper()
	req, err := http.NewRequest("DELETE", "http://"+w.HTTP+"/api/v1/jobs/"+id, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("DELETE job %s: %v", id, err)
	}
	defer res.Body.Close()
	data, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(data)
}

// TestCancelBackupAndRestore cancels, on a real worker process, a running 1 GiB backup
// (with the CLI), a job queued behind it, and a running restore (with the HTTP API). The
// cancelled backup leaves no snapshot but packs that the next backup, after a worker
// restart, reuses; the cancelled restore leaves no half-written file under its name;
// cancelled jobs say so in events, BRR_RESULTS, `brr jobs` and the metrics, and are not
// dead-lettered; cancelling a finished job says so.
func TestCancelBackupAndRestore(t *testing.T) {
	if testing.Short() {
		t.Skip("writes and backs up 1 GiB")
	}
	const key = "e2e-cancel-key-0123456789abcdef"
	keyFile := writeAPIKey(t, key)
	w := bins.StartWorker(t, testkit.WorkerOptions{Config: fmt.Sprintf("concurrency: 1\nhttp:\n  api_key_file: %s\n", keyFile)})
	_, c := testkit.Connect(t, w.NATSURL)
	ctx := testkit.Context(t, 10*time.Minute)
	cli := func(args ...string) (string, string, int) {
		return bins.RunCLI(t, nil, append([]string{"--nats", w.NATSURL}, args...)...)
	}

	src := t.TempDir()
	sizes := make([]int, 8)
	for i := range sizes {
		sizes[i] = 128 << 20
	}
	total := testkit.WriteTree(t, src, testkit.Tree{Seed: 11, Sizes: sizes})

	// A running backup, with a job queued behind it (concurrency 1).
	w1 := startUntil(t, ctx, c, "big-1", brr.BackupJob{Path: src}, 300<<20)
	if _, err := c.Publish(ctx, brr.PingJob{}, brr.WithID("queued-1")); err != nil {
		t.Fatalf("publish queued: %v", err)
	}
	stdout, stderr, code := cli("cancel", "queued-1")
	if code != 0 || !strings.Contains(stdout, "no worker has taken it yet") {
		t.Fatalf("brr cancel queued-1: exit %d\n%s\n%s", code, stdout, stderr)
	}
	stdout, stderr, code = cli("--json", "cancel", "big-1", "--wait")
	if code != 0 {
		t.Fatalf("brr cancel big-1 --wait: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var reply cancelReply
	if err := json.Unmarshal([]byte(stdout), &reply); err != nil {
		t.Fatalf("brr cancel --json: %v\n%s", err, stdout)
	}
	if reply.Status != brr.StatusStarted || reply.Final != brr.StatusCancelled {
		t.Fatalf("brr cancel --json = %+v, want started, then cancelled", reply)
	}
	t.Logf("backup: %d ms from `brr cancel` to the job's end", reply.TookMS)
	if reply.TookMS > 30_000 {
		t.Errorf("the backup took %d ms to stop, want a few seconds at most", reply.TookMS)
	}
	e, err := w1.Result(ctx)
	if e == nil || e.Status != brr.StatusCancelled {
		t.Fatalf("backup ended %+v (%v), want cancelled", e, err)
	}
	e, err = c.Wait(ctx, "queued-1", nil)
	if e == nil || e.Status != brr.StatusCancelled || !strings.Contains(e.Error, "before it ran") {
		t.Fatalf("queued job ended %+v (%v), want cancelled before it ran", e, err)
	}
	started, err := c.Events(ctx, brr.Subjects{}.Events(brr.EventJob), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	cancelled := map[string]bool{}
	for _, ev := range started {
		if ev.JobID == "queued-1" && ev.Status == brr.StatusStarted {
			t.Errorf("the cancelled queued job started: %+v", ev)
		}
		if ev.Status == brr.StatusCancelled {
			cancelled[ev.JobID] = true
		}
	}
	if !cancelled["big-1"] || !cancelled["queued-1"] {
		t.Errorf("cancelled events for %v, want big-1 and queued-1", cancelled)
	}
	if snaps, err := c.Snapshots(ctx, "", ""); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots after the cancel = %+v (%v), want none", snaps, err)
	}
	if dead, err := c.DeadLetters(ctx); err != nil || len(dead) != 0 {
		t.Fatalf("dead letters = %+v (%v), want none", dead, err)
	}
	stdout, _, code = cli("jobs")
	if code != 0 || !strings.Contains(stdout, "big-1") || !strings.Contains(stdout, "cancelled") {
		t.Errorf("brr jobs (exit %d) does not show big-1 cancelled:\n%s", code, stdout)
	}
	if got := metric(t, w, `brr_jobs_total{kind="backup",status="cancelled"}`); got != "1" {
		t.Errorf(`brr_jobs_total{kind="backup",status="cancelled"} = %q, want 1`, got)
	}
	if got := metric(t, w, "brr_jobs_cancelled_total"); got != "2" {
		t.Errorf("brr_jobs_cancelled_total = %q, want 2", got)
	}

	// The next backup, after a restart (so nothing is remembered in memory), stores
	// only what the cancelled one had not.
	w.Stop(30 * time.Second)
	w.Start()
	e, err = publishWait(t, ctx, c, brr.BackupJob{Path: src}, brr.WithID("big-2"))
	if err != nil {
		t.Fatalf("next backup: %v", err)
	}
	b := e.Result.Backup
	t.Logf("next backup: read %d bytes, stored %d bytes (%d blobs) of %d", b.BytesRead, b.BytesAdded, b.BlobsAdded, total)
	if b.BytesAdded > total-200<<20 {
		t.Errorf("the backup after the cancelled one stored %d of %d bytes: it did not reuse the ≥300 MiB the cancelled one had written", b.BytesAdded, total)
	}

	// Cancelling a finished job says so: the CLI exits 1, the API answers 409.
	stdout, stderr, code = cli("cancel", "big-2")
	if code != 1 || !strings.Contains(stderr, "ended succeeded") {
		t.Errorf("brr cancel of a finished job: exit %d\n%s\n%s", code, stdout, stderr)
	}
	if st, body := deleteJob(t, w, key, "big-2"); st != http.StatusConflict || !strings.Contains(body, "ended succeeded") {
		t.Errorf("DELETE of a finished job: %d %s, want 409", st, body)
	}

	// A running restore, cancelled through the API.
	target := filepath.Join(t.TempDir(), "restore")
	wr := startUntil(t, ctx, c, "restore-1", brr.RestoreJob{Snapshot: b.Snapshot, Target: target}, 100<<20)
	asked := time.Now()
	if st, body := deleteJob(t, w, key, "restore-1"); st != http.StatusAccepted || !strings.Contains(body, `"status":"started"`) {
		t.Fatalf("DELETE restore-1: %d %s, want 202 for a started job", st, body)
	}
	e, err = wr.Result(ctx)
	took := time.Since(asked)
	if e == nil || e.Status != brr.StatusCancelled {
		t.Fatalf("restore ended %+v (%v), want cancelled", e, err)
	}
	t.Logf("restore: %s from DELETE /api/v1/jobs/{id} to the job's end", took.Round(time.Millisecond))
	if took > 30*time.Second {
		t.Errorf("the restore took %s to stop, want a few seconds at most", took)
	}
	whole, partial := 0, 0
	err = filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(target, p)
		if strings.HasPrefix(d.Name(), ".brr-restore-") {
			partial++
			return nil
		}
		got, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		want, err := os.ReadFile(filepath.Join(src, rel))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			t.Errorf("restored file %s has %d bytes that differ from the source's %d: half-written under its name", rel, len(got), len(want))
		}
		whole++
		return nil
	})
	if err != nil {
		t.Fatalf("walk target: %v", err)
	}
	t.Logf("cancelled restore left %d whole files and %d .brr-restore-* entries (marker, temporaries)", whole, partial)
	if got := metric(t, w, `brr_jobs_total{kind="restore",status="cancelled"}`); got != "1" {
		t.Errorf(`brr_jobs_total{kind="restore",status="cancelled"} = %q, want 1`, got)
	}
	if dead, err := c.DeadLetters(ctx); err != nil || len(dead) != 0 {
		t.Fatalf("dead letters = %+v (%v), want none", dead, err)
	}
}
