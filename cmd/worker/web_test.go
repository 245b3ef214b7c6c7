package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/testkit"
	"github.com/brr-dev/brr/internal/web"
)

func TestLoadAPIKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil { // past the umask
			t.Fatal(err)
		}
		return p
	}
	const key = "0123456789abcdef0123"
	for _, tc := range []struct {
		name, path, want string
		warn             bool
	}{
		{"none", "", "", false},
		{"good", write("good", "  "+key+"\n", 0o600), "", false},
		{"missing", filepath.Join(dir, "nope"), "does not exist; put a long random key in it", false},
		{"empty", write("empty", "\n\n", 0o600), "is empty", false},
		{"short", write("short", "hunter2\n", 0o600), "holds a key of 7 characters; use at least 16", false},
		{"two words", write("words", key+" "+key, 0o600), "more than one word", false},
		{"directory", dir, "not a regular file", false},
		{"readable by others", write("open", key, 0o644), "", true},
	} {
		var logs bytes.Buffer
		got, err := loadAPIKey(tc.path, zerolog.New(&logs))
		switch {
		case tc.want != "":
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("%s: error %v, want one saying %q", tc.name, err, tc.want)
			}
			continue
		case err != nil:
			t.Errorf("%s: %v", tc.name, err)
			continue
		case tc.path == "" && got != nil:
			t.Errorf("%s: key %q, want none", tc.name, got)
		case tc.path != "" && string(got) != key:
			t.Errorf("%s: key %q, want %q", tc.name, got, key)
		}
		if warned := strings.Contains(logs.String(), "chmod 600"); warned != tc.warn {
			t.Errorf("%s: warning logged = %v, want %v (%s)", tc.name, warned, tc.warn, logs.String())
		}
		if strings.Contains(logs.String(), key) {
			t.Errorf("%s: the key is in the log: %s", tc.name, logs.String())
		}
	}
}

func TestHTTPConfig(t *testing.T) {
	m, err := parse(t, nil, map[string]string{"BRR_HTTP_API_KEY_FILE": "/etc/brr/api.key", "BRR_HTTP_PROTECT_READS": "true"})
	if err != nil {
		t.Fatal(err)
	}
	if h := m.Config.HTTP; h.APIKeyFile != "/etc/brr/api.key" || !h.ProtectReads {
		t.Fatalf("http = %+v, want the key file and protect_reads from the environment", h)
	}
	cfgPath := writeConfig(t, "http:\n  protect_reads: true\n")
	for _, tc := range []struct {
		args []string
		vars map[string]string
		want string
	}{
		{nil, map[string]string{"BRR_HTTP_PROTECT_READS": "yes please"}, `BRR_HTTP_PROTECT_READS: want true or false, got "yes please"`},
		{[]string{"--config", cfgPath}, nil, "http.protect_reads: reads can only be protected with a key; set http.api_key_file"},
		{nil, map[string]string{"BRR_HTTP_API_KEY_FILE": "api.key"}, `http.api_key_file: must be an absolute path, got "api.key"`},
	} {
		if _, err := parse(t, tc.args, tc.vars); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want one saying %q", tc.args, tc.vars, err, tc.want)
		}
	}
}

// TestWorkerServesAPI starts a worker process with an API key: its API takes a job with
// the key only, its dashboard is at /, and the key is in none of its output.
func TestWorkerServesAPI(t *testing.T) {
	const key = "worker-test-api-key-0123456789"
	keyFile := filepath.Join(t.TempDir(), "api.key")
	if err := os.WriteFile(keyFile, []byte(key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startWorkerProc(t, "", "--config", writeConfig(t, "http:\n  api_key_file: "+keyFile+"\n"))
	p.waitReady(t)
	base := "http://" + p.httpAddr

	if code, body, err := get(base + "/"); err != nil || code != http.StatusOK || !strings.Contains(body, "/static/app.js") {
		t.Fatalf("GET /: %d %v %.200s", code, err, body)
	}
	if code, body, err := get(base + "/api/v1/info"); err != nil || code != http.StatusOK || !strings.Contains(body, p.workerID(t)) {
		t.Fatalf("GET /api/v1/info: %d %v %s", code, err, body)
	}
	for _, k := range []struct {
		key  string
		want int
	}{{"", http.StatusUnauthorized}, {"wrong-key-0123456789", http.StatusUnauthorized}, {key, http.StatusAccepted}} {
		req, _ := http.NewRequest("POST", base+"/api/v1/jobs", strings.NewReader(`{"kind":"ping"}`))
		if k.key != "" {
			req.Header.Set("Authorization", "Bearer "+k.key)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != k.want {
			t.Errorf("POST /api/v1/jobs with key %q: %d, want %d", k.key, res.StatusCode, k.want)
		}
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _, err := get(base + path); err != nil || code != http.StatusOK {
			t.Errorf("GET %s: %d %v, want 200 beside the API", path, code, err)
		}
	}
	if out := p.out.String(); strings.Contains(out, key) || !strings.Contains(out, "serving dashboard and api") {
		t.Fatalf("worker output has the key or lacks the dashboard line:\n%s", out)
	}
}

// TestWorkerRefusesShortAPIKey checks that a bad key file stops the worker at start with
// a message that says what to do.
func TestWorkerRefusesShortAPIKey(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "api.key")
	if err := os.WriteFile(keyFile, []byte("hunter2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startWorkerProc(t, "", "--config", writeConfig(t, "http:\n  api_key_file: "+keyFile+"\n"))
	if code := p.exited(t, 90*time.Second); code == 0 {
		t.Fatalf("worker with a 7-character API key exited 0")
	}
	if out := p.out.String(); !strings.Contains(out, "use at least 16") || strings.Contains(out, "hunter2") {
		t.Fatalf("output lacks the reason or shows the key:\n%s", out)
	}
}

// TestWorkerServesRepos reads GET /api/v1/repos from a real worker as the pool's
// registry changes under it: its own repo local, registered and served; then a repo
// added to the registry whose password the worker lacks, refused by it with why (in its
// answer at once, in its heartbeat a moment later); then a replication policy set in the
// registry, which /info and /replication show without a restart.
func TestWorkerServesRepos(t *testing.T) {
	w := bins.StartWorker(t, testkit.WorkerOptions{Config: "health: {interval: 1s, canary: false}\n"})
	base := "http://" + w.HTTP
	nc, _ := testkit.Connect(t, w.NATSURL)
	ctx := testkit.Context(t, 2*time.Minute)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	registry, err := events.OpenRegistry(ctx, js, events.Config{})
	if err != nil {
		t.Fatal(err)
	}
	// read GETs path and decodes its JSON into v; false on any failure, to be polled.
	read := func(path string, v any) bool {
		code, body, err := get(base + path)
		return err == nil && code == http.StatusOK && json.Unmarshal([]byte(body), v) == nil
	}
	repoNamed := func(list web.RepoList, name string) (brr.RepoInfo, bool) {
		for _, r := range list.Repos {
			if r.Name == name {
				return r, true
			}
		}
		return brr.RepoInfo{}, false
	}

	var list web.RepoList
	testkit.Eventually(t, 20*time.Second, "GET /api/v1/repos to show local served by "+w.ID, func() bool {
		list = web.RepoList{}
		if !read("/api/v1/repos", &list) {
			return false
		}
		local, ok := repoNamed(list, "local")
		return ok && slices.Equal(local.ServedBy, []string{w.ID})
	})
	local, _ := repoNamed(list, "local")
	if local.ID == "" || local.Pool != brr.DefaultPool || local.Spec == nil || len(list.Repos) != 1 {
		t.Errorf("repos = %+v, want local alone, registered with its id and spec", list.Repos)
	}
	if list.Worker.ID != w.ID || len(list.Worker.Refused) != 0 {
		t.Errorf("worker = %+v, want %s refusing nothing", list.Worker, w.ID)
	}

	err = registry.Add(ctx, brr.RepoRegistration{Pool: brr.DefaultPool, Repo: "vault", Worker: "test", Time: time.Now().UTC(),
		Spec: &brr.RepoSpec{URL: "file://" + filepath.Join(t.TempDir(), "vault"), PasswordEnv: "VAULT_PW"}})
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 20*time.Second, "GET /api/v1/repos to show vault refused by "+w.ID+" in its answer and its heartbeat", func() bool {
		list = web.RepoList{}
		if !read("/api/v1/repos", &list) {
			return false
		}
		vault, ok := repoNamed(list, "vault")
		return ok && vault.RefusedBy[w.ID] != "" && len(list.Worker.Refused) == 1
	})
	vault, _ := repoNamed(list, "vault")
	if ref := list.Worker.Refused[0]; ref.Repo != "vault" || ref.Reason != brr.RefusedUnavailable || ref.Message != vault.RefusedBy[w.ID] || !strings.Contains(ref.Message, "VAULT_PW") {
		t.Errorf("refusal = %+v, want vault unavailable, naming VAULT_PW, as the heartbeat says (%q)", ref, vault.RefusedBy[w.ID])
	}
	if vault.ID != "" || len(vault.ServedBy) != 0 {
		t.Errorf("vault = %+v, want no id and nobody serving it", vault)
	}

	if err := registry.SetPolicy(ctx, brr.DefaultPool, "local", []string{"vault"}); err != nil {
		t.Fatal(err)
	}
	var info web.Info
	testkit.Eventually(t, 20*time.Second, "GET /api/v1/info to show the policy set in the registry", func() bool {
		info = web.Info{}
		return read("/api/v1/info", &info) && slices.Equal(info.Replicate["local"], []string{"vault"})
	})
	if !slices.Equal(info.Repos, []string{"local", "vault"}) {
		t.Errorf("info repos = %v, want local and vault (refused ones too)", info.Repos)
	}
	var repl web.ReplicationList
	if !read("/api/v1/replication", &repl) || len(repl.Pairs) != 1 || repl.Pairs[0].From != "local" || repl.Pairs[0].To != "vault" || !repl.Pairs[0].Configured {
		t.Errorf("replication = %+v, want local → vault, configured", repl.Pairs)
	}
}
