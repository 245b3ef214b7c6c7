package brr_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
)

// bundle is what a client test works with: a server with the streams a worker would have
// created, a client, and a second connection playing the worker.
type bundle struct {
	srv     *natstest.Server
	client  *brr.Client
	js      jetstream.JetStream // the worker's side
	nc      *nats.Conn          // the worker's side
	results jetstream.KeyValue
	subj    brr.Subjects
}

func setup(t *testing.T) *bundle {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.JetStream(t)
	createStreams(t, js)
	kv, err := js.KeyValue(context.Background(), brr.Subjects{}.ResultsBucket())
	if err != nil {
		t.Fatal(err)
	}
	client, err := brr.NewClient(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{srv: srv, client: client, js: js, nc: nc, results: kv}
}

// createStreams creates the streams and the results bucket as the workers do.
func createStreams(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
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
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.ResultsBucket()}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// jobEvent is a job lifecycle event as a worker writes it.
func jobEvent(id string, kind brr.Kind, status brr.Status) *brr.Event {
	return &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventJob, Status: status, Time: time.Now().UTC(), Worker: "w1", JobID: id, Kind: kind, Pool: brr.DefaultPool}
}

// putResult writes e as the job's latest event, as a worker does.
func (b *bundle) putResult(t *testing.T, e *brr.Event) {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.results.Put(context.Background(), e.JobID, data); err != nil {
		t.Fatalf("put result: %v", err)
	}
}

// publishEvent publishes e on the event stream, as a worker does.
func (b *bundle) publishEvent(t *testing.T, e *brr.Event) {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.Publish(context.Background(), b.subj.Event(e), data, jetstream.WithMsgID(e.ID)); err != nil {
		t.Fatalf("publish event: %v", err)
	}
}

func (b *bundle) streamMsgs(t *testing.T, name string) uint64 {
	t.Helper()
	st, err := b.js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestPublishValidates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxT(t)
	for name, tc := range map[string]struct {
		args brr.JobArgs
		opts []brr.PublishOption
	}{
		"relative path": {args: brr.BackupJob{Path: "srv/app"}},
		"unclean path":  {args: brr.BackupJob{Path: "/srv/../app"}},
		"bad repo":      {args: brr.BackupJob{Path: "/srv", Repo: "a.b"}},
		"bad id":        {args: brr.PingJob{}, opts: []brr.PublishOption{brr.WithID("no spaces")}},
		"bad pool":      {args: brr.PingJob{}, opts: []brr.PublishOption{brr.WithJobPool("a.b")}},
		"bad snapshot":  {args: brr.RestoreJob{Snapshot: "xyz", Target: "/tmp/r"}},
		"nil args":      {args: nil},
	} {
		_, err := b.client.Publish(ctx, tc.args, tc.opts...)
		if !errors.Is(err, brr.ErrInvalid) {
			t.Errorf("%s: Publish error = %v, want ErrInvalid", name, err)
		}
	}
	if got := b.streamMsgs(t, b.subj.JobsStream()); got != 0 {
		t.Fatalf("jobs stream holds %d messages after invalid publishes, want 0", got)
	}
}

func TestPublishDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxT(t)
	args := brr.BackupJob{Path: "/srv/app", Repo: "local", Tags: []string{"nightly"}}
	first, err := b.client.Publish(ctx, args, brr.WithID("nightly-1"), brr.WithBy("test"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || first.ID != "nightly-1" || first.Kind != brr.KindBackup || first.Pool != brr.DefaultPool || first.Stream != "BRR_JOBS" {
		t.Fatalf("first publish = %+v", first)
	}
	second, err := b.client.Publish(ctx, args, brr.WithID("nightly-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !second.Duplicate || second.Seq != first.Seq {
		t.Fatalf("second publish = %+v, want a duplicate of seq %d", second, first.Seq)
	}
	other, err := b.client.Publish(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	if other.Duplicate || other.ID == first.ID {
		t.Fatalf("publish without id = %+v, want a new job", other)
	}
	if got := b.streamMsgs(t, b.subj.JobsStream()); got != 2 {
		t.Fatalf("jobs stream holds %d messages, want 2", got)
	}

	// What the worker receives decodes to the job that was published.
	st, _ := b.js.Stream(ctx, b.subj.JobsStream())
	raw, err := st.GetMsg(ctx, first.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := raw.Subject, "brr.jobs.default.backup"; got != want {
		t.Fatalf("subject = %q, want %q", got, want)
	}
	if got := raw.Header.Get(jetstream.MsgIDHeader); got != "nightly-1" {
		t.Fatalf("Nats-Msg-Id = %q, want nightly-1", got)
	}
	job, err := brr.DecodeJob(raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got := job.Args.(*brr.BackupJob); got.Path != "/srv/app" || job.By != "test" || job.ID != "nightly-1" {
		t.Fatalf("decoded job = %+v args %+v", job, got)
	}
}

func TestPublishAsync(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxT(t)
	var futures []*brr.PublishFuture
	for range 20 {
		f, err := b.client.PublishAsync(brr.PingJob{})
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	seen := map[uint64]bool{}
	for _, f := range futures {
		r, err := f.Result(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != brr.KindPing || r.ID != f.ID || seen[r.Seq] {
			t.Fatalf("result = %+v", r)
		}
		seen[r.Seq] = true
	}
	if _, err := b.client.PublishAsync(brr.PingJob{DelayMS: -1}); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("PublishAsync of an invalid job: %v, want ErrInvalid", err)
	}
}

func TestWaitFinishedBefore(t *testing.T) {
	t.Parallel()
	b := setup(t)
	done := jobEvent("j1", brr.KindBackup, brr.StatusSucceeded)
	done.Result = &brr.Result{Backup: &brr.BackupResult{Snapshot: "abcd1234", Files: 3}}
	b.putResult(t, done)
	e, err := b.client.Wait(ctxT(t), "j1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != brr.StatusSucceeded || e.Result == nil || e.Result.Backup.Snapshot != "abcd1234" {
		t.Fatalf("Wait = %+v", e)
	}
}

func TestWaitFollowsJob(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxT(t)
	events := make(chan *brr.Event, 16)
	type waited struct {
		e   *brr.Event
		err error
	}
	res := make(chan waited, 1)
	go func() {
		e, err := b.client.Wait(ctx, "j2", func(e *brr.Event) { events <- e })
		res <- waited{e, err}
	}()
	next := func() *brr.Event {
		t.Helper()
		select {
		case e := <-events:
			return e
		case w := <-res:
			t.Fatalf("Wait returned early: %+v %v", w.e, w.err)
		case <-ctx.Done():
			t.Fatal("no event")
		}
		return nil
	}

	// The key does not exist yet: Wait must wait for the worker to write it.
	b.putResult(t, jobEvent("j2", brr.KindBackup, brr.StatusAccepted))
	if e := next(); e.Status != brr.StatusAccepted {
		t.Fatalf("first event = %s, want accepted", e.Status)
	}
	// Progress of another job is not passed on; this job's is.
	other := jobEvent("other", brr.KindBackup, brr.StatusProgress)
	other.Progress = &brr.Progress{Files: 99}
	b.publishEvent(t, other)
	prog := jobEvent("j2", brr.KindBackup, brr.StatusProgress)
	prog.Progress = &brr.Progress{Files: 7, Bytes: 700}
	b.publishEvent(t, prog)
	if e := next(); e.Status != brr.StatusProgress || e.Progress.Files != 7 {
		t.Fatalf("second event = %+v, want this job's progress", e)
	}
	b.putResult(t, jobEvent("j2", brr.KindBackup, brr.StatusSucceeded))
	w := <-res
	if w.err != nil || w.e.Status != brr.StatusSucceeded || w.e.JobID != "j2" {
		t.Fatalf("Wait = %+v, %v", w.e, w.err)
	}
}

func TestWaitFailed(t *testing.T) {
	t.Parallel()
	b := setup(t)
	for _, status := range []brr.Status{brr.StatusFailed, brr.StatusDead} {
		id := "bad-" + string(status)
		e := jobEvent(id, brr.KindBackup, status)
		e.Error = `repo "offsite" is not configured (configured: local)`
		b.putResult(t, e)
		got, err := b.client.Wait(ctxT(t), id, nil)
		if !errors.Is(err, brr.ErrJobFailed) || !strings.Contains(err.Error(), "offsite") {
			t.Fatalf("%s: Wait error = %v, want ErrJobFailed with the reason", status, err)
		}
		if got == nil || got.Status != status {
			t.Fatalf("%s: Wait event = %+v", status, got)
		}
	}
}

func TestWaitContext(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := b.client.Wait(ctx, "never", nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with a cancelled context: %v", err)
	}
}

func TestWatchBeforePublish(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxT(t)
	id := brr.NewID()
	var got []*brr.Event // onEvent runs in Result's goroutine only
	w, err := b.client.Watch(ctx, id, func(e *brr.Event) { got = append(got, e) })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	if _, err := b.client.Publish(ctx, brr.BackupJob{Path: "/srv/app"}, brr.WithID(id)); err != nil {
		t.Fatal(err)
	}
	// A fast job: the worker accepts it, reports all its progress and ends right after
	// the publish, before the caller gets to Result. Progress is not stored anywhere
	// Result could read it later: only the watch started before the publish sees it.
	b.putResult(t, jobEvent(id, brr.KindBackup, brr.StatusAccepted))
	const n = 50
	for i := range n {
		p := jobEvent(id, brr.KindBackup, brr.StatusProgress)
		p.Progress = &brr.Progress{Files: int64(i + 1)}
		b.publishEvent(t, p)
		if i == n/2 {
			other := jobEvent("other", brr.KindBackup, brr.StatusProgress)
			other.Progress = &brr.Progress{Files: 999}
			b.publishEvent(t, other)
		}
	}
	b.putResult(t, jobEvent(id, brr.KindBackup, brr.StatusSucceeded))

	e, err := w.Result(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != brr.StatusSucceeded || e.JobID != id {
		t.Fatalf("Result = %+v", e)
	}
	// The bucket keeps one entry per job, so a watch may skip accepted when succeeded
	// replaces it first, and its place among the progress is not fixed; the progress and
	// the end are never skipped, and come in order.
	var rest []*brr.Event
	for _, e := range got {
		if e.Status != brr.StatusAccepted {
			rest = append(rest, e)
		}
	}
	got = rest
	if got, want := len(got), n+1; got != want {
		t.Fatalf("onEvent got %d events besides accepted, want %d: %d progress and succeeded", got, want, n)
	}
	for i, e := range got[:n] {
		if e.Status != brr.StatusProgress || e.JobID != id || e.Progress.Files != int64(i+1) {
			t.Fatalf("event %d = %s of %s with %+v, want progress %d of %s", i, e.Status, e.JobID, e.Progress, i+1, id)
		}
	}
	if got[n].Status != brr.StatusSucceeded {
		t.Fatalf("last event = %s, want succeeded", got[n].Status)
	}
}

func TestWatchEnds(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxT(t)
	if _, err := b.client.Watch(ctx, "no spaces", nil); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("Watch of a bad id: %v, want ErrInvalid", err)
	}

	// Stop ends the wait; Result then returns at once.
	w, err := b.client.Watch(ctx, "stopped", func(*brr.Event) {})
	if err != nil {
		t.Fatal(err)
	}
	w.Stop()
	w.Stop()
	if e, err := w.Result(ctx); e != nil || err == nil {
		t.Fatalf("Result after Stop = %+v, %v, want an error", e, err)
	}

	// The end of Watch's context ends the watch too.
	wctx, cancel := context.WithCancel(ctx)
	w, err = b.client.Watch(wctx, "cancelled", nil)
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	if _, err := w.Result(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("Result after Watch's context ended: %v, want context.Canceled", err)
	}
}

func TestJobAndJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxT(t)
	if _, err := b.client.Job(ctx, "nope"); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("Job of an unknown id: %v, want ErrNotFound", err)
	}
	if got, err := b.client.Jobs(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("Jobs of an empty bucket = %v, %v", got, err)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		b.putResult(t, jobEvent(id, brr.KindPing, brr.StatusAccepted))
	}
	b.putResult(t, jobEvent("b", brr.KindPing, brr.StatusSucceeded)) // b is now the newest
	e, err := b.client.Job(ctx, "b")
	if err != nil || e.Status != brr.StatusSucceeded {
		t.Fatalf("Job(b) = %+v, %v", e, err)
	}
	ids := func(es []*brr.Event) string {
		var s []string
		for _, e := range es {
			s = append(s, e.JobID)
		}
		return strings.Join(s, ",")
	}
	got, err := b.client.Jobs(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(got), "b,d,c"; got != want {
		t.Fatalf("Jobs(3) = %s, want %s", got, want)
	}
	all, err := b.client.Jobs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(all), "b,d,c,a"; got != want {
		t.Fatalf("Jobs(0) = %s, want %s", got, want)
	}
}

func TestJobsWidensWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxT(t)
	// Two old jobs, then many updates of one job: the newest stream messages hold one
	// job only, so Jobs must look further back to find three.
	b.putResult(t, jobEvent("old1", brr.KindPing, brr.StatusSucceeded))
	b.putResult(t, jobEvent("old2", brr.KindPing, brr.StatusSucceeded))
	for range 200 {
		b.putResult(t, jobEvent("busy", brr.KindPing, brr.StatusProgress))
	}
	got, err := b.client.Jobs(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].JobID != "busy" || got[1].JobID != "old2" || got[2].JobID != "old1" {
		t.Fatalf("Jobs(3) = %d events, want busy, old2, old1", len(got))
	}
}

func TestSubscribeFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxT(t)
	before := &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventHealth, Status: "disk", Time: time.Now().UTC()}
	b.publishEvent(t, before)

	var mu sync.Mutex
	var got []*brr.Event
	health := make(chan *brr.Event, 8)
	if err := b.client.Subscribe(ctx, b.subj.Events(brr.EventHealth), func(e *brr.Event) {
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
		health <- e
	}); err != nil {
		t.Fatal(err)
	}
	b.publishEvent(t, jobEvent("j", brr.KindBackup, brr.StatusStarted))
	if _, err := b.js.Publish(ctx, "brr.events.health.garbage", []byte("not json")); err != nil {
		t.Fatal(err)
	}
	hb := &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventHealth, Status: "worker", Time: time.Now().UTC(), Worker: "w9"}
	b.publishEvent(t, hb)
	select {
	case e := <-health:
		if e.ID != hb.ID {
			t.Fatalf("first event delivered = %s/%s, want the new heartbeat", e.Type, e.Status)
		}
	case <-ctx.Done():
		t.Fatal("no health event delivered")
	}
	mu.Lock()
	n := len(got)
	mu.Unlock()
	if n != 1 {
		t.Fatalf("delivered %d events, want 1", n)
	}

	// DeliverAll replays what the stream holds.
	all := make(chan *brr.Event, 8)
	if err := b.client.Subscribe(ctx, b.subj.Events(brr.EventHealth), func(e *brr.Event) { all <- e }, brr.DeliverAll()); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{before.ID, hb.ID} {
		select {
		case e := <-all:
			if e.ID != want {
				t.Fatalf("replayed %s, want %s", e.ID, want)
			}
		case <-ctx.Done():
			t.Fatal("replay incomplete")
		}
	}

	if err := b.client.Subscribe(ctx, "brr.jobs.>", func(*brr.Event) {}); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("Subscribe outside the events prefix: %v, want ErrInvalid", err)
	}

	evs, err := b.client.Events(ctx, b.subj.Events(brr.EventHealth), time.Time{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].ID != before.ID || evs[1].ID != hb.ID {
		t.Fatalf("Events(health) = %d events, want the 2 decodable ones", len(evs))
	}
	last, err := b.client.Events(ctx, "", time.Time{}, 1)
	if err != nil || len(last) != 1 || last[0].ID != hb.ID {
		t.Fatalf("Events(all, limit 1) = %v, %v", last, err)
	}
}

func TestDeadLettersRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxT(t)
	pub, err := b.client.Publish(ctx, brr.BackupJob{Path: "/srv/app"}, brr.WithID("doomed"))
	if err != nil {
		t.Fatal(err)
	}
	// The worker takes the job, fails it for good, and dead-letters it.
	jobs, _ := b.js.Stream(ctx, b.subj.JobsStream())
	raw, err := jobs.GetMsg(ctx, pub.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if err := jobs.DeleteMsg(ctx, pub.Seq); err != nil {
		t.Fatal(err)
	}
	dl := brr.DeadLetter{V: brr.Version, JobID: "doomed", Pool: "default", Kind: brr.KindBackup, Subject: raw.Subject,
		Request: raw.Data, Error: "source /srv/app does not exist", Status: brr.StatusFailed, Attempts: 1, Time: time.Now().UTC()}
	data, _ := json.Marshal(dl)
	ack, err := b.js.Publish(ctx, b.subj.DLQ("default", brr.KindBackup), data)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.Publish(ctx, b.subj.DLQ("default", brr.KindPing), []byte("{broken")); err != nil {
		t.Fatal(err)
	}

	entries, err := b.client.DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 2 || entries[0].Seq != ack.Sequence || entries[0].JobID != "doomed" || entries[0].Error != dl.Error {
		t.Fatalf("DeadLetters = %+v", entries)
	}
	if entries[1].JobID != "" || !strings.Contains(entries[1].Error, "undecodable") {
		t.Fatalf("undecodable entry = %+v", entries[1])
	}

	// The worker's last word on the job, which stays in the results bucket.
	dead := jobEvent("doomed", brr.KindBackup, brr.StatusFailed)
	dead.Error = dl.Error
	b.putResult(t, dead)
	deadEntry, err := b.results.Get(ctx, "doomed")
	if err != nil {
		t.Fatal(err)
	}

	if _, err := b.client.RetryDead(ctx, "unknown"); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("RetryDead(unknown): %v, want ErrNotFound", err)
	}
	res, err := b.client.RetryDead(ctx, "doomed")
	if err != nil {
		t.Fatal(err)
	}
	if res.Duplicate || res.ID != "doomed" || res.Kind != brr.KindBackup {
		t.Fatalf("RetryDead = %+v", res)
	}
	if got, want := res.ResultRevision, deadEntry.Revision(); got != want {
		t.Fatalf("RetryDead ResultRevision = %d, want %d (the dead result's)", got, want)
	}
	// Until a worker takes the job again, a plain Wait returns the old run's end...
	if e, err := b.client.Wait(ctx, "doomed", nil); !errors.Is(err, brr.ErrJobFailed) || e.ID != dead.ID {
		t.Fatalf("plain Wait after RetryDead = %+v, %v, want the old failed event", e, err)
	}
	// ...and a Wait after the retry's revision waits for the new run.
	type waited struct {
		e   *brr.Event
		err error
	}
	waitRes := make(chan waited, 1)
	var seen []brr.Status
	go func() {
		e, err := b.client.Wait(ctx, "doomed", func(e *brr.Event) { seen = append(seen, e.Status) }, brr.AfterRevision(res.ResultRevision))
		waitRes <- waited{e, err}
	}()
	b.putResult(t, jobEvent("doomed", brr.KindBackup, brr.StatusAccepted))
	done := jobEvent("doomed", brr.KindBackup, brr.StatusSucceeded)
	b.putResult(t, done)
	if w := <-waitRes; w.err != nil || w.e.ID != done.ID {
		t.Fatalf("Wait with AfterRevision = %+v, %v, want the new run's succeeded event", w.e, w.err)
	}
	if len(seen) == 0 || seen[0] == brr.StatusFailed {
		t.Fatalf("Wait with AfterRevision passed %v to onEvent, want only the new run's events", seen)
	}
	again, err := jobs.GetMsg(ctx, res.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := again.Header.Get(jetstream.MsgIDHeader), "doomed-retry-1"; got != want {
		t.Fatalf("retry Nats-Msg-Id = %q, want %q", got, want)
	}
	if string(again.Data) != string(raw.Data) || again.Subject != raw.Subject {
		t.Fatalf("retried message differs from the original request")
	}
	entries, err = b.client.DeadLetters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].JobID == "doomed" {
		t.Fatalf("after retry, DeadLetters = %+v, want only the undecodable one", entries)
	}
	if _, err := b.client.RetryDead(ctx, "doomed"); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("second RetryDead: %v, want ErrNotFound", err)
	}
}

func TestSnapshots(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := ctxT(t)
	if _, err := b.client.Snapshots(ctx, "local", ""); !errors.Is(err, brr.ErrNoWorker) || !strings.Contains(err.Error(), `pool "default"`) {
		t.Fatalf("Snapshots with no worker: %v", err)
	}
	snap := brr.Snapshot{ID: "abcd", Repo: "local", Source: "/srv/app", Files: 2}
	sub, err := b.nc.Subscribe(b.subj.API("default", "snapshots"), func(m *nats.Msg) {
		var req brr.SnapshotsRequest
		reply := brr.SnapshotsReply{V: brr.Version}
		if err := json.Unmarshal(m.Data, &req); err != nil || req.V != brr.Version {
			reply.Error = "bad request"
		} else if req.Repo != "local" {
			reply.Repo = req.Repo
			reply.Error = `repo "` + req.Repo + `" is not configured (configured: local)`
		} else {
			reply.Repo = "local"
			if req.Source == "" || req.Source == snap.Source {
				reply.Snapshots = []brr.Snapshot{snap}
			}
		}
		data, _ := json.Marshal(reply)
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	got, err := b.client.Snapshots(ctx, "local", "/srv/app")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "abcd" {
		t.Fatalf("Snapshots = %+v", got)
	}
	if got, err := b.client.Snapshots(ctx, "local", "/other"); err != nil || len(got) != 0 {
		t.Fatalf("Snapshots of another source = %+v, %v", got, err)
	}
	if _, err := b.client.Snapshots(ctx, "offsite", ""); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("Snapshots of an unknown repo: %v", err)
	}
	if _, err := b.client.Snapshots(ctx, "local", "relative"); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("Snapshots with a relative source: %v", err)
	}
}

func TestNoStreams(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	client, err := brr.NewClient(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := ctxT(t)
	_, err = client.Publish(ctx, brr.PingJob{})
	if !errors.Is(err, brr.ErrNoStream) || !strings.Contains(err.Error(), "stream BRR_JOBS not found: is a brr-worker running") {
		t.Fatalf("Publish with no stream: %v", err)
	}
	if _, err := client.Wait(ctx, "x", nil); !errors.Is(err, brr.ErrNoStream) {
		t.Fatalf("Wait with no bucket: %v", err)
	}
	if _, err := client.Jobs(ctx, 5); !errors.Is(err, brr.ErrNoStream) {
		t.Fatalf("Jobs with no bucket: %v", err)
	}
	if err := client.Subscribe(ctx, "", func(*brr.Event) {}); !errors.Is(err, brr.ErrNoStream) {
		t.Fatalf("Subscribe with no stream: %v", err)
	}
	if _, err := client.DeadLetters(ctx); !errors.Is(err, brr.ErrNoStream) || !strings.Contains(err.Error(), "BRR_DLQ") {
		t.Fatalf("DeadLetters with no stream: %v", err)
	}
}

func TestNoServer(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	client, err := brr.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	ctx := ctxT(t)
	if _, err := client.Publish(ctx, brr.PingJob{}); !errors.Is(err, brr.ErrNotConnected) {
		t.Fatalf("Publish on a closed connection: %v", err)
	}
	if _, err := client.Job(ctx, "x"); !errors.Is(err, brr.ErrNotConnected) {
		t.Fatalf("Job on a closed connection: %v", err)
	}
	if _, err := client.Snapshots(ctx, "", ""); !errors.Is(err, brr.ErrNotConnected) {
		t.Fatalf("Snapshots on a closed connection: %v", err)
	}
}

func TestNewClientOptions(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	if _, err := brr.NewClient(nc, brr.WithPool("a b")); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("NewClient with a bad pool: %v", err)
	}
	if _, err := brr.NewClient(nc, brr.WithPrefix("a..b")); err == nil {
		t.Fatal("NewClient with a bad prefix: no error")
	}
	c, err := brr.NewClient(nc, brr.WithPrefix("acme.brr"), brr.WithPool("host1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Subjects().JobsStream(), "ACME_BRR_JOBS"; got != want {
		t.Fatalf("JobsStream = %q, want %q", got, want)
	}
	if _, err := c.Publish(ctxT(t), brr.PingJob{}); err == nil || !strings.Contains(err.Error(), "ACME_BRR_JOBS") {
		t.Fatalf("Publish with a prefix and no stream: %v", err)
	}
}
