package brr_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/brr-dev/brr"
	"github.com/nats-io/nats.go/jetstream"
)

func TestDeadLettersRetry(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)
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

// publishDead writes a dead letter of job id to the dead-letter stream, as a worker does,
// and returns its sequence.
func publishDead(t *testing.T, b *bundle, id string) uint64 {
	t.Helper()
	ctx := testkit.Context(t, 10*time.Second)
	job := brr.NewJob(brr.PingJob{})
	job.ID = id
	req, _ := json.Marshal(job)
	dl := brr.DeadLetter{V: brr.Version, JobID: id, Pool: "default", Kind: brr.KindPing, Subject: b.subj.Job("default", brr.KindPing),
		Request: req, Error: "boom", Status: brr.StatusDead, Attempts: 3, Time: time.Now().UTC()}
	data, _ := json.Marshal(dl)
	ack, err := b.js.Publish(ctx, b.subj.DLQ("default", brr.KindPing), data)
	if err != nil {
		t.Fatal(err)
	}
	return ack.Sequence
}

func deadIDs(t *testing.T, b *bundle) []string {
	t.Helper()
	entries, err := b.client.DeadLetters(testkit.Context(t, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, e := range entries {
		ids = append(ids, e.JobID)
	}
	return ids
}

// TestRemoveDead: a dead letter can be removed without running it, by its job id or by
// the SEQ that `brr dlq ls` shows, and by age with PurgeDead.
func TestRemoveDead(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)
	publishDead(t, b, "a")
	seqB := publishDead(t, b, "b")
	publishDead(t, b, "a") // a second entry of job a

	removed, err := b.client.RemoveDead(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(removed), 2; got != want {
		t.Fatalf("RemoveDead(a) removed %d entries, want %d (every entry of the job)", got, want)
	}
	if got, want := strings.Join(deadIDs(t, b), ","), "b"; got != want {
		t.Fatalf("after RemoveDead(a): %q, want %q", got, want)
	}
	if _, err := b.client.RemoveDead(ctx, "a"); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("RemoveDead(a) again: %v, want ErrNotFound", err)
	}
	if _, err := b.client.RemoveDead(ctx, strconv.FormatUint(seqB, 10)); err != nil {
		t.Fatalf("RemoveDead by seq: %v", err)
	}
	if ids := deadIDs(t, b); len(ids) != 0 {
		t.Fatalf("after RemoveDead by seq: %q, want none", ids)
	}

	publishDead(t, b, "old1")
	publishDead(t, b, "old2")
	seqNew := publishDead(t, b, "new")
	dlq, _ := b.js.Stream(ctx, b.subj.DLQStream())
	newest, err := dlq.GetMsg(ctx, seqNew)
	if err != nil {
		t.Fatal(err)
	}
	cut := newest.Time // entries stored before the newest one go
	n, err := b.client.PurgeDead(ctx, cut)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(deadIDs(t, b), ","), "new"; n != 2 || got != want {
		t.Fatalf("PurgeDead(before) removed %d, left %q; want 2 and %q", n, got, want)
	}
	n, err = b.client.PurgeDead(ctx, time.Time{})
	if err != nil || n != 1 || len(deadIDs(t, b)) != 0 {
		t.Fatalf("PurgeDead(all) = %d, %v, left %q; want 1 and none", n, err, deadIDs(t, b))
	}
}

// TestRetryDeadBySeq: brr dlq ls shows a SEQ; retry takes it as well as the job id.
func TestRetryDeadBySeq(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)
	seq := publishDead(t, b, "by-seq")
	res, err := b.client.RetryDead(ctx, strconv.FormatUint(seq, 10))
	if err != nil {
		t.Fatal(err)
	}
	if res.ID != "by-seq" || res.Kind != brr.KindPing {
		t.Fatalf("RetryDead(seq) = %+v, want job by-seq", res)
	}
	if ids := deadIDs(t, b); len(ids) != 0 {
		t.Fatalf("after retry: %q, want none", ids)
	}
}
