package faults_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brr-dev/brr"
)

// enabled is set by BRR_FAULTS=1: the tests take minutes, so `make test` skips them.
var enabled = os.Getenv("BRR_FAULTS") == "1"

var workerBin string

func TestMain(m *testing.M) {
	if !enabled {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "brr-faults-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workerBin = filepath.Join(dir, "brr-worker")
	out, err := exec.Command("go", "build", "-o", workerBin, "../../cmd/worker").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build brr-worker: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// faultTest skips t unless BRR_FAULTS=1, and logs how long it ran.
func faultTest(t *testing.T) {
	t.Helper()
	if !enabled {
		t.Skip("fault test: runs with BRR_FAULTS=1 (make test-faults)")
	}
	start := time.Now()
	t.Cleanup(func() { t.Logf("runtime %s", time.Since(start).Round(100*time.Millisecond)) })
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	_, port, _ := net.SplitHostPort(freeAddr(t))
	n, err := strconv.Atoi(port)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// worker is a brr-worker child process; restart starts it again on the same data dir.
type worker struct {
	t       *testing.T
	o       workerOptions
	dataDir string
	cfgPath string
	id      string // from <data dir>/worker-id, known once ready

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	logs bytes.Buffer
}

type workerOptions struct {
	natsURL string // comma-separated server URLs
	config  string // YAML
	env     []string
}

func (w *worker) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.logs.Write(p)
}

// Logs returns everything every run of the worker printed.
func (w *worker) Logs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.logs.String()
}

func startWorker(t *testing.T, o workerOptions) *worker {
	t.Helper()
	w := &worker{t: t, o: o, dataDir: t.TempDir(), cfgPath: filepath.Join(t.TempDir(), "worker.yaml")}
	if err := os.WriteFile(w.cfgPath, []byte(o.config), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		w.kill()
		if t.Failed() {
			logs := w.Logs()
			if len(logs) > 20000 {
				logs = "…" + logs[len(logs)-20000:]
			}
			t.Logf("brr-worker %s logs:\n%s", w.id, logs)
		}
	})
	w.start()
	return w
}

// start runs the process and waits until it is ready.
func (w *worker) start() {
	t := w.t
	t.Helper()
	httpAddr := freeAddr(t)
	cmd := exec.Command(workerBin, "--config", w.cfgPath, "--data-dir", w.dataDir, "--http", httpAddr,
		"--nats", w.o.natsURL, "--log-format", "json")
	cmd.Env = append(os.Environ(), w.o.env...)
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start brr-worker: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	w.mu.Lock()
	w.cmd, w.done = cmd, done
	w.mu.Unlock()

	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-done:
			t.Fatalf("brr-worker exited before it was ready: %v\n%s", cmd.ProcessState, w.Logs())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("brr-worker not ready after 60s\n%s", w.Logs())
		}
	}
	id, err := os.ReadFile(filepath.Join(w.dataDir, "worker-id"))
	if err != nil {
		t.Fatalf("read worker id: %v", err)
	}
	w.id = strings.TrimSpace(string(id))
}

// kill sends SIGKILL and waits for the process to be gone.
func (w *worker) kill() {
	w.mu.Lock()
	cmd, done := w.cmd, w.done
	w.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		w.t.Errorf("brr-worker %s still running 30s after SIGKILL", w.id)
	}
}

// connect returns a client on a connection that reconnects forever.
func connect(t *testing.T, url string) (*nats.Conn, *brr.Client) {
	t.Helper()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	c, err := brr.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, c
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond every 100 ms until it holds or d has passed, and reports which.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
