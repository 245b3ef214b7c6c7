package events

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr/internal/natstest"
)

func TestEnsureStreamsConcurrentAndIdempotent(t *testing.T) {
	srv := natstest.Start(t)
	_, js1 := srv.JetStream(t)
	_, js2 := srv.JetStream(t)
	ctx := context.Background()
	cfg := Config{DedupWindow: 15 * time.Minute, EventsMaxAge: 48 * time.Hour}

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, js := range []jetstream.JetStream{js1, js2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = EnsureStreams(ctx, js, cfg)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("EnsureStreams %d: %v", i, err)
		}
	}
	if err := EnsureStreams(ctx, js1, cfg); err != nil {
		t.Fatalf("EnsureStreams again: %v", err)
	}

	info := func(name string) *jetstream.StreamInfo {
		s, err := js1.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		i, err := s.Info(ctx)
		if err != nil {
			t.Fatalf("stream %s info: %v", name, err)
		}
		return i
	}
	jobs := info("BRR_JOBS").Config
	if jobs.Retention != jetstream.WorkQueuePolicy || jobs.Duplicates != 15*time.Minute || !jobs.AllowMsgSchedules ||
		!jobs.AllowMsgTTL || jobs.Storage != jetstream.FileStorage || len(jobs.Subjects) != 3 {
		t.Errorf("BRR_JOBS config = %+v", jobs)
	}
	ev := info("BRR_EVENTS").Config
	if ev.Retention != jetstream.LimitsPolicy || ev.MaxAge != 48*time.Hour || ev.Duplicates != 2*time.Minute || ev.Subjects[0] != "brr.events.>" {
		t.Errorf("BRR_EVENTS config = %+v", ev)
	}
	dlq := info("BRR_DLQ").Config
	if dlq.Retention != jetstream.LimitsPolicy || dlq.MaxAge != 30*24*time.Hour || dlq.Subjects[0] != "brr.dlq.>" {
		t.Errorf("BRR_DLQ config = %+v", dlq)
	}
	for bucket, ttl := range map[string]time.Duration{"BRR_LEASES": 5 * time.Second, "BRR_RESULTS": 7 * 24 * time.Hour, "BRR_HEALTH": 0, "BRR_REPOS": 0} {
		kv, err := js1.KeyValue(ctx, bucket)
		if err != nil {
			t.Fatalf("bucket %s: %v", bucket, err)
		}
		st, err := kv.Status(ctx)
		if err != nil {
			t.Fatalf("bucket %s status: %v", bucket, err)
		}
		if st.TTL() != ttl || st.History() != 1 {
			t.Errorf("bucket %s: ttl %v history %d, want %v and 1", bucket, st.TTL(), st.History(), ttl)
		}
	}

	// A changed setting is applied to the existing stream.
	cfg.EventsMaxAge = 24 * time.Hour
	if err := EnsureStreams(ctx, js2, cfg); err != nil {
		t.Fatalf("EnsureStreams with a new max age: %v", err)
	}
	if got := info("BRR_EVENTS").Config.MaxAge; got != 24*time.Hour {
		t.Errorf("BRR_EVENTS max age = %v after update, want 24h", got)
	}
}
