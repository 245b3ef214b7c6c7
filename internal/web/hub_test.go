package web

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestHubSubscribesOnlyWhileStreaming: the live feed holds its subscription on
// brr.events.> only while a stream is open. Without one, every event the worker
// publishes was delivered to the process and decoded for nobody (a tenth of a ping job's
// CPU in bench-pipeline); with one, each event stored after the stream answered reaches it.
func TestHubSubscribesOnlyWhileStreaming(t *testing.T) {
	ns := natstest.Start(t)
	nc := ns.Connect(t)
	pub := ns.Connect(t)
	h := newHub()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- h.run(ctx, nc, "brr.events.>") }()
	testkit.Eventually(t, 10*time.Second, "the hub to start", func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.nc != nil
	})
	if n := nc.NumSubscriptions(); n != 0 {
		t.Fatalf("with no stream open the hub holds %d subscriptions, want 0", n)
	}

	event := func(id string) {
		t.Helper()
		data, err := json.Marshal(&brr.Event{V: brr.Version, ID: id, Type: brr.EventJob, Status: brr.StatusStarted, Kind: brr.KindPing, JobID: "j", Time: time.Now().UTC()})
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish("brr.events.job.ping.started", data); err != nil {
			t.Fatal(err)
		}
		if err := pub.Flush(); err != nil {
			t.Fatal(err)
		}
	}
	for round := range 2 { // open, close, and open again
		c := &streamClient{filter: "brr.events.>", frames: make(chan []byte, streamBuffer)}
		if err := h.add(c); err != nil {
			t.Fatal(err)
		}
		if n := nc.NumSubscriptions(); n != 1 {
			t.Fatalf("round %d: with a stream open the hub holds %d subscriptions, want 1", round, n)
		}
		event("e" + string(rune('0'+round)))
		select {
		case f := <-c.frames:
			if want := "id: e" + string(rune('0'+round)) + "\n"; string(f[:len(want)]) != want {
				t.Fatalf("round %d: frame %q", round, f)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("round %d: the event published after the stream opened did not reach it", round)
		}
		h.remove(c)
		if n := nc.NumSubscriptions(); n != 0 {
			t.Fatalf("round %d: after the last stream closed the hub holds %d subscriptions, want 0", round, n)
		}
	}

	last := &streamClient{filter: "brr.events.>", frames: make(chan []byte, streamBuffer)}
	if err := h.add(last); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if _, ok := <-last.frames; ok {
		t.Fatal("a stream open at shutdown got a frame, want its channel closed")
	}
	if n := nc.NumSubscriptions(); n != 0 {
		t.Fatalf("after the hub stopped it holds %d subscriptions, want 0", n)
	}
	if err := h.add(&streamClient{frames: make(chan []byte, 1)}); err == nil {
		t.Fatal("a stream was added to a stopped hub")
	}
}
