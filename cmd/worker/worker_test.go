package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// bins has brr-worker (and brr), built once by TestMain; with -race when the test is.
var bins testkit.Binaries

func TestMain(m *testing.M) {
	bins = testkit.Binaries{Race: raceEnabled}
	os.Exit(bins.Main(m))
}

// proc is a brr-worker process started by a test.
type proc struct {
	cmd     *exec.Cmd
	out     *testkit.SyncBuffer
	done    chan struct{}
	waitErr error

	dataDir, natsAddr, httpAddr string
}

// startProc starts brr-worker with args; it is killed when the test ends if it still runs.
func startProc(t *testing.T, args []string, env ...string) *proc {
	t.Helper()
	p := &proc{out: &testkit.SyncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bins.Worker, args...)
	p.cmd.Env = testkit.Environ(env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start brr-worker: %v", err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("brr-worker %v output:\n%s", args, p.out.String())
		}
	})
	return p
}

// startWorkerProc starts an independent worker: its own data dir (dataDir, or a new
// temporary one when empty), embedded server port and HTTP port.
func startWorkerProc(t *testing.T, dataDir string, extra ...string) *proc {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	natsAddr, httpAddr := testkit.FreeAddr(t), testkit.FreeAddr(t)
	args := append([]string{"--data-dir", dataDir, "--listen", natsAddr, "--http", httpAddr, "--log-format", "json"}, extra...)
	p := startProc(t, args)
	p.dataDir, p.natsAddr, p.httpAddr = dataDir, natsAddr, httpAddr
	return p
}

// exited waits up to d for the process to end and reports its exit code.
func (p *proc) exited(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(d):
		t.Fatalf("brr-worker still running after %s; output:\n%s", d, p.out.String())
	}
	var exit *exec.ExitError
	if errors.As(p.waitErr, &exit) {
		return exit.ExitCode()
	}
	if p.waitErr != nil {
		t.Fatalf("wait: %v", p.waitErr)
	}
	return 0
}

func get(url string) (int, string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body), err
}

// waitReady polls /readyz until it answers 200; it fails if the process exits first.
func (p *proc) waitReady(t *testing.T) {
	t.Helper()
	ready := testkit.WaitFor(90*time.Second, func() bool {
		select {
		case <-p.done:
			t.Fatalf("brr-worker exited before it was ready (%v); output:\n%s", p.waitErr, p.out.String())
		default:
		}
		code, _, err := get("http://" + p.httpAddr + "/readyz")
		return err == nil && code == http.StatusOK
	})
	if !ready {
		t.Fatalf("brr-worker not ready after 90s; output:\n%s", p.out.String())
	}
}

func (p *proc) workerID(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(p.dataDir, "worker-id"))
	if err != nil {
		t.Fatalf("read worker id: %v", err)
	}
	return strings.TrimSpace(string(data))
}

// client connects to p's NATS; the connection is closed when the test ends.
func (p *proc) client(t *testing.T) *brr.Client {
	t.Helper()
	_, c := testkit.Connect(t, "nats://"+p.natsAddr)
	return c
}

// ping runs a ping job through p's pipeline and returns its final event.
func (p *proc) ping(t *testing.T) *brr.Event {
	t.Helper()
	c := p.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	res, err := c.Publish(ctx, brr.PingJob{})
	if err != nil {
		t.Fatalf("publish ping: %v", err)
	}
	ev, err := c.Wait(ctx, res.ID, nil)
	if err != nil {
		t.Fatalf("wait for ping %s: %v", res.ID, err)
	}
	return ev
}

func TestWorkerProcess(t *testing.T) {
	cfgFile := writeConfig(t, "jobs: {drain_timeout: 5s}\n")
	a := startWorkerProc(t, "", "--config", cfgFile)
	a.waitReady(t)

	id := a.workerID(t)
	if !regexp.MustCompile(`^[A-Za-z0-9_-]+-[0-9a-f]{8}$`).MatchString(id) {
		t.Fatalf("worker id = %q, want <host>-<8 hex>", id)
	}

	// First start with no repos: repo local and its key, 0600, 32 bytes in hex.
	keyPath := filepath.Join(a.dataDir, "local.key")
	fi, err := os.Stat(keyPath)
	if err != nil {
		t.Fatalf("local key: %v", err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
		t.Fatalf("local.key mode = %v, want %v", got, want)
	}
	key, err := os.ReadFile(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`^[0-9a-f]{64}\n?$`).Match(key) {
		t.Fatalf("local.key = %q, want 64 hex digits", key)
	}
	if !strings.Contains(a.out.String(), keyPath) {
		t.Fatalf("the log does not say where the generated key is (%s):\n%s", keyPath, a.out.String())
	}

	ev := a.ping(t)
	if got, want := ev.Status, brr.StatusSucceeded; got != want {
		t.Fatalf("ping status = %q, want %q (error %q)", got, want, ev.Error)
	}
	if ev.Result == nil || ev.Result.Ping == nil || ev.Result.Ping.Worker != id {
		t.Fatalf("ping result = %+v, want it answered by worker %s", ev.Result, id)
	}

	if code, body, err := get("http://" + a.httpAddr + "/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("/healthz = %d %q %v, want 200", code, body, err)
	}
	code, metrics, err := get("http://" + a.httpAddr + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics = %d %v, want 200", code, err)
	}
	for _, want := range []string{"go_goroutines", "process_open_fds", "brr_jobs_in_flight", "brr_worker_ready 1"} {
		if !strings.Contains(metrics, want) {
			t.Fatalf("/metrics lacks %q:\n%s", want, metrics)
		}
	}
	if m := regexp.MustCompile(`(?m)^brr_jobs_done_total (\S+)$`).FindStringSubmatch(metrics); m == nil || m[1] == "0" {
		t.Fatalf("brr_jobs_done_total after one ping = %v, want at least 1:\n%s", m, metrics)
	}
	if code, page, err := get("http://" + a.httpAddr + "/"); err != nil || code != http.StatusOK || !strings.Contains(page, "/static/app.js") {
		t.Fatalf("/ = %d %v, want the dashboard:\n%s", code, err, page)
	}
	if code, info, err := get("http://" + a.httpAddr + "/api/v1/info"); err != nil || code != http.StatusOK || !strings.Contains(info, id) {
		t.Fatalf("/api/v1/info = %d %v %s, want 200 naming %s", code, err, info, id)
	}

	// A second, independent worker beside the first.
	b := startWorkerProc(t, "")
	b.waitReady(t)
	if b.workerID(t) == id {
		t.Fatalf("second worker has the first one's id %s", id)
	}
	if got := b.ping(t); got.Status != brr.StatusSucceeded || got.Result.Ping.Worker != b.workerID(t) {
		t.Fatalf("ping on the second worker = %+v", got)
	}

	// A worker on a data dir in use fails fast and says why.
	c := startWorkerProc(t, a.dataDir)
	if code := c.exited(t, 60*time.Second); code == 0 {
		t.Fatalf("worker on a data dir in use exited 0; output:\n%s", c.out.String())
	}
	if !strings.Contains(c.out.String(), "in use") {
		t.Fatalf("worker on a data dir in use does not say so:\n%s", c.out.String())
	}

	// SIGTERM while a job runs: the job finishes (drain), then exit 0 within the drain
	// timeout, the embedded server gone with it.
	ac := a.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	slow, err := ac.Publish(ctx, brr.PingJob{DelayMS: 1500})
	if err != nil {
		t.Fatalf("publish slow ping: %v", err)
	}
	started := make(chan struct{})
	go func() {
		var once sync.Once
		_, _ = ac.Wait(ctx, slow.ID, func(e *brr.Event) {
			if e.Status == brr.StatusStarted {
				once.Do(func() { close(started) })
			}
		})
	}()
	select {
	case <-started:
	case <-ctx.Done():
		t.Fatalf("slow ping %s never started", slow.ID)
	}
	for _, p := range []*proc{a, b} {
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*proc{a, b} {
		if code := p.exited(t, 5*time.Second+15*time.Second); code != 0 {
			t.Fatalf("exit code after SIGTERM = %d, want 0; output:\n%s", code, p.out.String())
		}
		if conn, err := net.DialTimeout("tcp", p.natsAddr, time.Second); err == nil {
			conn.Close()
			t.Fatalf("embedded nats-server still listens on %s after exit", p.natsAddr)
		}
	}

	// A restart keeps the worker id, the key and the repository.
	a2 := startWorkerProc(t, a.dataDir)
	a2.waitReady(t)
	if got := a2.workerID(t); got != id {
		t.Fatalf("worker id after restart = %q, want %q", got, id)
	}
	if got := a2.ping(t); got.Status != brr.StatusSucceeded {
		t.Fatalf("ping after restart = %+v", got)
	}
	// The job that was running at SIGTERM was let finish, and its result kept.
	ev, err = a2.client(t).Wait(ctx, slow.ID, nil)
	if err != nil || ev.Status != brr.StatusSucceeded || ev.Attempt != 1 {
		t.Fatalf("job running at SIGTERM ended %+v, %v; want succeeded on attempt 1 (drained, not cut short and retried)", ev, err)
	}
	key2, err := os.ReadFile(keyPath)
	if err != nil || !bytes.Equal(key, key2) {
		t.Fatalf("local.key changed on restart (%v)", err)
	}
	if err := a2.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := a2.exited(t, 35*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}

	// The wrong key stops start-up with an error that names the repo.
	if err := os.WriteFile(keyPath, []byte(strings.Repeat("ab", 32)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	w := startWorkerProc(t, a.dataDir)
	if code := w.exited(t, 60*time.Second); code == 0 {
		t.Fatalf("worker with a wrong key exited 0")
	}
	if out := w.out.String(); !strings.Contains(out, "repo local") || !strings.Contains(out, "wrong key") {
		t.Fatalf("wrong key: output does not name the repo and the problem:\n%s", out)
	}
}

func TestConfigCommandRedacts(t *testing.T) {
	p := startProc(t, []string{"config", "--data-dir", t.TempDir()},
		"BRR_NATS_URL=nats://127.0.0.1:4222", "BRR_NATS_USER=alice", "BRR_NATS_PASSWORD=pw-that-must-not-show")
	if code := p.exited(t, 30*time.Second); code != 0 {
		t.Fatalf("brr-worker config exited %d:\n%s", code, p.out.String())
	}
	out := p.out.String()
	if strings.Contains(out, "pw-that-must-not-show") {
		t.Fatalf("brr-worker config shows the password:\n%s", out)
	}
	if !strings.Contains(out, "password: <redacted>") || !strings.Contains(out, "user: alice") {
		t.Fatalf("brr-worker config output:\n%s", out)
	}
}

func TestHelpAndBadFlags(t *testing.T) {
	p := startProc(t, []string{"--help"})
	if code := p.exited(t, 30*time.Second); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	for _, want := range []string{"Usage:", "--data-dir", "BRR_NATS_URL", "brr-worker config"} {
		if !strings.Contains(p.out.String(), want) {
			t.Fatalf("--help lacks %q:\n%s", want, p.out.String())
		}
	}
	p = startProc(t, []string{"--concurrency", "0", "--data-dir", t.TempDir()})
	if code := p.exited(t, 30*time.Second); code != 2 {
		t.Fatalf("--concurrency 0 exited %d, want 2", code)
	}
	if !strings.Contains(p.out.String(), "concurrency: must be 1-256, got 0") {
		t.Fatalf("--concurrency 0 output:\n%s", p.out.String())
	}
}

func TestVersionFlag(t *testing.T) {
	// A config that does not load must not stop --version.
	p := startProc(t, []string{"--version", "--config", filepath.Join(t.TempDir(), "missing.yaml")})
	if code := p.exited(t, 30*time.Second); code != 0 {
		t.Fatalf("--version exited %d:\n%s", code, p.out.String())
	}
	// TestMain builds without -ldflags, so the version is the default.
	if got, want := p.out.String(), "brr-worker dev\n"; got != want {
		t.Fatalf("--version printed %q, want %q", got, want)
	}
}
