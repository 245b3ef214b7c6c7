package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brr-dev/brr"
)

var workerBin, cliBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "brr-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	workerBin = filepath.Join(dir, "brr-worker")
	cliBin = filepath.Join(dir, "brr")
	for bin, pkg := range map[string]string{workerBin: "../../cmd/worker", cliBin: "../../cmd/publisher"} {
		out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
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

// worker is a brr-worker child process.
type worker struct {
	t       *testing.T
	cmd     *exec.Cmd
	dataDir string
	// natsURL is where clients connect: the worker's embedded server, or the external one.
	natsURL string
	http    string
	mu      sync.Mutex
	logs    bytes.Buffer
	done    chan struct{}
	err     error
}

func (w *worker) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.logs.Write(p)
}

func (w *worker) Logs() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.logs.String()
}

type workerOptions struct {
	natsURL string // empty: embedded server
	config  string // extra YAML
	dataDir string // empty: a new temp dir
	env     []string
}

func startWorker(t *testing.T, o workerOptions) *worker {
	t.Helper()
	w := &worker{t: t, dataDir: o.dataDir, http: freeAddr(t), done: make(chan struct{})}
	if w.dataDir == "" {
		w.dataDir = t.TempDir()
	}
	cfgPath := filepath.Join(t.TempDir(), "worker.yaml")
	if err := os.WriteFile(cfgPath, []byte(o.config), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", cfgPath, "--data-dir", w.dataDir, "--http", w.http, "--log-format", "json"}
	if o.natsURL != "" {
		args = append(args, "--nats", o.natsURL)
		w.natsURL = o.natsURL
	} else {
		listen := freeAddr(t)
		args = append(args, "--listen", listen)
		w.natsURL = "nats://" + listen
	}
	w.cmd = exec.Command(workerBin, args...)
	w.cmd.Env = append(os.Environ(), o.env...)
	w.cmd.Stdout = w
	w.cmd.Stderr = w
	if err := w.cmd.Start(); err != nil {
		t.Fatalf("start brr-worker: %v", err)
	}
	go func() {
		w.err = w.cmd.Wait()
		close(w.done)
	}()
	t.Cleanup(func() {
		w.signal(syscall.SIGKILL)
		<-w.done
		if t.Failed() {
			t.Logf("brr-worker %s logs:\n%s", w.dataDir, w.Logs())
		}
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get("http://" + w.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return w
			}
		}
		select {
		case <-w.done:
			t.Fatalf("brr-worker exited before it was ready: %v\n%s", w.err, w.Logs())
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("brr-worker not ready after 60s\n%s", w.Logs())
		}
	}
}

func (w *worker) signal(sig os.Signal) {
	select {
	case <-w.done:
	default:
		_ = w.cmd.Process.Signal(sig)
	}
}

// wait waits for the process to exit and returns its exit code.
func (w *worker) wait(timeout time.Duration) int {
	w.t.Helper()
	select {
	case <-w.done:
	case <-time.After(timeout):
		w.t.Fatalf("brr-worker still running after %s\n%s", timeout, w.Logs())
	}
	if w.cmd.ProcessState == nil {
		return -1
	}
	return w.cmd.ProcessState.ExitCode()
}

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

// run runs the brr CLI and returns its stdout, stderr and exit code.
func run(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(cliBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("run brr %s: %v", strings.Join(args, " "), err)
		}
		code = ee.ExitCode()
	}
	return stdout.String(), stderr.String(), code
}
