package web

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/natstest"
)

// statusOnly sends a request and returns the status and headers without reading the
// body, so that it works on the live event stream too.
func (f *fixture) statusOnly(method, path, key, body string) (int, http.Header, string) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd *strings.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, f.url+path, nil)
	if rd != nil {
		req, err = http.NewRequestWithContext(ctx, method, f.url+path, rd)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	var msg string
	if res.StatusCode >= 400 {
		var eb errorBody
		if err := json.NewDecoder(res.Body).Decode(&eb); err != nil {
			f.t.Fatalf("%s %s: error answer %d is not JSON: %v", method, path, res.StatusCode, err)
		}
		if eb.Status != res.StatusCode || eb.Error == "" {
			f.t.Fatalf("%s %s: error body %+v does not match status %d", method, path, eb, res.StatusCode)
		}
		msg = eb.Error
	}
	return res.StatusCode, res.Header, msg
}

// TestAuthMatrix sends every route of the API with no key, a wrong key and the right
// key, with reads protected and not, to a worker that has a key, and checks each
// answer's status; then the same to a worker without a key, which takes no jobs at all.
func TestAuthMatrix(t *testing.T) {
	const wrongKey = "not-the-key-but-long-enough"
	for _, protect := range []bool{false, true} {
		t.Run(fmt.Sprintf("protect_reads=%v", protect), func(t *testing.T) {
			f := setup(t, func(c *Config) { c.ProtectReads = protect })
			done := f.backup("matrix-job")
			n := 0
			for _, rt := range f.srv.routes() {
				path := browsePath(rt.path, done.Result.Backup.Snapshot)
				path = strings.ReplaceAll(path, "{id}", done.JobID)
				for _, k := range []struct{ name, key string }{{"none", ""}, {"wrong", wrongKey}, {"right", testKey}} {
					body := ""
					if rt.method == "POST" {
						n++
						body = fmt.Sprintf(`{"kind":"ping","id":"matrix-%v-%d"}`, protect, n)
					}
					got, hdr, msg := f.statusOnly(rt.method, path, k.key, body)
					want := http.StatusOK
					switch {
					case k.key != testKey && (rt.access == mutate || protect):
						want = http.StatusUnauthorized
					case strings.HasPrefix(rt.path, "/api/v1/dlq/"):
						want = http.StatusNotFound // past the key check; the job is not dead
					case rt.method == "POST":
						want = http.StatusAccepted
					case rt.method == "DELETE" && rt.path == "/api/v1/jobs/{id}":
						want = http.StatusConflict // the job has ended: nothing to cancel
					}
					if got != want {
						t.Errorf("%s %s with %s key: status %d, want %d (%s)", rt.method, path, k.name, got, want, msg)
					}
					if want == http.StatusUnauthorized {
						if h := hdr.Get("WWW-Authenticate"); !strings.HasPrefix(h, "Bearer") {
							t.Errorf("%s %s with %s key: WWW-Authenticate %q, want Bearer", rt.method, path, k.name, h)
						}
						if strings.Contains(msg, wrongKey) {
							t.Errorf("%s %s: the error echoes the key sent: %q", rt.method, path, msg)
						}
					}
				}
			}
			if logs := f.logs.String(); strings.Contains(logs, testKey) || strings.Contains(logs, wrongKey) {
				t.Errorf("a key appears in the logs:\n%s", logs)
			}
			if !strings.Contains(f.logs.String(), `"status":401`) {
				t.Errorf("the logs have no line for the refused requests:\n%s", f.logs.String())
			}
		})
	}

	t.Run("no key configured", func(t *testing.T) {
		f := setup(t, func(c *Config) { c.APIKey = nil })
		for _, key := range []string{"", wrongKey, testKey} {
			got, _, msg := f.statusOnly("POST", "/api/v1/jobs", key, `{"kind":"ping"}`)
			if got != http.StatusForbidden || !strings.Contains(msg, "api_key_file") {
				t.Errorf("POST /api/v1/jobs with key %q: %d %q, want 403 naming http.api_key_file", key, got, msg)
			}
		}
		if got, _, msg := f.statusOnly("GET", "/api/v1/info", "", ""); got != http.StatusOK {
			t.Errorf("GET /api/v1/info: %d %s, want 200", got, msg)
		}
		if got, _, msg := f.statusOnly("DELETE", "/api/v1/jobs/some-job", testKey, ""); got != http.StatusForbidden {
			t.Errorf("DELETE /api/v1/jobs/some-job: %d %q, want 403", got, msg)
		}
	})

	t.Run("protect_reads without a key", func(t *testing.T) {
		_, err := New(Config{NC: natstest.Start(t).Connect(t), ProtectReads: true})
		if err == nil || !strings.Contains(err.Error(), "api_key_file") {
			t.Fatalf("New with ProtectReads and no key: %v, want an error naming api_key_file", err)
		}
	})
}

// TestBearerParsing checks the forms of the Authorization header that are and are not
// accepted.
func TestBearerParsing(t *testing.T) {
	f := setup(t, func(c *Config) { c.ProtectReads = true })
	for _, tc := range []struct {
		header string
		want   int
	}{
		{"Bearer " + testKey, http.StatusOK},
		{"bearer " + testKey, http.StatusOK},
		{"Bearer  " + testKey + " ", http.StatusOK},
		{"Basic " + testKey, http.StatusUnauthorized},
		{testKey, http.StatusUnauthorized},
		{"Bearer " + testKey + "x", http.StatusUnauthorized},
		{"Bearer " + testKey[:len(testKey)-1], http.StatusUnauthorized},
		{"Bearer", http.StatusUnauthorized},
	} {
		req, _ := http.NewRequest("GET", f.url+"/api/v1/info", nil)
		req.Header.Set("Authorization", tc.header)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.want {
			t.Errorf("Authorization %q: status %d, want %d", tc.header, res.StatusCode, tc.want)
		}
	}
}

// TestRateLimit runs out a client's buckets: reads and jobs have their own, a 429 says
// when to come back, and keys are checked only after the limit, so guessing is slowed
// too. The clock stands still, so no token comes back during the test.
func TestRateLimit(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	f := setup(t, func(c *Config) {
		c.Now = func() time.Time { return now }
		c.Limits = Limits{Reads: Rate{PerSecond: 0.5, Burst: 3}, Writes: Rate{PerSecond: 0.25, Burst: 2}}
	})
	for i := 0; i < 3; i++ {
		if got, _, msg := f.statusOnly("GET", "/api/v1/info", "", ""); got != http.StatusOK {
			t.Fatalf("read %d: %d %s, want 200", i+1, got, msg)
		}
	}
	got, hdr, msg := f.statusOnly("GET", "/api/v1/info", "", "")
	if got != http.StatusTooManyRequests {
		t.Fatalf("4th read: %d %s, want 429", got, msg)
	}
	if ra := hdr.Get("Retry-After"); ra != "2" {
		t.Errorf("Retry-After = %q, want 2 (one token at 0.5/s)", ra)
	}
	// Jobs have their own bucket: two go through, wrong key or not, then none.
	if got, _, msg := f.statusOnly("POST", "/api/v1/jobs", "wrong-key-guess-1234", `{"kind":"ping"}`); got != http.StatusUnauthorized {
		t.Fatalf("1st post, wrong key: %d %s, want 401", got, msg)
	}
	if got, _, msg := f.statusOnly("POST", "/api/v1/jobs", testKey, `{"kind":"ping"}`); got != http.StatusAccepted {
		t.Fatalf("2nd post: %d %s, want 202", got, msg)
	}
	got, hdr, msg = f.statusOnly("POST", "/api/v1/jobs", testKey, `{"kind":"ping"}`)
	if got != http.StatusTooManyRequests || hdr.Get("Retry-After") != "4" {
		t.Fatalf("3rd post: %d, Retry-After %q (%s), want 429 after 4 s", got, hdr.Get("Retry-After"), msg)
	}
	// Time passes: a token is back.
	now = now.Add(4 * time.Second)
	if got, _, msg := f.statusOnly("POST", "/api/v1/jobs", testKey, `{"kind":"ping"}`); got != http.StatusAccepted {
		t.Fatalf("post after 4 s: %d %s, want 202", got, msg)
	}
}

// TestLimiterForgets checks that the limiter's memory of clients stays bounded and that
// forgetting a client never hands it more than a full bucket.
func TestLimiterForgets(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	l := newLimiter(Rate{PerSecond: 1, Burst: 2}, func() time.Time { return now })
	for i := 0; i < maxClients+10; i++ {
		if ok, _ := l.allow(fmt.Sprintf("10.0.%d.%d", i/256, i%256)); !ok {
			t.Fatalf("client %d: first request refused", i)
		}
	}
	if n := len(l.buckets); n > maxClients {
		t.Fatalf("%d buckets kept, want at most %d", n, maxClients)
	}
	l.allow("busy")
	l.allow("busy")
	if ok, wait := l.allow("busy"); ok || wait != time.Second {
		t.Fatalf("third request of a burst of 2: ok=%v wait=%s, want refused for 1s", ok, wait)
	}
}

func TestBadRequests(t *testing.T) {
	f := setup(t, nil)
	big := `{"kind":"backup","args":{"path":"/` + strings.Repeat("a", MaxBodySize) + `"}}`
	for _, tc := range []struct {
		name, method, path, body string
		want                     int
		says                     string
	}{
		{"empty body", "POST", "/api/v1/jobs", "", 400, "empty"},
		{"not JSON", "POST", "/api/v1/jobs", "backup please", 400, "not a valid job request"},
		{"unknown field", "POST", "/api/v1/jobs", `{"kind":"ping","color":"red"}`, 400, "color"},
		{"unknown arg", "POST", "/api/v1/jobs", `{"kind":"backup","args":{"path":"/srv","pth":"x"}}`, 400, "pth"},
		{"trailing data", "POST", "/api/v1/jobs", `{"kind":"ping"} {}`, 400, "more data"},
		{"no kind", "POST", "/api/v1/jobs", `{"args":{}}`, 400, "kind"},
		{"unknown kind", "POST", "/api/v1/jobs", `{"kind":"frobnicate"}`, 400, "frobnicate"},
		{"relative path", "POST", "/api/v1/jobs", `{"kind":"backup","args":{"path":"srv/app"}}`, 400, "absolute"},
		{"bad id", "POST", "/api/v1/jobs", `{"kind":"ping","id":"no spaces"}`, 400, "job id"},
		{"bad pool", "POST", "/api/v1/jobs", `{"kind":"ping","pool":"a.b"}`, 400, "pool"},
		{"too large", "POST", "/api/v1/jobs", big, 413, "larger than"},
		{"unknown job", "GET", "/api/v1/jobs/nosuchjob", "", 404, "not found"},
		{"bad job id", "GET", "/api/v1/jobs/bad%20id", "", 400, "job id"},
		{"bad limit", "GET", "/api/v1/jobs?limit=0", "", 400, "limit"},
		{"bad kind filter", "GET", "/api/v1/jobs?kind=nope", "", 400, "kind"},
		{"bad quiet", "GET", "/api/v1/events?quiet=yes", "", 400, "quiet"},
		{"unknown repo", "GET", "/api/v1/snapshots?repo=offsite", "", 404, "not configured"},
		{"bad repo name", "GET", "/api/v1/checkpoints?repo=a.b", "", 400, "repo name"},
		{"bad event type", "GET", "/api/v1/events?type=weather", "", 400, "type"},
		{"status without type", "GET", "/api/v1/events?status=failed", "", 400, "needs a type"},
		{"kind on snapshot events", "GET", "/api/v1/events?type=snapshot&kind=backup", "", 400, "kind goes with type job"},
		{"bad since", "GET", "/api/v1/events?since=yesterday", "", 400, "since"},
		{"bad window", "GET", "/api/v1/analytics?window=forever", "", 400, "window"},
		{"window too long", "GET", "/api/v1/analytics?window=365d", "", 400, "1m to 90d"},
		{"bad grouping", "GET", "/api/v1/analytics?by=weekday", "", 400, "by"},
		{"hours over a month", "GET", "/api/v1/analytics?window=30d&by=hour", "", 400, "by=day"},
		{"unknown route", "GET", "/api/v1/nothing", "", 404, "docs/api.md"},
		{"wrong method", "DELETE", "/api/v1/jobs", "", 405, "GET or POST"},
	} {
		got, _, msg := f.statusOnly(tc.method, tc.path, testKey, tc.body)
		if got != tc.want || !strings.Contains(msg, tc.says) {
			t.Errorf("%s: %s %s: %d %q, want %d saying %q", tc.name, tc.method, tc.path, got, msg, tc.want, tc.says)
		}
	}
	if _, hdr, _ := f.statusOnly("DELETE", "/api/v1/jobs", testKey, ""); hdr.Get("Allow") != "GET, POST" {
		t.Errorf("405 Allow = %q, want \"GET, POST\"", hdr.Get("Allow"))
	}
}

// browsePath is path, when it browses a snapshot, for snapshot (and the fixture's file
// /fa where a path is needed).
func browsePath(path, snapshot string) string {
	if !strings.HasPrefix(path, "/api/v1/snapshots/{") {
		return path
	}
	for _, p := range []string{"{id}", "{a}", "{b}"} {
		path = strings.ReplaceAll(path, p, snapshot)
	}
	if strings.HasSuffix(path, "/file") {
		path += "?path=/fa"
	}
	return path
}
