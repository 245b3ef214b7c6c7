package events

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
)

func TestSweeperDeadLettersAbandonedJob(t *testing.T) {
	b := setup(t, Config{MaxDeliver: 2, AckWait: time.Second})
	ctx := context.Background()
	sw := NewSweeper(b.js, b.db, b.cfg, zerolog.Nop())
	sctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sw.Run(sctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("sweeper Run: %v", err)
		}
	})

	// A worker that takes the job and dies, twice: the durable consumer as Run makes it,
	// pulled raw and never acked.
	cons, err := b.js.CreateOrUpdateConsumer(ctx, "BRR_JOBS", consumerConfig(b.cfg.withDefaults(), "default"))
	if err != nil {
		t.Fatalf("create consumer: %v", err)
	}
	publishJob(t, b.js, pingJob("job-abandoned"))
	for attempt := 1; attempt <= 2; attempt++ {
		batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatalf("fetch %d: %v", attempt, err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if meta, _ := m.Metadata(); meta == nil || int(meta.NumDelivered) != attempt {
				t.Fatalf("delivery %d metadata = %+v", attempt, meta)
			}
		}
		if n != 1 {
			t.Fatalf("fetch %d got %d messages, want 1", attempt, n)
		}
	}
	// A live worker of the pool keeps pulling: the server finds the job out of attempts
	// when it looks for the next message to give it, and sends the advisory.
	b.start(t, b.db)

	e := b.ev.wait(t, "job-abandoned", brr.StatusDead)
	if e.Attempt != 2 || e.Kind != brr.KindPing {
		t.Errorf("dead event = %+v", e)
	}
	dl := deadLetters(t, b.js, 1)["job-abandoned"]
	if dl.Status != brr.StatusDead || dl.Attempts != 2 || dl.Error == "" {
		t.Errorf("dead letter = %+v, want status dead after 2 deliveries", dl)
	}
	if _, err := brr.DecodeJob(dl.Request); err != nil {
		t.Errorf("dead letter request: %v", err)
	}
	waitJobsEmpty(t, b.js)
	rec, err := b.db.Job("job-abandoned")
	if err != nil || rec.Status != brr.StatusDead {
		t.Errorf("record = %+v, %v; want dead", rec, err)
	}
	if got := b.h.count("job-abandoned"); got != 0 {
		t.Errorf("the live worker ran the abandoned job %d times, want 0", got)
	}
}
