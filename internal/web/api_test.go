package web

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestJobLifecycle posts a backup, reads it back as the pool and this worker see it,
// and posts it again under the same id.
func TestJobLifecycle(t *testing.T) {
	f := setup(t, nil)
	r := f.post("/api/v1/jobs", `{"kind":"backup","id":"nightly-1","by":"ci","args":{"path":"`+f.src+`","tags":["api"]}}`)
	var acc JobAccepted
	decode(t, r, http.StatusAccepted, &acc)
	if acc.ID != "nightly-1" || acc.Kind != brr.KindBackup || acc.Pool != "default" || acc.Seq == 0 || acc.URL != "/api/v1/jobs/nightly-1" {
		t.Fatalf("accepted = %+v", acc)
	}
	if loc := r.header.Get("Location"); loc != acc.URL {
		t.Errorf("Location = %q, want %q", loc, acc.URL)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.client.Wait(ctx, "nightly-1", nil); err != nil {
		t.Fatalf("wait: %v", err)
	}

	var st JobState
	decode(t, f.get("/api/v1/jobs/nightly-1"), http.StatusOK, &st)
	if st.Event == nil || st.Event.Status != brr.StatusSucceeded || st.Event.Result.Backup == nil || st.Event.Result.Backup.Files != 3 {
		t.Fatalf("job event = %+v", st.Event)
	}
	if st.Record == nil || st.Record.Status != brr.StatusSucceeded || st.Record.Worker != "w-test" {
		t.Fatalf("job record = %+v", st.Record)
	}
	job, err := brr.DecodeJob(st.Record.Request)
	if err != nil {
		t.Fatalf("recorded request: %v", err)
	}
	if job.By != "ci" {
		t.Errorf("job By = %q, want ci", job.By)
	}

	var list JobList
	decode(t, f.get("/api/v1/jobs?kind=backup&status=succeeded"), http.StatusOK, &list)
	if len(list.Jobs) != 1 || list.Jobs[0].JobID != "nightly-1" {
		t.Fatalf("jobs = %+v", list.Jobs)
	}
	decode(t, f.get("/api/v1/jobs?kind=restore"), http.StatusOK, &list)
	if len(list.Jobs) != 0 {
		t.Fatalf("restore jobs = %+v, want none", list.Jobs)
	}

	r = f.post("/api/v1/jobs", `{"kind":"backup","id":"nightly-1","args":{"path":"`+f.src+`"}}`)
	var eb errorBody
	decode(t, r, http.StatusConflict, &eb)
	if !strings.Contains(eb.Error, "already published") {
		t.Errorf("409 says %q", eb.Error)
	}

	// A job without an id gets one, and By names the client.
	decode(t, f.post("/api/v1/jobs", `{"kind":"ping"}`), http.StatusAccepted, &acc)
	if err := brr.ValidateID(acc.ID); err != nil || acc.Kind != brr.KindPing {
		t.Fatalf("ping accepted = %+v (%v)", acc, err)
	}
	if _, err := f.client.Wait(ctx, acc.ID, nil); err != nil {
		t.Fatalf("wait ping: %v", err)
	}
	decode(t, f.get("/api/v1/jobs/"+acc.ID), http.StatusOK, &st)
	if job, err := brr.DecodeJob(st.Record.Request); err != nil || job.By != "http 127.0.0.1" {
		t.Errorf("ping By = %q (%v), want \"http 127.0.0.1\"", job.By, err)
	}
	// quiet leaves the ping (a health canary, as far as the list knows) out.
	decode(t, f.get("/api/v1/jobs"), http.StatusOK, &list)
	if len(list.Jobs) != 2 || list.Jobs[0].Kind != brr.KindPing {
		t.Fatalf("jobs = %+v, want the ping, then the backup", list.Jobs)
	}
	decode(t, f.get("/api/v1/jobs?quiet=true"), http.StatusOK, &list)
	if len(list.Jobs) != 1 || list.Jobs[0].JobID != "nightly-1" {
		t.Fatalf("quiet jobs = %+v, want only the backup", list.Jobs)
	}
}

// TestJobForAPoolNobodyServes: a job for a pool that no worker serves is refused with
// 503 and a reason, and not queued; once a worker serves the pool, the same job is.
func TestJobForAPoolNobodyServes(t *testing.T) {
	f := setup(t, nil)
	var eb errorBody
	decode(t, f.post("/api/v1/jobs", `{"kind":"ping","id":"lost-1","pool":"elsewhere"}`), http.StatusServiceUnavailable, &eb)
	if eb.Status != http.StatusServiceUnavailable || !strings.Contains(eb.Error, `no worker serves pool "elsewhere", so the job was not queued`) ||
		!strings.Contains(eb.Error, "start a brr-worker with \"elsewhere\" in its pools") || !strings.Contains(eb.Error, "this worker serves default") {
		t.Errorf("503 says %+v", eb)
	}
	js, err := jetstream.New(f.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t, 30*time.Second)
	stream, err := js.Stream(ctx, "BRR_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetLastMsgForSubject(ctx, "brr.jobs.elsewhere.>"); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("a job for pool elsewhere is in the stream (err %v), want none", err)
	}

	// Another worker serves the pool: the job is queued for it.
	testkit.Go(t, "api of elsewhere", func(ctx context.Context) error {
		return events.ServeAPI(ctx, f.nc, events.Config{Worker: "w-elsewhere", Pools: []string{"elsewhere"}}, noQueries{}, zerolog.Nop())
	})
	var acc JobAccepted
	testkit.Eventually(t, 10*time.Second, "the api of pool elsewhere", func() bool {
		_, err := f.client.Served(ctx, "elsewhere")
		return err == nil
	})
	decode(t, f.post("/api/v1/jobs", `{"kind":"ping","id":"lost-1","pool":"elsewhere"}`), http.StatusAccepted, &acc)
	if acc.Pool != "elsewhere" || acc.Duplicate {
		t.Errorf("accepted = %+v", acc)
	}
}

// noQueries lists nothing.
type noQueries struct{}

func (noQueries) Snapshots(context.Context, string, string) ([]brr.Snapshot, error) { return nil, nil }

// TestRepositoryReads lists snapshots, sources against their RPO and recovery points.
func TestRepositoryReads(t *testing.T) {
	src := newSource(t)
	f := setupIn(t, src, func(c *Config) {
		c.RPO = map[string]time.Duration{"/srv/never": time.Hour, src: time.Hour}
	})
	var snaps SnapshotList
	decode(t, f.get("/api/v1/snapshots"), http.StatusOK, &snaps)
	if len(snaps.Snapshots) != 0 {
		t.Fatalf("snapshots before any backup: %+v", snaps)
	}
	e := f.backup("b1")
	decode(t, f.get("/api/v1/snapshots?repo=local"), http.StatusOK, &snaps)
	if snaps.Repo != "local" || len(snaps.Snapshots) != 1 || snaps.Snapshots[0].ID != e.Result.Backup.Snapshot {
		t.Fatalf("snapshots = %+v, want the one of %s", snaps, e.Result.Backup.Snapshot)
	}
	decode(t, f.get("/api/v1/snapshots?source=/srv/other"), http.StatusOK, &snaps)
	if len(snaps.Snapshots) != 0 {
		t.Fatalf("snapshots of /srv/other = %+v", snaps.Snapshots)
	}

	var srcs SourceList
	decode(t, f.get("/api/v1/sources"), http.StatusOK, &srcs)
	if len(srcs.Sources) != 2 {
		t.Fatalf("sources = %+v, want the backed-up one and /srv/never", srcs.Sources)
	}
	for _, s := range srcs.Sources {
		switch s.Source {
		case "/srv/never":
			if s.Status != brr.HealthCritical || s.Snapshots != 0 || s.Latest != nil {
				t.Errorf("source without snapshots = %+v, want critical", s)
			}
		case f.src:
			if s.Status != brr.HealthOK || s.Snapshots != 1 || s.Repo != "local" || s.RPOSeconds != 3600 || s.AgeSeconds < 0 || s.AgeSeconds > 600 {
				t.Errorf("source %s = %+v, want ok, 1 snapshot", f.src, s)
			}
		default:
			t.Errorf("unexpected source %+v", s)
		}
	}

	var cps brr.CheckpointsReply
	decode(t, f.get("/api/v1/checkpoints"), http.StatusOK, &cps)
	if len(cps.Points) != 0 {
		t.Fatalf("checkpoints before any: %+v", cps.Points)
	}
	var acc JobAccepted
	decode(t, f.post("/api/v1/jobs", `{"kind":"checkpoint","args":{"snapshot":"latest","label":"before-upgrade","reason":"api test"}}`), http.StatusAccepted, &acc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.client.Wait(ctx, acc.ID, nil); err != nil {
		t.Fatalf("checkpoint job: %v", err)
	}
	decode(t, f.get("/api/v1/checkpoints?repo=local"), http.StatusOK, &cps)
	if len(cps.Points) != 1 || cps.Points[0].Label != "before-upgrade" || cps.Points[0].Snapshot != e.Result.Backup.Snapshot {
		t.Fatalf("checkpoints = %+v", cps.Points)
	}
}

// TestEventReads reads stored events with filters, and the replication and queue views.
func TestEventReads(t *testing.T) {
	f := setup(t, func(c *Config) {
		c.Replicate = func() map[string][]string { return map[string][]string{"local": {"offsite"}} }
	})
	e := f.backup("ev-1")
	var list EventList
	decode(t, f.get("/api/v1/events?type=job&kind=backup&status=succeeded"), http.StatusOK, &list)
	if len(list.Events) != 1 || list.Events[0].JobID != "ev-1" {
		t.Fatalf("succeeded backup events = %+v", list.Events)
	}
	decode(t, f.get("/api/v1/events?job=ev-1"), http.StatusOK, &list)
	var statuses []string
	for _, ev := range list.Events {
		statuses = append(statuses, string(ev.Type)+"."+string(ev.Status))
	}
	if got := strings.Join(statuses, " "); !strings.Contains(got, "job.started") || !strings.Contains(got, "job.succeeded") || !strings.Contains(got, "snapshot.committed") {
		t.Fatalf("events of job ev-1: %s", got)
	}
	decode(t, f.get("/api/v1/events?type=snapshot&since=1h&limit=5"), http.StatusOK, &list)
	if len(list.Events) != 1 || list.Events[0].Snapshot != e.Result.Backup.Snapshot {
		t.Fatalf("snapshot events = %+v", list.Events)
	}
	decode(t, f.get("/api/v1/events?since=2000-01-01T00:00:00Z&limit=2"), http.StatusOK, &list)
	if len(list.Events) != 2 {
		t.Fatalf("limit=2 gave %d events", len(list.Events))
	}
	// The fixture's heartbeat is there, and quiet leaves it out.
	noisy := func(path string) int {
		decode(t, f.get(path), http.StatusOK, &list)
		n := 0
		for _, e := range list.Events {
			if noise(e) {
				n++
			}
		}
		return n
	}
	if n := noisy("/api/v1/events"); n == 0 {
		t.Fatalf("no heartbeat among the events")
	}
	if n := noisy("/api/v1/events?quiet=true"); n != 0 || len(list.Events) == 0 {
		t.Fatalf("quiet events: %d of %d are noise", n, len(list.Events))
	}

	var repl ReplicationList
	decode(t, f.get("/api/v1/replication"), http.StatusOK, &repl)
	if len(repl.Pairs) != 1 || repl.Pairs[0].From != "local" || repl.Pairs[0].To != "offsite" || !repl.Pairs[0].Configured || repl.Pairs[0].Status != "" {
		t.Fatalf("replication = %+v, want local→offsite configured, never run", repl.Pairs)
	}

	var q QueueList
	decode(t, f.get("/api/v1/queue"), http.StatusOK, &q)
	if len(q.Pools) != 1 || q.Pools[0].Pool != "default" || q.Pools[0].Pending != 0 {
		t.Fatalf("queue = %+v", q.Pools)
	}

	var info Info
	decode(t, f.get("/api/v1/info"), http.StatusOK, &info)
	if info.Worker != "w-test" || info.Version != "v-test" || !info.Mutations || info.ProtectReads || !info.Health || len(info.Repos) != 1 {
		t.Fatalf("info = %+v", info)
	}
}

// TestStream follows the live feed while jobs run: it gets the events that match its
// filter, in order, and keep-alive comments between them.
func TestStream(t *testing.T) {
	f := setup(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.url+"/api/v1/events/stream?type=job&kind=ping", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, ct)
	}
	lines := bufio.NewScanner(res.Body)
	next := func() string {
		if !lines.Scan() {
			t.Fatalf("stream ended: %v", lines.Err())
		}
		return lines.Text()
	}
	if l := next(); l != "retry: 3000" {
		t.Fatalf("first line %q", l)
	}
	// The subscription is in place once the stream answered; a backup's events are not
	// for this filter, the ping's are.
	f.backup("not-for-the-stream")
	var acc JobAccepted
	decode(t, f.post("/api/v1/jobs", `{"kind":"ping","id":"streamed"}`), http.StatusAccepted, &acc)
	var seen []brr.Status
	keepAlives := 0
	for len(seen) == 0 || !seen[len(seen)-1].Final() {
		l := next()
		switch {
		case l == ": keep-alive":
			keepAlives++
		case strings.HasPrefix(l, "data: "):
			e, err := brr.DecodeEvent([]byte(strings.TrimPrefix(l, "data: ")))
			if err != nil {
				t.Fatalf("data line %q: %v", l, err)
			}
			if e.JobID != "streamed" || e.Kind != brr.KindPing {
				t.Fatalf("stream for kind=ping sent %s %s %s", e.Type, e.Kind, e.JobID)
			}
			seen = append(seen, e.Status)
		}
	}
	// A job that gets a slot at once is announced started, not accepted (docs/events.md).
	if seen[len(seen)-1] != brr.StatusSucceeded || seen[0] != brr.StatusStarted {
		t.Fatalf("ping statuses %v, want started … succeeded", seen)
	}
	for keepAlives == 0 { // KeepAlive is 100 ms in the fixture
		if next() == ": keep-alive" {
			keepAlives++
		}
	}
}

// TestHubDropsSlowClients fills a client's buffer: the client is dropped (its frames
// channel closes) instead of holding up the others.
func TestHubDropsSlowClients(t *testing.T) {
	h := newHub()
	slow := &streamClient{filter: "brr.events.>", frames: make(chan []byte, streamBuffer)}
	other := &streamClient{filter: "brr.events.health.>", frames: make(chan []byte, streamBuffer)}
	for _, c := range []*streamClient{slow, other} {
		if err := h.add(c); err != nil {
			t.Fatal(err)
		}
	}
	e := &brr.Event{V: 1, ID: "e1", Type: brr.EventJob, Status: brr.StatusStarted}
	for i := 0; i <= streamBuffer; i++ {
		h.publish("brr.events.job.ping.started", e, frame(e.ID, []byte("{}")))
	}
	n := 0
	for range slow.frames {
		n++
	}
	if n != streamBuffer {
		t.Fatalf("slow client got %d frames before it was dropped, want %d", n, streamBuffer)
	}
	if len(other.frames) != 0 {
		t.Fatalf("health client got %d job frames", len(other.frames))
	}
	if _, ok := h.clients[other]; !ok || len(h.clients) != 1 {
		t.Fatalf("clients left: %d, want only the health client", len(h.clients))
	}
	for i := 0; i < maxStreams-1; i++ {
		if err := h.add(&streamClient{frames: make(chan []byte, 1)}); err != nil {
			t.Fatalf("client %d: %v", i+2, err)
		}
	}
	if err := h.add(&streamClient{}); err == nil {
		t.Fatalf("client %d accepted, want at most %d", maxStreams+1, maxStreams)
	}
}

func TestSubjectMatch(t *testing.T) {
	for _, tc := range []struct {
		filter, subject string
		want            bool
	}{
		{"brr.events.>", "brr.events.job.ping.started", true},
		{"brr.events.>", "brr.events", false},
		{"brr.events.job.*.succeeded", "brr.events.job.backup.succeeded", true},
		{"brr.events.job.*.succeeded", "brr.events.job.backup.failed", false},
		{"brr.events.job.backup.>", "brr.events.job.backup.progress", true},
		{"brr.events.job.backup.>", "brr.events.job.backups.progress", false},
		{"brr.events.snapshot.committed", "brr.events.snapshot.committed", true},
		{"brr.events.snapshot.committed", "brr.events.snapshot.committed.x", false},
		{"brr.events.snapshot.committed.x", "brr.events.snapshot.committed", false},
		{"brr.events.health.*", "brr.events.health.rpo", true},
	} {
		if got := subjectMatch(tc.filter, tc.subject); got != tc.want {
			t.Errorf("subjectMatch(%q, %q) = %v, want %v", tc.filter, tc.subject, got, tc.want)
		}
	}
}

// TestDashboardFiles serves the page and its files with a policy that allows only
// them.
func TestDashboardFiles(t *testing.T) {
	f := setup(t, func(c *Config) { c.ProtectReads = true })
	for path, want := range map[string]string{
		"/":                    "text/html",
		"/static/app.js":       "text/javascript",
		"/static/style.css":    "text/css",
		"/static/favicon.svg":  "image/svg+xml",
		"/static/../server.go": "",
		"/static/nothing.js":   "",
	} {
		r := f.do("GET", path, "", nil) // the page itself needs no key
		if want == "" {
			if r.status != http.StatusNotFound {
				t.Errorf("GET %s: %d, want 404", path, r.status)
			}
			continue
		}
		if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), want) {
			t.Errorf("GET %s: %d %s, want 200 %s", path, r.status, r.header.Get("Content-Type"), want)
		}
		if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
	}
	page := f.do("GET", "/", "", nil).String()
	for _, want := range []string{`src="/static/app.js"`, `id="workers-body"`, `id="jobs-body"`, `id="repos-body"`, `name="viewport"`} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %s", want)
		}
	}
	// The script is split in several files, each loaded by the page: every one is served.
	scripts := regexp.MustCompile(`<script src="(/static/[a-z]+\.js)" defer></script>`).FindAllStringSubmatch(page, -1)
	if len(scripts) < 6 {
		t.Errorf("the page loads %d scripts, want app.js, jobs.js, panels.js, live.js, browse.js and actions.js", len(scripts))
	}
	for _, m := range scripts {
		if r := f.do("GET", m[1], "", nil); r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/javascript") {
			t.Errorf("GET %s (the page loads it): %d %s", m[1], r.status, r.header.Get("Content-Type"))
		}
	}
}

// TestErrorsAreJSON checks the shape of every error answer on a few of them.
func TestErrorsAreJSON(t *testing.T) {
	f := setup(t, nil)
	r := f.do("GET", "/api/v1/jobs/nosuch", "", nil)
	var body map[string]any
	if err := json.Unmarshal(r.body, &body); err != nil || len(body) != 2 || body["status"] != float64(404) || body["error"] == "" {
		t.Fatalf("error body %s (%v), want {error, status}", r.body, err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("error Content-Type %q", ct)
	}
}

// TestHealthAndWorkers reads the pool's health and workers from the health monitor,
// which the fixture fed one heartbeat, and gets 503 from a worker without a monitor.
func TestHealthAndWorkers(t *testing.T) {
	f := setup(t, nil)
	var workers WorkerList
	testkit.WaitFor(10*time.Second, func() bool {
		decode(t, f.get("/api/v1/workers"), http.StatusOK, &workers)
		return len(workers.Workers) > 0
	})
	if len(workers.Workers) != 1 || workers.Workers[0].ID != "w-test" || workers.Workers[0].Version != "v-test" {
		t.Fatalf("workers = %+v, want the fixture's heartbeat", workers.Workers)
	}
	var rep brr.HealthReport
	decode(t, f.get("/api/v1/health"), http.StatusOK, &rep)
	if rep.Status != brr.HealthOK || len(rep.Workers) != 1 || rep.Checks == nil {
		t.Fatalf("health = %+v", rep)
	}

	f = setup(t, func(c *Config) { c.Health = nil })
	for _, path := range []string{"/api/v1/health", "/api/v1/workers"} {
		var eb errorBody
		decode(t, f.get(path), http.StatusServiceUnavailable, &eb)
		if !strings.Contains(eb.Error, "health monitor is not running") {
			t.Errorf("%s without a monitor: %q", path, eb.Error)
		}
	}
	var info Info
	decode(t, f.get("/api/v1/info"), http.StatusOK, &info)
	if info.Health {
		t.Errorf("info.health = true without a monitor")
	}
}
