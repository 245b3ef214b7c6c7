package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/notify"
	"github.com/brr-dev/brr/internal/testkit"
)

// hookReceiver is a webhook receiver on loopback that checks signatures and records the
// job ids of the events it accepted, in order; it fails every request while down.
type hookReceiver struct {
	*testkit.HTTPServer
	secret []byte

	mu       sync.Mutex
	down     bool
	requests int
	badSigs  int
	jobs     []string
}

func newHookReceiver(t *testing.T, secret []byte) *hookReceiver {
	r := &hookReceiver{secret: secret}
	r.HTTPServer = testkit.StartHTTPServer(t, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		if !notify.Verify(r.secret, req.Header.Get(notify.HeaderTimestamp), req.Header.Get(notify.HeaderSignature), body, time.Now(), 5*time.Minute) {
			r.badSigs++
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		if r.down {
			http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		ev, err := brr.DecodeEvent(body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		r.jobs = append(r.jobs, ev.JobID)
		w.WriteHeader(http.StatusOK)
	}))
	return r
}

func (r *hookReceiver) state() (jobs []string, requests, badSigs int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.jobs), r.requests, r.badSigs
}

func (r *hookReceiver) setDown(down bool) {
	r.mu.Lock()
	r.down = down
	r.mu.Unlock()
}

// TestNotifyWorkers runs the notify: config through real workers: a worker killed while
// the receiver is down and notifications queue is started again and delivers them; a
// second worker then shares the target's consumer; every notification arrives once,
// signed, in the order of the event stream.
func TestNotifyWorkers(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "hook.secret")
	testkit.WriteFile(t, secret, []byte("a shared secret\n"), 0o600)
	r := newHookReceiver(t, []byte("a shared secret"))
	r.setDown(true)
	cfg := fmt.Sprintf("health: {canary: false}\nnotify:\n  - {url: %q, events: [brr.events.job.ping.succeeded], secret_file: %s}\n", r.URL+"/brr", secret)
	w1 := bins.StartWorker(t, testkit.WorkerOptions{Config: cfg})
	_, c := testkit.Connect(t, w1.NATSURL)
	ctx := testkit.Context(t, 3*time.Minute)
	pings := func(n int) {
		t.Helper()
		for range n {
			res, err := c.Publish(ctx, brr.PingJob{})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Wait(ctx, res.ID, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	pings(5)
	testkit.Eventually(t, 60*time.Second, "the receiver to refuse the first notification twice", func() bool {
		_, n, _ := r.state()
		return n >= 2
	})
	w1.Kill()
	r.Forget(t)
	r.setDown(false)
	w1.Start()
	w2 := bins.StartWorker(t, testkit.WorkerOptions{NATS: w1.NATSURL, Config: cfg})
	_, c = testkit.Connect(t, w1.NATSURL)
	pings(5)

	want := streamJobs(t, w1.NATSURL, 10)
	var got []string
	if !testkit.WaitFor(90*time.Second, func() bool { got, _, _ = r.state(); return len(got) >= len(want) }) {
		t.Fatalf("receiver has %d notifications, want %d", len(got), len(want))
	}
	// Each worker counts what it sent: together, every notification after the restart
	// (counted a moment after the receiver answered).
	var sent float64
	testkit.WaitFor(30*time.Second, func() bool {
		sent = notificationsSent(t, w1.HTTP) + notificationsSent(t, w2.HTTP)
		return sent >= 10
	})
	if sent != 10 {
		t.Fatalf("brr_notifications_total{result=sent} adds up to %g over the workers, want 10", sent)
	}
	got, _, bad := r.state()
	if !slices.Equal(got, want) {
		t.Fatalf("receiver got jobs %v, want %v (each once, in the stream's order)", got, want)
	}
	if bad != 0 {
		t.Fatalf("%d requests with a bad signature", bad)
	}
}

// streamJobs reads the job ids of the first n ping.succeeded events of the stream.
func streamJobs(t *testing.T, url string, n int) []string {
	t.Helper()
	nc, _ := testkit.Connect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t, 30*time.Second)
	cons, err := js.OrderedConsumer(ctx, "BRR_EVENTS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"brr.events.job.ping.succeeded"}})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for len(ids) < n {
		msg, err := cons.Next(jetstream.FetchMaxWait(10 * time.Second))
		if err != nil {
			t.Fatalf("read event %d of the stream: %v", len(ids), err)
		}
		ev, err := brr.DecodeEvent(msg.Data())
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, ev.JobID)
	}
	return ids
}

func notificationsSent(t *testing.T, httpAddr string) float64 {
	t.Helper()
	code, body, err := get("http://" + httpAddr + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics = %d, %v", code, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	m := sample(families, "brr_notifications_total", map[string]string{"result": "sent"})
	if m == nil {
		t.Fatalf("no brr_notifications_total{result=sent} in /metrics")
	}
	return value(m)
}

// TestNotifyConfigRefused: a bad notify: entry stops the worker at start with a message
// that names the key and says what to do.
func TestNotifyConfigRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name, yaml string
		code       int
		want       string
	}{
		{"missing secret file", `notify: [{url: "https://hooks.example.com/brr", events: [brr.events.job.*.dead], secret_file: ` + dir + `/none}]`, 1,
			"notify[0].secret_file " + dir + "/none does not exist; put the webhook's shared secret in it"},
		{"bad url", `notify: [{url: "hooks.example.com/brr", events: [brr.events.job.*.dead]}]`, 2,
			`notify[0].url: "hooks.example.com/…": want an http:// or https:// URL such as https://hooks.example.com/brr`},
		{"unknown shape", `notify: [{url: "https://hooks.example.com/brr", events: [brr.events.job.*.dead], shape: teams}]`, 2,
			`notify[0].shape: "teams": unknown shape (known: brr, slack, ntfy)`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := startWorkerProc(t, "", "--config", writeConfig(t, tt.yaml))
			if code := p.exited(t, 60*time.Second); code != tt.code {
				t.Fatalf("exit code %d, want %d; output:\n%s", code, tt.code, p.out.String())
			}
			if out := p.out.String(); !strings.Contains(out, tt.want) {
				t.Fatalf("output does not say %q:\n%s", tt.want, out)
			}
		})
	}
}

func TestNotifyConfig(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "s")
	if err := os.WriteFile(secret, []byte("k\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := parse(t, []string{"--config", writeConfig(t, `
notify:
  - {url: "https://hooks.example.com/brr", events: ["brr.events.job.*.dead", "brr.events.health.>"], secret_file: `+secret+`}
  - name: chat
    url: https://hooks.slack.com/services/T0/B0/XXXX
    events: [brr.events.>]
    min_severity: warning
    shape: slack
    timeout: 5s
    max_age: 1h
    queue: 50
`)}, nil)
	if err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	targets, err := m.Config.notifyTargets()
	if err != nil {
		t.Fatal(err)
	}
	if len(targets) != 2 || string(targets[0].Secret) != "k" || targets[0].Shape != notify.ShapeBrr ||
		targets[1].Name != "chat" || targets[1].MinSeverity != notify.Warning || targets[1].Shape != notify.ShapeSlack ||
		targets[1].Timeout != 5*time.Second || targets[1].MaxAge != time.Hour || targets[1].Queue != 50 {
		t.Fatalf("targets = %+v", targets)
	}

	for _, tt := range []struct{ yaml, want string }{
		{`notify: [{events: [brr.events.>]}]`, "notify[0].url: set the URL to post to"},
		{`notify: [{url: "https://h/x"}]`, "notify[0].events: name at least one subject filter, such as brr.events.job.*.dead"},
		{`notify: [{url: "https://h/x", events: [brr.jobs.>]}]`, `notify[0].events: "brr.jobs.>": want a subject filter of the event stream, starting with brr.events.`},
		{`notify: [{url: "https://h/x", events: [brr.events.>, brr.events.job.>]}]`, `notify[0].events: "brr.events.job.>" overlaps "brr.events.>"`},
		{`notify: [{url: "https://h/x", events: [brr.events.>], min_severity: loud}]`, `notify[0].min_severity: "loud": must be one of info, warning, critical`},
		{`notify: [{url: "https://h/x", events: [brr.events.>], secret_file: hook.secret}]`, `notify[0].secret_file: must be an absolute path, got "hook.secret"`},
		{`notify: [{url: "https://h/x", events: [brr.events.>], queue: -1}]`, "notify[0]: timeout, max_age and queue must not be negative"},
		{`notify: [{url: "https://h/x", events: [brr.events.>]}, {url: "https://h/x", events: [brr.events.>]}]`, "notify[1]: notify[0] has the same name (or URL, without names)"},
		{`notify: [{url: "https://h/x", events: [brr.events.>], color: red}]`, `unknown key "notify[0].color"`},
		{"prefix: acme\nnotify: [{url: \"https://h/x\", events: [brr.events.>]}]", `starting with acme.events.`},
	} {
		if _, err := parse(t, []string{"--config", writeConfig(t, tt.yaml)}, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.yaml, err, tt.want)
		}
	}
}

// TestNotifyRedacted: `brr-worker config` shows a webhook's host, never its token.
func TestNotifyRedacted(t *testing.T) {
	cfg := Config{Notify: []NotifyConfig{{URL: "https://hooks.slack.com/services/T0/B0/s3cr3t", Events: []string{"brr.events.>"}}}}
	out, err := cfg.YAML()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), "s3cr3t") || !strings.Contains(string(out), "url: https://hooks.slack.com/…") {
		t.Fatalf("config YAML:\n%s", out)
	}
	if cfg.Notify[0].URL != "https://hooks.slack.com/services/T0/B0/s3cr3t" {
		t.Fatalf("Redacted changed the config itself: %q", cfg.Notify[0].URL)
	}
}
