package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// stubWorker plays a brr-worker of pool "default" as the contract describes it: it takes
// jobs off BRR_JOBS, writes lifecycle events to BRR_EVENTS and the latest one to the
// BRR_RESULTS bucket, and dead-letters failures. A backup of a path under /fail fails
// for good until fixed is set, and so does every failPingsEvery-th ping when that is set;
// everything else succeeds.
type stubWorker struct {
	js   jetstream.JetStream
	kv   jetstream.KeyValue
	subj brr.Subjects

	fixed          atomic.Bool
	failPingsEvery atomic.Int64
	pings          atomic.Int64

	mu   sync.Mutex
	jobs map[string][]*brr.Job // by id, every delivery
	seen chan string           // job ids, as they are handled
}

func startWorker(t *testing.T, srv *natstest.Server) *stubWorker {
	t.Helper()
	ctx := context.Background()
	nc, js := srv.JetStream(t)
	s := brr.Subjects{}
	for _, cfg := range []jetstream.StreamConfig{
		{Name: s.JobsStream(), Subjects: []string{s.AllJobs()}, Retention: jetstream.WorkQueuePolicy, Duplicates: 10 * time.Minute},
		{Name: s.EventsStream(), Subjects: []string{s.Events("")}},
		{Name: s.DLQStream(), Subjects: []string{s.AllDLQ()}},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatalf("create stream %s: %v", cfg.Name, err)
		}
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.ResultsBucket()})
	if err != nil {
		t.Fatal(err)
	}
	w := &stubWorker{js: js, kv: kv, jobs: map[string][]*brr.Job{}, seen: make(chan string, 1024)}
	cons, err := js.CreateOrUpdateConsumer(ctx, s.JobsStream(), jetstream.ConsumerConfig{
		Durable: s.Consumer("default"), FilterSubject: s.Jobs("default"), AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	cc, err := cons.Consume(w.handle)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cc.Stop)
	snaps, err := nc.Subscribe(s.API("default", "snapshots"), func(m *nats.Msg) {
		reply := brr.SnapshotsReply{V: brr.Version, Repo: "local", Snapshots: []brr.Snapshot{
			{ID: "abcdef0123456789", Repo: "local", Source: "/srv/app", Host: "h1", Files: 3, Bytes: 300, Time: time.Now()},
		}}
		data, _ := json.Marshal(reply)
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = snaps.Unsubscribe() })
	ping, err := nc.QueueSubscribe(s.API("default", "ping"), s.Consumer("default"), func(m *nats.Msg) {
		data, _ := json.Marshal(brr.PingReply{V: brr.Version, Worker: "stub-1"})
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ping.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *stubWorker) emit(job *brr.Job, status brr.Status, edit func(*brr.Event)) {
	ctx := context.Background()
	e := &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventJob, Status: status, Time: time.Now().UTC(),
		Worker: "stub-1", JobID: job.ID, Kind: job.Kind, Pool: job.Pool, Attempt: 1}
	if edit != nil {
		edit(e)
	}
	data, _ := json.Marshal(e)
	_, _ = w.js.Publish(ctx, w.subj.Event(e), data, jetstream.WithMsgID(e.ID))
	if status != brr.StatusProgress {
		_, _ = w.kv.Put(ctx, job.ID, data)
	}
}

func (w *stubWorker) handle(msg jetstream.Msg) {
	job, err := brr.DecodeJob(msg.Data())
	if err != nil {
		_ = msg.TermWithReason(err.Error())
		return
	}
	w.mu.Lock()
	w.jobs[job.ID] = append(w.jobs[job.ID], job)
	w.mu.Unlock()
	defer func() { w.seen <- job.ID }()

	w.emit(job, brr.StatusAccepted, nil)
	w.emit(job, brr.StatusStarted, nil)
	fail := func(status brr.Status, reason string) {
		dl := brr.DeadLetter{V: brr.Version, JobID: job.ID, Pool: job.Pool, Kind: job.Kind, Subject: msg.Subject(),
			Request: msg.Data(), Error: reason, Status: status, Attempts: 1, Worker: "stub-1", Time: time.Now().UTC()}
		data, _ := json.Marshal(dl)
		_, _ = w.js.Publish(context.Background(), w.subj.DLQ(job.Pool, job.Kind), data)
		w.emit(job, status, func(e *brr.Event) { e.Error = reason })
		_ = msg.TermWithReason(reason)
	}
	if b, ok := job.Args.(*brr.BackupJob); ok && strings.HasPrefix(b.Path, "/fail") && !w.fixed.Load() {
		fail(brr.StatusFailed, fmt.Sprintf("source %s does not exist on host h1", b.Path))
		return
	}
	if _, ok := job.Args.(*brr.PingJob); ok {
		if k := w.failPingsEvery.Load(); k > 0 && w.pings.Add(1)%k == 0 {
			fail(brr.StatusDead, "lease store unavailable after 1 attempt")
			return
		}
	}
	res := &brr.Result{}
	switch a := job.Args.(type) {
	case *brr.BackupJob:
		w.emit(job, brr.StatusProgress, func(e *brr.Event) {
			e.Progress = &brr.Progress{Files: 1, Bytes: 100, TotalFiles: 3, TotalBytes: 300}
		})
		res.Backup = &brr.BackupResult{Snapshot: "abcdef0123456789", Repo: "local", Source: a.Path, Files: 3, Bytes: 300, FilesNew: 3, BytesAdded: 120, BlobsAdded: 3}
	case *brr.RestoreJob:
		res.Restore = &brr.RestoreResult{Snapshot: "abcdef0123456789", Repo: "local", Target: a.Target, Files: 3, Bytes: 300}
	case *brr.VerifyJob:
		res.Verify = &brr.VerifyResult{Repo: "local", Snapshots: 1, Packs: 1, Blobs: 3}
	case *brr.PingJob:
		res.Ping = &brr.PingResult{Worker: "stub-1"}
	}
	w.emit(job, brr.StatusSucceeded, func(e *brr.Event) { e.Result = res })
	_ = msg.Ack()
}

func (w *stubWorker) deliveries(id string) []*brr.Job {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.jobs[id]
}

// waitFor waits until the worker has handled job id n times.
func (w *stubWorker) waitFor(t *testing.T, id string, n int) {
	t.Helper()
	timeout := time.After(20 * time.Second)
	for len(w.deliveries(id)) < n {
		select {
		case <-w.seen:
		case <-timeout:
			t.Fatalf("worker handled job %s %d times, want %d", id, len(w.deliveries(id)), n)
		}
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// brrCmd runs the brr command line in-process against url, from the directory /home/u.
func brrCmd(t *testing.T, url string, args ...string) result {
	t.Helper()
	var stdout, stderr bytes.Buffer
	m := &Main{
		Stdout: &stdout, Stderr: &stderr,
		Getenv: func(k string) string {
			if k == "BRR_NATS_URL" {
				return url
			}
			return ""
		},
		Getwd: func() (string, error) { return "/home/u", nil },
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := m.Run(ctx, args)
	return result{code, stdout.String(), stderr.String()}
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func setup(t *testing.T) (*stubWorker, string) {
	t.Helper()
	srv := natstest.StartListening(t)
	return startWorker(t, srv), srv.ClientURL()
}

func TestBackupWait(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	r := brrCmd(t, url, "backup", "data/app", "--tag", "nightly", "--id", "b1", "--wait")
	if r.code != 0 {
		t.Fatalf("backup --wait: %v", r)
	}
	for _, want := range []string{"snapshot abcdef0123456789 of /home/u/data/app", "3 new"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %q:\n%v", want, r)
		}
	}
	// The job is watched before it is published, so its progress, sent at once by this
	// fast worker, is never missed.
	if !strings.HasPrefix(r.stderr, "backup job b1 published\n") || !strings.Contains(r.stderr, "1/3 files, 100 B/300 B (33%)\n") {
		t.Errorf("stderr lacks the publish or the progress:\n%v", r)
	}
	jobs := w.deliveries("b1")
	if len(jobs) != 1 {
		t.Fatalf("worker got job b1 %d times, want 1", len(jobs))
	}
	args := jobs[0].Args.(*brr.BackupJob)
	if got, want := args.Path, "/home/u/data/app"; got != want {
		t.Fatalf("backup path = %q, want %q (made absolute from the cwd)", got, want)
	}
	if len(args.Tags) != 1 || args.Tags[0] != "nightly" || !strings.Contains(jobs[0].By, "@") {
		t.Fatalf("job = %+v, args %+v", jobs[0], args)
	}
}

func TestPublishPrintsID(t *testing.T) {
	t.Parallel()
	_, url := setup(t)
	r := brrCmd(t, url, "verify", "--repo", "local", "--id", "v1")
	if r.code != 0 || r.stdout != "v1\n" {
		t.Fatalf("verify without --wait: %v", r)
	}
	r = brrCmd(t, url, "verify", "--repo", "local", "--id", "v1")
	if r.code != 0 || r.stdout != "v1 duplicate\n" {
		t.Fatalf("verify with the same id: %v", r)
	}
	r = brrCmd(t, url, "jobs", "show", "v1", "--wait")
	if r.code != 0 || !strings.Contains(r.stdout, "repo local OK") {
		t.Fatalf("jobs show --wait: %v", r)
	}
	r = brrCmd(t, url, "jobs", "show", "v1")
	if r.code != 0 || !strings.Contains(r.stdout, "status:  succeeded") {
		t.Fatalf("jobs show: %v", r)
	}
	r = brrCmd(t, url, "jobs", "show", "nosuch")
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("jobs show of an unknown job: %v", r)
	}
}

func TestFailedJobExits1(t *testing.T) {
	t.Parallel()
	_, url := setup(t)
	r := brrCmd(t, url, "backup", "/fail/here", "--wait")
	if r.code != 1 {
		t.Fatalf("failed backup: %v", r)
	}
	if !strings.Contains(r.stderr, "source /fail/here does not exist") {
		t.Fatalf("stderr lacks the reason:\n%v", r)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	_, url := setup(t)
	for _, args := range [][]string{
		{},
		{"nope"},
		{"backup"},
		{"backup", "/a", "/b"},
		{"backup", "/a", "--bogus"},
		{"backup", "/a", "--tag", "bad tag"},
		{"restore", "not-a-snapshot", "/tmp/r"},
		{"restore", "latest", "/tmp/r", "--as-of", "yesterday-ish"},
		{"events", "--kind", "weather"},
		{"bench", "--jobs", "0"},
		{"jobs", "show"},
		{"dlq", "retry"},
	} {
		r := brrCmd(t, url, args...)
		if r.code != 2 {
			t.Errorf("brr %s: %v\nwant exit 2", strings.Join(args, " "), r)
		}
	}
}

func TestUsageErrorPrintedOnce(t *testing.T) {
	t.Parallel()
	// Usage errors come before any connection: no server is needed.
	const url = "nats://127.0.0.1:1"
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "brr: unknown flag: --bogus"},
		{[]string{"nope"}, `brr: unknown command "nope"`},
		{[]string{"backup", "/a", "--bogus"}, "brr: backup: unknown flag: --bogus"},
		{[]string{"backup", "/a", "--timeout", "soon"}, `brr: backup: invalid argument "soon" for "--timeout" flag`},
		{[]string{"backup"}, "brr: backup takes 1 argument, got 0: usage: brr backup PATH [flags]"},
		{[]string{"jobs", "show", "a", "b"}, "brr: jobs show takes 1 argument, got 2"},
		{[]string{"dlq", "retry", "--bogus"}, "brr: dlq retry: unknown flag: --bogus"},
	} {
		r := brrCmd(t, url, tt.args...)
		name := "brr " + strings.Join(tt.args, " ")
		if r.code != exitUsage {
			t.Errorf("%s: %v\nwant exit 2", name, r)
			continue
		}
		if !strings.HasPrefix(r.stderr, tt.want) {
			t.Errorf("%s: stderr\n%s\nwant it to start with %q", name, r.stderr, tt.want)
		}
		if got := strings.Count(r.stderr, "brr: "); got != 1 {
			t.Errorf("%s: stderr has %d \"brr: \" prefixes, want 1:\n%s", name, got, r.stderr)
		}
		if got := strings.Count(r.stderr, "\n"); got != 2 {
			t.Errorf("%s: stderr has %d lines, want the error and the hint:\n%s", name, got, r.stderr)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }, Version: "v1.2.3"}
	if code := m.Run(context.Background(), []string{"--version"}); code != exitOK {
		t.Fatalf("brr --version exited %d; stderr:\n%s", code, stderr.String())
	}
	if got, want := stdout.String(), "brr v1.2.3\n"; got != want {
		t.Fatalf("brr --version printed %q, want %q", got, want)
	}
	if stderr.Len() != 0 {
		t.Fatalf("brr --version wrote to stderr: %q", stderr.String())
	}
	// Without a Version, the build's: "dev" unless -ldflags set it.
	if r := brrCmd(t, "nats://127.0.0.1:1", "--version"); r.code != exitOK || r.stdout != "brr dev\n" {
		t.Fatalf("brr --version: %v\nwant exit 0 and \"brr dev\"", r)
	}
}

func TestCannotConnect(t *testing.T) {
	t.Parallel()
	url := "nats://" + testkit.FreeAddr(t)
	r := brrCmd(t, url, "backup", "/srv/app")
	if r.code != 3 || !strings.Contains(r.stderr, "cannot reach NATS at "+url) || !strings.Contains(r.stderr, "brr-worker") {
		t.Fatalf("backup with no server: %v", r)
	}
}

func TestNoWorkerYet(t *testing.T) {
	t.Parallel()
	srv := natstest.StartListening(t)
	r := brrCmd(t, srv.ClientURL(), "backup", "/srv/app")
	if r.code != 3 || !strings.Contains(r.stderr, "stream BRR_JOBS not found: is a brr-worker running") {
		t.Fatalf("backup with no streams: %v", r)
	}
	r = brrCmd(t, srv.ClientURL(), "snapshots")
	if r.code != 3 || !strings.Contains(r.stderr, `no worker serves pool "default"`) {
		t.Fatalf("snapshots with no worker: %v", r)
	}
}

// TestNoWorkerServesPool: with --wait, a job for a pool that no worker serves is not
// published, and the command says so at once instead of waiting forever; without --wait
// it is published, with a warning.
func TestNoWorkerServesPool(t *testing.T) {
	t.Parallel()
	srv := natstest.StartListening(t)
	startWorker(t, srv) // of pool default
	url := srv.ClientURL()

	r := brrCmd(t, url, "--pool", "db2", "backup", "/srv/app", "--id", "nobody-1", "--wait")
	want := `brr: no worker serves pool "db2" on ` + url + ": start one with brr-worker, or name another pool\n"
	if r.code != exitNoServer || r.stderr != want || r.stdout != "" {
		t.Errorf("backup --wait to pool db2: %v\nwant exit 3 and stderr %q", r, want)
	}
	_, js := srv.JetStream(t)
	stream, err := js.Stream(context.Background(), "BRR_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetLastMsgForSubject(context.Background(), "brr.jobs.db2.>"); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("a job for pool db2 is in the stream after --wait refused it (err %v)", err)
	}

	r = brrCmd(t, url, "--pool", "db2", "backup", "/srv/app", "--id", "nobody-2")
	want = `brr: warning: no worker serves pool "db2" on ` + url + ": start one with brr-worker, or name another pool; until one starts, job nobody-2 waits in the queue\n"
	if r.code != exitOK || r.stdout != "nobody-2\n" || r.stderr != want {
		t.Errorf("backup to pool db2: %v\nwant exit 0, the id, and the warning %q", r, want)
	}
	if _, err := stream.GetLastMsgForSubject(context.Background(), "brr.jobs.db2.backup"); err != nil {
		t.Errorf("the job for pool db2 is not in the stream: %v", err)
	}

	// The pool a worker serves: no warning.
	r = brrCmd(t, url, "backup", "/srv/app", "--id", "served-1")
	if r.code != exitOK || r.stderr != "" {
		t.Errorf("backup to pool default: %v\nwant exit 0 and nothing on stderr", r)
	}
}

// jsonLines checks that out is one JSON object per line and returns them.
func jsonLines(t *testing.T, what, out string) []map[string]any {
	t.Helper()
	var objs []map[string]any
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("%s: line %q is not a JSON object: %v", what, line, err)
		}
		objs = append(objs, obj)
	}
	if len(objs) == 0 {
		t.Fatalf("%s: no output", what)
	}
	return objs
}

func TestJSONOutput(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	r := brrCmd(t, url, "--json", "backup", "/srv/app", "--id", "j1")
	if r.code != 0 {
		t.Fatal(r)
	}
	if obj := jsonLines(t, "backup", r.stdout)[0]; obj["id"] != "j1" || obj["duplicate"] != false {
		t.Fatalf("backup --json = %v", obj)
	}
	w.waitFor(t, "j1", 1)
	r = brrCmd(t, url, "backup", "/srv/app", "--id", "j2", "--wait", "--json")
	if r.code != 0 {
		t.Fatal(r)
	}
	objs := jsonLines(t, "backup --wait", r.stdout)
	if len(objs) != 1 || objs[0]["status"] != "succeeded" || r.stderr != "" {
		t.Fatalf("backup --wait --json: %v", r)
	}
	brrCmd(t, url, "backup", "/fail/x", "--id", "j3", "--wait")
	for _, args := range [][]string{
		{"jobs", "--json"},
		{"jobs", "show", "j1", "--json"},
		{"dlq", "ls", "--json"},
		{"events", "--kind", "job", "--json"},
		{"snapshots", "--json"},
	} {
		r := brrCmd(t, url, args...)
		if r.code != 0 {
			t.Fatalf("brr %s: %v", strings.Join(args, " "), r)
		}
		jsonLines(t, strings.Join(args, " "), r.stdout)
	}
	r = brrCmd(t, url, "jobs", "--json")
	if got := len(jsonLines(t, "jobs", r.stdout)); got != 3 {
		t.Fatalf("jobs --json printed %d jobs, want 3", got)
	}
}

func TestRestoreAndSnapshots(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	r := brrCmd(t, url, "restore", "latest", "out", "--source", "/srv/app", "--as-of", "2026-11-26", "--path", "etc", "--id", "r1", "--wait")
	if r.code != 0 || !strings.Contains(r.stdout, "into /home/u/out") {
		t.Fatalf("restore: %v", r)
	}
	a := w.deliveries("r1")[0].Args.(*brr.RestoreJob)
	if a.Target != "/home/u/out" || a.AsOf == nil || a.AsOf.IsZero() || a.Source != "/srv/app" || len(a.Paths) != 1 {
		t.Fatalf("restore args = %+v", a)
	}
	r = brrCmd(t, url, "snapshots", "--repo", "local")
	if r.code != 0 || !strings.Contains(r.stdout, "abcdef012345") || !strings.Contains(r.stdout, "/srv/app") {
		t.Fatalf("snapshots: %v", r)
	}
}

func TestEventsFollow(t *testing.T) {
	t.Parallel()
	_, url := setup(t)
	if r := brrCmd(t, url, "ping-free-backup-first"); r.code != 2 {
		t.Fatalf("unknown command: %v", r)
	}
	if r := brrCmd(t, url, "backup", "/srv/app", "--id", "e1", "--wait"); r.code != 0 {
		t.Fatal(r)
	}
	// --follow from an hour ago replays the job's events, then ends with --timeout.
	r := brrCmd(t, url, "events", "--kind", "job", "--follow", "--since", "1h", "--timeout", "1s")
	if r.code != 0 {
		t.Fatalf("events --follow: %v", r)
	}
	for _, want := range []string{"job.backup.accepted job=e1", "job.backup.progress", "job.backup.succeeded job=e1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("events --follow lacks %q:\n%v", want, r)
		}
	}
	r = brrCmd(t, url, "events", "--kind", "health")
	if r.code != 0 || r.stdout != "" {
		t.Fatalf("events --kind health with none: %v", r)
	}
}
