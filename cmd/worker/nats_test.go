package main

import (
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
)

// TestRemoteNATS runs the worker against an external nats-server: it is ready while the
// server is up, answers 503 with a reason while it is down, and comes back by itself.
func TestRemoteNATS(t *testing.T) {
	host, port, err := net.SplitHostPort(freeAddr(t))
	if err != nil {
		t.Fatal(err)
	}
	opts := natstest.Options(t.TempDir())
	opts.DontListen = false
	opts.Host = host
	opts.Port, _ = strconv.Atoi(port)
	ns := natstest.StartWith(t, opts)
	url := "nats://" + net.JoinHostPort(host, port)

	dataDir, httpAddr := t.TempDir(), freeAddr(t)
	p := startProc(t, []string{"--data-dir", dataDir, "--nats", url, "--http", httpAddr, "--log-format", "json"})
	p.dataDir, p.httpAddr, p.natsAddr = dataDir, httpAddr, net.JoinHostPort(host, port)
	p.waitReady(t)
	if got := p.ping(t); got.Status != brr.StatusSucceeded {
		t.Fatalf("ping through an external server = %+v", got)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "jetstream")); err == nil {
		t.Fatalf("worker with nats.url started an embedded server (data_dir/jetstream exists)")
	}

	ns.Stop()
	deadline := time.Now().Add(60 * time.Second)
	for {
		code, body, err := get("http://" + httpAddr + "/readyz")
		if err == nil && code == http.StatusServiceUnavailable {
			if !strings.Contains(body, "disconnected") {
				t.Fatalf("/readyz while nats is down = %q, want a reason that says so", body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d %q %v after nats went down", code, body, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if code, _, err := get("http://" + httpAddr + "/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("/healthz while nats is down = %d %v, want 200", code, err)
	}

	natstest.StartWith(t, opts)
	p.waitReady(t)
	if !strings.Contains(p.out.String(), "reconnected to nats") {
		t.Fatalf("log does not record the reconnect:\n%s", p.out.String())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exited(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}
