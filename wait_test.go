package brr_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/brr-dev/brr"
)

func TestWaitFinishedBefore(t *testing.T) {
	t.Parallel()
	b := setup(t)
	done := jobEvent("j1", brr.KindBackup, brr.StatusSucceeded)
	done.Result = &brr.Result{Backup: &brr.BackupResult{Snapshot: "abcd1234", Files: 3}}
	b.putResult(t, done)
	e, err := b.client.Wait(testkit.Context(t, 20*time.Second), "j1", nil)
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
	ctx := testkit.Context(t, 20*time.Second)
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
		got, err := b.client.Wait(testkit.Context(t, 20*time.Second), id, nil)
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
	ctx := testkit.Context(t, 20*time.Second)
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
	ctx := testkit.Context(t, 20*time.Second)
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

// TestWatchSeesEveryAttempt: a job's first attempt fails and the next starts at once; the
// bucket, which keeps the latest entry per job, never held the retrying (a short attempt
// leaves no entry to replace) nor the second started (the end replaced it). A watch with
// an onEvent still passes each of them, once, in order: it follows the job's events too.
// Before, it followed only progress and the bucket, and missed both lines.
func TestWatchSeesEveryAttempt(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)
	id := brr.NewID()
	var got []string // onEvent runs in Result's goroutine only
	w, err := b.client.Watch(ctx, id, func(e *brr.Event) { got = append(got, fmt.Sprintf("%s/%d", e.Status, e.Attempt)) })
	if err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	attempt := func(status brr.Status, n int) *brr.Event {
		e := jobEvent(id, brr.KindBackup, status)
		e.Attempt = n
		return e
	}
	started1 := attempt(brr.StatusStarted, 1)
	b.publishEvent(t, started1)
	b.putResult(t, started1) // a long first attempt: its started entry is in the bucket
	b.publishEvent(t, attempt(brr.StatusRetrying, 1))
	other := jobEvent("other-"+id, brr.KindBackup, brr.StatusRetrying)
	b.publishEvent(t, other)
	b.publishEvent(t, attempt(brr.StatusStarted, 2))
	done := attempt(brr.StatusSucceeded, 2)
	b.publishEvent(t, done)
	b.putResult(t, done)

	e, err := w.Result(ctx)
	if err != nil || e.Status != brr.StatusSucceeded {
		t.Fatalf("Result = %+v, %v", e, err)
	}
	want := []string{"started/1", "retrying/1", "started/2", "succeeded/2"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("onEvent saw %v, want %v", got, want)
	}
}

// TestWaitWithoutStartedOrAccepted: a job that started at once and ended in a
// millisecond has only its final entry in the bucket and no accepted event; Wait, begun
// before or after that end, returns it.
func TestWaitWithoutStartedOrAccepted(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)
	before, after := brr.NewID(), brr.NewID()
	w, err := b.client.Watch(ctx, before, func(*brr.Event) {})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{before, after} {
		b.publishEvent(t, jobEvent(id, brr.KindPing, brr.StatusStarted))
		done := jobEvent(id, brr.KindPing, brr.StatusSucceeded)
		b.publishEvent(t, done)
		b.putResult(t, done)
	}
	if e, err := w.Result(ctx); err != nil || e.Status != brr.StatusSucceeded || e.JobID != before {
		t.Fatalf("Watch before the end: %+v, %v", e, err)
	}
	if e, err := b.client.Wait(ctx, after, nil); err != nil || e.Status != brr.StatusSucceeded || e.JobID != after {
		t.Fatalf("Wait after the end: %+v, %v", e, err)
	}
}
