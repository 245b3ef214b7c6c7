package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// The secrets of TestSecretsStayOut: each long and unlike anything else, so that finding
// one anywhere is a leak.
const (
	secretNATSPassword = "nats-pw-7d1e0c5a93b84f26"
	secretRepoPassword = "repo-pw-2f8b6e1d04c97a35"
	secretAPIKey       = "api-key-c3a9150e7b2d48f6"
	secretToken        = "nats-tok-9e4f2a7c1b08d356"
)

var allSecrets = []string{secretNATSPassword, secretRepoPassword, secretAPIKey, secretToken}

// leaks fails the test for every secret found in what (named where).
func leaks(t *testing.T, where, what string) {
	t.Helper()
	for _, s := range allSecrets {
		if strings.Contains(what, s) {
			t.Errorf("%s shows the secret %q:\n%s", where, s, what)
		}
	}
}

// TestSecretsStayOut runs a worker with a NATS password (once as a setting, once inside
// the URL), a repository password and an API key, at log level debug, makes it run jobs
// (one of them failing) and take an API call, then reads everything it shows: its logs,
// every event, job result, dead letter and health record it published, its HTTP pages
// and API, /metrics, and `brr-worker config`. No secret may appear in any of them.
func TestSecretsStayOut(t *testing.T) {
	opts := natstest.ListeningOptions(t, t.TempDir())
	opts.Users = []*server.User{{Username: "worker", Password: secretNATSPassword}}
	ns := natstest.StartWith(t, opts)
	url := ns.ClientURL()

	dir := t.TempDir()
	keyFile := filepath.Join(dir, "api.key")
	if err := os.WriteFile(keyFile, []byte(secretAPIKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfgFile := writeConfig(t, `
http: {api_key_file: `+keyFile+`}
repos:
  main: {url: "file://`+filepath.Join(dir, "repo")+`", password_env: BRR_TEST_REPO_PASSWORD}
jobs: {drain_timeout: 5s}
health: {interval: 1s}
`)
	env := []string{"BRR_NATS_USER=worker", "BRR_NATS_PASSWORD=" + secretNATSPassword, "BRR_TEST_REPO_PASSWORD=" + secretRepoPassword}

	// The password as a setting.
	dataDir, httpAddr := t.TempDir(), testkit.FreeAddr(t)
	args := []string{"--config", cfgFile, "--data-dir", dataDir, "--nats", url, "--http", httpAddr, "--log-format", "json", "--log-level", "debug"}
	p := startProc(t, args, env...)
	p.dataDir, p.httpAddr = dataDir, httpAddr
	p.waitReady(t)

	nc, c := testkit.Connect(t, url, nats.UserInfo("worker", secretNATSPassword))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "notes.txt"), bytes.Repeat([]byte("brr\n"), 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, job := range []brr.JobArgs{brr.BackupJob{Path: src}, brr.VerifyJob{ReadData: true}, brr.BackupJob{Path: filepath.Join(src, "missing")}} {
		res, err := c.Publish(ctx, job)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = c.Wait(ctx, res.ID, nil) // the last one fails: its error is checked too
	}

	// An API call with the key, and one with a wrong key.
	for _, key := range []string{secretAPIKey, "wrong-key-0000000000"} {
		req, err := http.NewRequest("POST", "http://"+httpAddr+"/api/v1/jobs", strings.NewReader(`{"kind":"ping","args":{}}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+key)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}

	// What it serves over HTTP.
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/", "/api/v1/info", "/api/v1/health", "/api/v1/workers", "/api/v1/jobs", "/api/v1/events"} {
		code, body, err := get("http://" + httpAddr + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		leaks(t, "GET "+path, body)
		if path == "/metrics" && (code != http.StatusOK || !strings.Contains(body, "brr_worker_info")) {
			t.Errorf("GET /metrics = %d without brr_worker_info: not what this test means to read", code)
		}
	}

	// Everything it published: events, results, dead letters, health records.
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	published := 0
	for _, stream := range []string{"BRR_EVENTS", "KV_BRR_RESULTS", "BRR_DLQ", "KV_BRR_HEALTH", "KV_BRR_LEASES", "KV_BRR_REPOS"} {
		st, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatalf("stream %s: %v", stream, err)
		}
		for seq := uint64(1); seq <= st.CachedInfo().State.LastSeq; seq++ {
			m, err := st.GetMsg(ctx, seq)
			if err != nil {
				continue // expired or replaced
			}
			hdr, _ := json.Marshal(m.Header)
			leaks(t, stream+" message "+m.Subject, string(m.Data)+string(hdr))
			published++
		}
	}
	if published < 10 {
		t.Errorf("read %d published messages, want the events, results and health records of the jobs", published)
	}
	if err := p.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	p.exited(t, 60*time.Second)
	logs := p.out.String()
	leaks(t, "the worker's log", logs)
	if !strings.Contains(logs, `"level":"debug"`) || !strings.Contains(logs, "worker ready") {
		t.Errorf("the worker's log has no debug lines or no start-up: not what this test means to read:\n%s", logs)
	}

	// The password inside the URL: the worker logs where it connected, and the config
	// shows the URL.
	urlWithPassword := strings.Replace(url, "nats://", "nats://worker:"+secretNATSPassword+"@", 1)
	q := startWorkerProc(t, "", "--config", writeConfig(t, "log: {level: debug}\n"), "--nats", urlWithPassword)
	q.waitReady(t)
	if err := q.cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	q.exited(t, 60*time.Second)
	leaks(t, "the log of a worker with the password in its URL", q.out.String())
	if !strings.Contains(q.out.String(), "connected to nats") {
		t.Errorf("the worker did not log its connection: not what this test means to read:\n%s", q.out.String())
	}

	// brr-worker config, with each kind of secret set.
	for _, extra := range [][]string{
		{"BRR_NATS_USER=worker", "BRR_NATS_PASSWORD=" + secretNATSPassword},
		{"BRR_NATS_TOKEN=" + secretToken},
		{"BRR_NATS_URL=" + urlWithPassword},
		{"BRR_NATS_URL=" + strings.Replace(url, "nats://", "nats://"+secretToken+"@", 1)},
	} {
		e := append([]string{"BRR_NATS_URL=" + url, "BRR_TEST_REPO_PASSWORD=" + secretRepoPassword}, extra...)
		cp := startProc(t, []string{"config", "--config", cfgFile, "--data-dir", t.TempDir()}, e...)
		if code := cp.exited(t, 30*time.Second); code != 0 {
			t.Fatalf("brr-worker config with %v exited %d:\n%s", extra, code, cp.out.String())
		}
		out := cp.out.String()
		leaks(t, "brr-worker config", out)
		if !strings.Contains(out, "<redacted>") || !strings.Contains(out, "api_key_file: "+keyFile) {
			t.Errorf("brr-worker config with %v does not show the redacted secret and the key's file:\n%s", extra, out)
		}
	}
}

// TestDeployWorkerConfigs loads the worker configurations of deploy/ as the worker does
// (file, then environment) and validates them: deploy/worker/*.yaml, the systemd one and the Kubernetes
// ConfigMap's.
func TestDeployWorkerConfigs(t *testing.T) {
	files, err := filepath.Glob("../../deploy/worker/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("deploy/worker/*.yaml: %v %v", files, err)
	}
	configs := map[string][]byte{}
	for _, f := range append(files, "../../deploy/systemd/worker.yaml") {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		configs[f] = data
	}
	k8s, err := os.ReadFile("../../deploy/k8s/worker.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(k8s), "  worker.yaml: |\n")
	rest, _, _ = strings.Cut(rest, "\n---")
	var lines []string
	for _, l := range strings.Split(rest, "\n") {
		lines = append(lines, strings.TrimPrefix(l, "    "))
	}
	configs["k8s ConfigMap brr-worker"] = []byte(strings.Join(lines, "\n"))

	for name, data := range configs {
		cfg := DefaultConfig()
		cfg.DataDir = "/var/lib/brr"
		if err := parseConfigYAML(name, data, &cfg); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		// The password comes from the environment, as the files say.
		if err := applyEnv(&cfg, testEnv(map[string]string{"BRR_NATS_PASSWORD": "from-the-env"}).Getenv); err != nil {
			t.Fatal(err)
		}
		if err := cfg.finish(testEnv(nil)); err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if cfg.NATS.URL == "" || cfg.NATS.User != "worker" || len(cfg.Repos) == 0 {
			t.Errorf("%s: nats.url %q, nats.user %q, repos %v: want an external NATS as user worker and a repository", name, cfg.NATS.URL, cfg.NATS.User, cfg.Repos)
		}
		// deploy/nats/accounts.conf lets the worker subscribe to _INBOX_worker.> only.
		if got := cfg.NATS.inboxPrefix(); got != "_INBOX_worker" {
			t.Errorf("%s: inbox prefix %q, want _INBOX_worker, the worker's in deploy/nats/accounts.conf", name, got)
		}
	}
	if got := len(configs); got < 4 {
		t.Errorf("checked %d configs, want the cluster, TLS, systemd and Kubernetes ones", got)
	}
}
