package events

import (
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
)

// addSchedule stores template as a schedule message on brr.schedules.<name> that the
// server fires every second into the template's job subject.
func addSchedule(t *testing.T, js jetstream.JetStream, name string, template *brr.Job) {
	t.Helper()
	data, err := json.Marshal(template)
	if err != nil {
		t.Fatal(err)
	}
	s := brr.Subjects{}
	msg := nats.NewMsg(s.Schedule(name))
	msg.Data = data
	_, err = js.PublishMsg(context.Background(), msg,
		jetstream.WithScheduleEvery(time.Second), jetstream.WithScheduleTarget(s.Job(template.Pool, template.Kind)))
	if err != nil {
		t.Fatalf("add schedule %s: %v", name, err)
	}
}

func removeSchedule(t *testing.T, js jetstream.JetStream, name string) {
	t.Helper()
	st, err := js.Stream(context.Background(), "BRR_JOBS")
	if err == nil {
		err = st.Purge(context.Background(), jetstream.WithPurgeSubject(brr.Subjects{}.Schedule(name)))
	}
	if err != nil {
		t.Fatalf("remove schedule %s: %v", name, err)
	}
}

// TestFiredJobsGetAnIDPerTick lets the server fire a schedule a few times. Every copy
// carries the template's id; the worker runs each tick once, under "<id>-<seq>", and a
// redelivery of a tick (its first attempt fails) keeps that id.
func TestFiredJobsGetAnIDPerTick(t *testing.T) {
	b := setup(t, Config{})
	var mu sync.Mutex
	var jobs []brr.Job // as the handler saw them, one per call
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		mu.Lock()
		jobs = append(jobs, *job)
		mu.Unlock()
		if attempt == 1 {
			return nil, errors.New("first attempt fails, to be redelivered")
		}
		return &brr.Result{Ping: &brr.PingResult{Worker: "w"}}, nil
	}
	c := b.start(t, b.db)

	template := pingJob(brr.ScheduleID("tick"))
	template.Created = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	before := time.Now()
	addSchedule(t, b.js, "tick", template)
	const ticks = 3
	testkit.Eventually(t, 15*time.Second, "three fired jobs to succeed", func() bool { return c.Stats().Done >= ticks })
	removeSchedule(t, b.js, "tick")
	waitJobsEmpty(t, b.js)

	mu.Lock()
	defer mu.Unlock()
	pattern := regexp.MustCompile(`^s-tick-[0-9]+$`)
	calls := map[string]int{}
	for _, j := range jobs {
		if !pattern.MatchString(j.ID) {
			t.Errorf("fired job id %q, want s-tick-<seq>", j.ID)
		}
		if got, want := j.By, "schedule tick"; got != want {
			t.Errorf("job %s: By = %q, want %q", j.ID, got, want)
		}
		if j.Created.Before(before.Add(-time.Second)) {
			t.Errorf("job %s: Created = %s, want the time it was fired (after %s)", j.ID, j.Created, before)
		}
		calls[j.ID]++
	}
	if len(calls) < ticks {
		t.Fatalf("%d distinct ids in %d calls, want at least %d: %v", len(calls), len(jobs), ticks, calls)
	}
	for id, n := range calls {
		if n != 2 {
			t.Errorf("job %s ran %d times, want 2 (a failed attempt, then its redelivery under the same id)", id, n)
		}
		if evs := b.ev.find(id, brr.StatusSucceeded); len(evs) != 1 {
			t.Errorf("job %s has %d succeeded events, want 1", id, len(evs))
		}
		rec, err := b.db.Job(id)
		if err != nil {
			t.Fatalf("record of %s: %v", id, err)
		}
		recorded, err := brr.DecodeJob(rec.Request)
		if err != nil {
			t.Fatalf("recorded request of %s: %v", id, err)
		}
		if recorded.ID != id || recorded.By != "schedule tick" {
			t.Errorf("recorded request of %s has id %q, by %q", id, recorded.ID, recorded.By)
		}
	}
	if got := c.Stats().Duplicates; got != 0 {
		t.Errorf("%d fired jobs taken for duplicates", got)
	}
}

// TestFiredJobKeepsItsBy checks that a template's own By is kept.
func TestFiredJobKeepsItsBy(t *testing.T) {
	b := setup(t, Config{})
	seen := make(chan brr.Job, 16)
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		seen <- *job
		return &brr.Result{}, nil
	}
	b.start(t, b.db)
	template := pingJob(brr.ScheduleID("by"))
	template.By = "ops@example"
	addSchedule(t, b.js, "by", template)
	var j brr.Job
	select {
	case j = <-seen:
	case <-time.After(15 * time.Second):
		t.Fatal("the schedule never fired")
	}
	removeSchedule(t, b.js, "by")
	if j.By != "ops@example" || !strings.HasPrefix(j.ID, "s-by-") {
		t.Fatalf("fired job id %q by %q, want s-by-<seq> by ops@example", j.ID, j.By)
	}
}

func TestFiredID(t *testing.T) {
	s := brr.Subjects{}
	stored := time.Date(2026, 11, 26, 12, 0, 0, 0, time.FixedZone("x", 3600))
	for _, tt := range []struct {
		id, by, scheduler string
		seq               uint64
		wantID, wantBy    string
	}{
		{"s-nightly", "", "brr.schedules.nightly", 42, "s-nightly-42", "schedule nightly"},
		{"s-nightly", "alice", "brr.schedules.nightly", 7, "s-nightly-7", "alice"},
		{"custom", "", "other.subject", 1, "custom-1", "schedule other.subject"},
		{strings.Repeat("a", 128), "", "brr.schedules.x", 18446744073709551615,
			strings.Repeat("a", 128-21) + "-18446744073709551615", "schedule x"},
	} {
		job := pingJob(tt.id)
		job.By = tt.by
		fired(job, s, tt.scheduler, tt.seq, stored)
		if job.ID != tt.wantID || job.By != tt.wantBy {
			t.Errorf("fired(%q, %q, %d): id %q by %q, want %q by %q", tt.id, tt.scheduler, tt.seq, job.ID, job.By, tt.wantID, tt.wantBy)
		}
		if err := job.Validate(); err != nil {
			t.Errorf("fired job %q: %v", job.ID, err)
		}
		if !job.Created.Equal(stored) || job.Created.Location() != time.UTC {
			t.Errorf("Created = %s, want %s in UTC", job.Created, stored)
		}
	}
}
