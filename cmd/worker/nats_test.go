package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestRemoteNATS runs the worker against an external nats-server: it is ready while the
// server is up, answers 503 with a reason while it is down, and comes back by itself.
func TestRemoteNATS(t *testing.T) {
	opts := natstest.ListeningOptions(t, t.TempDir())
	ns := natstest.StartWith(t, opts)
	natsAddr := ns.Addr().String()
	url := "nats://" + natsAddr

	dataDir, httpAddr := t.TempDir(), testkit.FreeAddr(t)
	p := startProc(t, []string{"--data-dir", dataDir, "--nats", url, "--http", httpAddr, "--log-format", "json"})
	p.dataDir, p.httpAddr, p.natsAddr = dataDir, httpAddr, natsAddr
	p.waitReady(t)
	if got := p.ping(t); got.Status != brr.StatusSucceeded {
		t.Fatalf("ping through an external server = %+v", got)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "jetstream")); err == nil {
		t.Fatalf("worker with nats.url started an embedded server (data_dir/jetstream exists)")
	}

	ns.Stop()
	var (
		code int
		body string
		err  error
	)
	down := testkit.WaitFor(60*time.Second, func() bool {
		code, body, err = get("http://" + httpAddr + "/readyz")
		return err == nil && code == http.StatusServiceUnavailable
	})
	if !down {
		t.Fatalf("/readyz still %d %q %v after nats went down", code, body, err)
	}
	if !strings.Contains(body, "disconnected") {
		t.Fatalf("/readyz while nats is down = %q, want a reason that says so", body)
	}
	if code, _, err := get("http://" + httpAddr + "/healthz"); err != nil || code != http.StatusOK {
		t.Fatalf("/healthz while nats is down = %d %v, want 200", code, err)
	}

	natstest.StartWith(t, opts)
	p.waitReady(t)
	// nats.go calls the reconnect handler, which logs, after the connection is up again,
	// from a goroutine of its own: the worker may be ready a moment before the line is.
	if !testkit.WaitFor(10*time.Second, func() bool { return strings.Contains(p.out.String(), "reconnected to nats") }) {
		t.Fatalf("log does not record the reconnect:\n%s", p.out.String())
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.exited(t, 60*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}
}

// TestInboxPrefix: the worker's replies come to the inbox of its user, which is what
// deploy/nats/accounts.conf lets it subscribe to, unless nats.inbox_prefix names one.
func TestInboxPrefix(t *testing.T) {
	for _, tt := range []struct {
		name string
		cfg  NATSConfig
		want string
	}{
		{"embedded", NATSConfig{}, ""},
		{"user", NATSConfig{URL: "nats://x:4222", User: "worker", Password: "p"}, "_INBOX_worker"},
		{"set", NATSConfig{URL: "nats://x:4222", User: "worker", Password: "p", InboxPrefix: "_INBOX_w1"}, "_INBOX_w1"},
		{"creds", NATSConfig{URL: "nats://x:4222", Creds: "/etc/brr/worker.creds"}, ""},
		{"creds and set", NATSConfig{URL: "nats://x:4222", Creds: "/etc/brr/worker.creds", InboxPrefix: "_INBOX_worker"}, "_INBOX_worker"},
		{"token", NATSConfig{URL: "nats://x:4222", Token: "t"}, ""},
	} {
		if got := tt.cfg.inboxPrefix(); got != tt.want {
			t.Errorf("%s: inbox prefix %q, want %q", tt.name, got, tt.want)
		}
	}
	cfg := DefaultConfig()
	if err := applyEnv(&cfg, testEnv(map[string]string{"BRR_NATS_INBOX_PREFIX": "_INBOX_w2"}).Getenv); err != nil {
		t.Fatal(err)
	}
	if got := cfg.NATS.InboxPrefix; got != "_INBOX_w2" {
		t.Errorf("BRR_NATS_INBOX_PREFIX gave nats.inbox_prefix %q", got)
	}
}
