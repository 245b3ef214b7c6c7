package brr_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/brr-dev/brr"
)

func TestSubscribeFilters(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)
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
