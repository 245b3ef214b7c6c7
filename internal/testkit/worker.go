package testkit

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// WorkerOptions say how StartWorker runs brr-worker.
type WorkerOptions struct {
	// NATS is the URLs of the servers, comma-separated; empty runs the worker's embedded
	// server on a free loopback port.
	NATS string
	// Config is the worker's YAML configuration.
	Config string
	// DataDir is the data directory; empty is a new temporary one.
	DataDir string
	// Env is added to the environment, which keeps none of the test's BRR_* variables.
	Env []string
}

// Worker is a brr-worker child process. It is killed when the test ends, and its logs
// are printed if the test failed. Start runs it again on the same data directory, so it
// keeps its worker id.
type Worker struct {
	// DataDir is the worker's data directory.
	DataDir string
	// NATSURL is where clients connect: WorkerOptions.NATS, or the embedded server.
	NATSURL string
	// HTTP is the host:port of the worker's HTTP server; every start has a new one.
	HTTP string
	// ID is the worker's id, from DataDir/worker-id; set once the worker is ready.
	ID string

	t    testing.TB
	bin  string
	args []string // every flag but --http
	env  []string
	logs SyncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
	err  error         // cmd.Wait's, set before done is closed
}

// StartWorker starts brr-worker as o says and waits until it is ready.
func (b *Binaries) StartWorker(t testing.TB, o WorkerOptions) *Worker {
	t.Helper()
	w := &Worker{t: t, bin: b.Worker, DataDir: o.DataDir, NATSURL: o.NATS, env: Environ(o.Env...)}
	if w.DataDir == "" {
		w.DataDir = t.TempDir()
	}
	cfgPath := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(cfgPath, []byte(o.Config), 0o600); err != nil {
		t.Fatal(err)
	}
	w.args = []string{"--config", cfgPath, "--data-dir", w.DataDir, "--log-format", "json"}
	if o.NATS != "" {
		w.args = append(w.args, "--nats", o.NATS)
	} else {
		// Chosen once, so that clients find the embedded server again after a restart.
		listen := FreeAddr(t)
		w.args = append(w.args, "--listen", listen)
		w.NATSURL = "nats://" + listen
	}
	t.Cleanup(func() {
		w.Kill()
		if t.Failed() {
			logs := w.Logs()
			if len(logs) > 20000 {
				logs = "…" + logs[len(logs)-20000:]
			}
			t.Logf("brr-worker %s (%s) logs:\n%s", w.ID, w.DataDir, logs)
		}
	})
	w.Start()
	return w
}

// Start runs the process, again after Stop or Kill, and waits until it is ready.
func (w *Worker) Start() {
	t := w.t
	t.Helper()
	w.HTTP = FreeAddr(t)
	cmd := exec.Command(w.bin, append(w.args, "--http", w.HTTP)...)
	cmd.Env = w.env
	cmd.Stdout, cmd.Stderr = &w.logs, &w.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start brr-worker: %v", err)
	}
	done := make(chan struct{})
	w.mu.Lock()
	w.cmd, w.done, w.err = cmd, done, nil
	w.mu.Unlock()
	go func() {
		err := cmd.Wait()
		w.mu.Lock()
		w.err = err
		w.mu.Unlock()
		close(done)
	}()

	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + w.HTTP + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("brr-worker exited before it was ready: %v\n%s", w.exitErr(), w.Logs())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("brr-worker not ready after 60s\n%s", w.Logs())
		}
	}
	id, err := os.ReadFile(filepath.Join(w.DataDir, "worker-id"))
	if err != nil {
		t.Fatalf("read worker id: %v", err)
	}
	w.ID = strings.TrimSpace(string(id))
}

// Logs returns everything every run of the worker printed.
func (w *Worker) Logs() string { return w.logs.String() }

func (w *Worker) running() (*exec.Cmd, chan struct{}) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cmd, w.done
}

// PID returns the process id of the running process, or 0 when it has exited: for a
// test that reads the process's /proc entries.
func (w *Worker) PID() int {
	cmd, done := w.running()
	if cmd == nil {
		return 0
	}
	select {
	case <-done:
		return 0
	default:
		return cmd.Process.Pid
	}
}

func (w *Worker) exitErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Signal sends sig to the process, unless it has exited.
func (w *Worker) Signal(sig os.Signal) {
	cmd, done := w.running()
	if cmd == nil {
		return
	}
	select {
	case <-done:
	default:
		_ = cmd.Process.Signal(sig)
	}
}

// Wait waits up to d for the process to exit and returns its exit code (-1 when a
// signal ended it); it fails the test if the process still runs.
func (w *Worker) Wait(d time.Duration) int {
	w.t.Helper()
	cmd, done := w.running()
	select {
	case <-done:
	case <-time.After(d):
		w.t.Fatalf("brr-worker %s still running after %s\n%s", w.ID, d, w.Logs())
	}
	return cmd.ProcessState.ExitCode()
}

// Stop sends SIGTERM, as an operator stops a worker, and returns the exit code once the
// process has exited; it fails the test if that takes longer than d.
func (w *Worker) Stop(d time.Duration) int {
	w.t.Helper()
	w.Signal(syscall.SIGTERM)
	return w.Wait(d)
}

// Kill sends SIGKILL and waits for the process to be gone.
func (w *Worker) Kill() {
	w.t.Helper()
	cmd, done := w.running()
	killWait(w.t, cmd, done, "brr-worker "+w.ID)
}

// killWait sends SIGKILL to cmd, unless done (closed when cmd has exited) says it is gone
// already, and waits up to 30 s for it to be; what names it in the error. It reports
// whether cmd is gone; a nil cmd is.
func killWait(t testing.TB, cmd *exec.Cmd, done <-chan struct{}, what string) bool {
	t.Helper()
	if cmd == nil {
		return true
	}
	select {
	case <-done:
		return true
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
		return true
	case <-time.After(30 * time.Second):
		t.Errorf("%s still running 30s after SIGKILL", what)
		return false
	}
}
