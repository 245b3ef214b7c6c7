package events

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// resultLog collects the statuses written to each job's entry in BRR_RESULTS, as they
// are published (a core subscription to the bucket's subjects sees every put, also those
// the next put replaces at once).
type resultLog struct {
	mu  sync.Mutex
	byJ map[string][]brr.Status
}

func watchResults(t *testing.T, nc *nats.Conn, cfg Config) *resultLog {
	t.Helper()
	l := &resultLog{byJ: map[string][]brr.Status{}}
	sub, err := nc.Subscribe("$KV."+cfg.Subjects.ResultsBucket()+".>", func(m *nats.Msg) {
		if e, err := brr.DecodeEvent(m.Data); err == nil {
			l.mu.Lock()
			l.byJ[e.JobID] = append(l.byJ[e.JobID], e.Status)
			l.mu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	return l
}

func (l *resultLog) of(id string) []brr.Status {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]brr.Status(nil), l.byJ[id]...)
}

// TestJobThatStartsAtOnce: a job that gets a slot at once and ends in a moment is
// announced started, not accepted; its BRR_RESULTS entry is written once, with its end
// (no started entry); its record is written once, succeeded; Wait returns its end.
func TestJobThatStartsAtOnce(t *testing.T) {
	b := setup(t, Config{})
	results := watchResults(t, b.nc, b.cfg)
	b.start(t, b.db)
	client := newClient(t, b)
	publishJob(t, b.js, pingJob("quick"))
	e, err := client.Wait(testkit.Context(t, 20*time.Second), "quick", nil)
	if err != nil || e.Status != brr.StatusSucceeded {
		t.Fatalf("Wait = %+v, %v", e, err)
	}
	b.ev.wait(t, "quick", brr.StatusStarted)
	waitJobsEmpty(t, b.js)
	if n := len(b.ev.find("quick", brr.StatusAccepted)); n != 0 {
		t.Errorf("%d accepted events for a job that started at once, want 0", n)
	}
	if got := results.of("quick"); len(got) != 1 || got[0] != brr.StatusSucceeded {
		t.Errorf("BRR_RESULTS writes of a quick job: %v, want [succeeded]", got)
	}
	rec, err := b.db.Job("quick")
	if err != nil || rec.Status != brr.StatusSucceeded || rec.Started.IsZero() {
		t.Fatalf("record = %+v, %v; want succeeded with its start time", rec, err)
	}
}

// TestJobThatWaitsOrRunsLong: with one slot, a long job runs and a second waits for the
// slot. The long one is announced started and, once it has run for watchAfter, gets its
// started entry in BRR_RESULTS and its started record while it runs; the waiting one is
// announced accepted (it has to wait), then started. Wait returns the end of both.
func TestJobThatWaitsOrRunsLong(t *testing.T) {
	b := setup(t, Config{Concurrency: 1})
	results := watchResults(t, b.nc, b.cfg)
	release := make(chan struct{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		if job.ID == "long" {
			<-release
		}
		return &brr.Result{Ping: &brr.PingResult{Worker: "w"}}, nil
	}
	b.start(t, b.db)
	client := newClient(t, b)
	ctx := testkit.Context(t, 30*time.Second)
	publishJob(t, b.js, pingJob("long"))
	b.ev.wait(t, "long", brr.StatusStarted)
	publishJob(t, b.js, pingJob("behind"))

	accepted := b.ev.wait(t, "behind", brr.StatusAccepted)
	if accepted.Attempt != 1 || accepted.Kind != brr.KindPing || accepted.Worker != "w1" || accepted.Pool != brr.DefaultPool {
		t.Errorf("accepted event = %+v", accepted)
	}
	testkit.Eventually(t, 15*time.Second, "the started entry of the long job", func() bool {
		e, err := client.Job(ctx, "long")
		return err == nil && e.Status == brr.StatusStarted
	})
	testkit.Eventually(t, 15*time.Second, "the started record of the long job", func() bool {
		rec, err := b.db.Job("long")
		return err == nil && rec.Status == brr.StatusStarted
	})
	close(release)
	for _, id := range []string{"long", "behind"} {
		if e, err := client.Wait(ctx, id, nil); err != nil || e.Status != brr.StatusSucceeded {
			t.Fatalf("Wait %s = %+v, %v", id, e, err)
		}
	}
	if n := len(b.ev.find("long", brr.StatusAccepted)); n != 0 {
		t.Errorf("%d accepted events for the job that started at once, want 0", n)
	}
	if got := b.ev.find("behind", brr.StatusStarted); len(got) != 1 || got[0].Time.Before(accepted.Time) {
		t.Errorf("started events of the waiting job: %+v, want one after accepted at %v", got, accepted.Time)
	}
	if got := results.of("long"); len(got) != 2 || got[0] != brr.StatusStarted || got[1] != brr.StatusSucceeded {
		t.Errorf("BRR_RESULTS writes of the long job: %v, want [started succeeded]", got)
	}
	if got := results.of("behind"); len(got) != 1 || got[0] != brr.StatusSucceeded {
		t.Errorf("BRR_RESULTS writes of the waiting job: %v, want [succeeded]", got)
	}
}
