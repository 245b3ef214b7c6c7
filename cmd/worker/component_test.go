package main

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/brr-dev/brr/internal/testkit"
)

func newTestWorker() *worker {
	return &worker{ready: &readiness{}, failed: make(chan error, 1), log: zerolog.Nop()}
}

// TestCloseOrder starts components and keeps resources, and checks that close stops the
// components last started first, then closes the resources last kept first, gathering
// every error and naming a component that does not stop in time.
func TestCloseOrder(t *testing.T) {
	w := newTestWorker()
	var logs testkit.SyncBuffer
	w.log = zerolog.New(&logs)
	var (
		mu    sync.Mutex
		order []string
	)
	note := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, s)
	}
	ctx := context.Background()
	runUntilDone := func(name string) func(context.Context) error {
		return func(ctx context.Context) error {
			<-ctx.Done()
			note("ran " + name)
			return ctx.Err() // context.Canceled at shutdown is not news
		}
	}
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })

	w.keep("state", func() error { note("closed state"); return nil })
	w.start(ctx, component{name: "http", run: runUntilDone("http"), timeout: time.Second,
		stop: func(context.Context) error { note("stop http"); return errors.New("shut down http: busy") }})
	w.keep("nats", func() error { note("closed nats"); return errors.New("flush failed") })
	w.start(ctx, component{name: "stuck", run: func(context.Context) error { <-stuck; return nil }, timeout: 10 * time.Millisecond})
	w.start(ctx, component{name: "consumer", run: runUntilDone("consumer"), timeout: time.Second})

	err := w.close()
	want := []string{"ran consumer", "stop http", "ran http", "closed nats", "closed state"}
	mu.Lock()
	got := slices.Clone(order)
	mu.Unlock()
	if !slices.Equal(got, want) {
		t.Fatalf("close ran %q, want %q", got, want)
	}
	for _, want := range []string{"stuck did not stop within 10ms", "shut down http: busy", "close nats: flush failed"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("close = %v, want it to say %q", err, want)
		}
	}
	// The hang is logged with the stacks of every goroutine, the stuck one's among them.
	if l := logs.String(); !strings.Contains(l, "stuck did not stop within 10ms") || !strings.Contains(l, "TestCloseOrder") || !strings.Contains(l, "goroutine ") {
		t.Errorf("log of a component that did not stop = %q, want its name and the goroutines' stacks", l)
	}
	if again := w.close(); again != err {
		t.Errorf("second close = %v, want the first's %v", again, err)
	}
	select {
	case err := <-w.failed:
		t.Errorf("a component stopped by close was reported as failed: %v", err)
	default:
	}
}

// TestComponentStopsOnItsOwn checks that a component that returns while the worker is not
// stopping is reported, with its name, even when it returns nil.
func TestComponentStopsOnItsOwn(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want string
	}{
		{errors.New("subscribe: permissions violation"), "outbox: subscribe: permissions violation"},
		{nil, "outbox: stopped unexpectedly"},
	} {
		w := newTestWorker()
		w.start(context.Background(), component{name: "outbox", run: func(context.Context) error { return tt.err }, timeout: time.Second})
		select {
		case err := <-w.failed:
			if err.Error() != tt.want {
				t.Errorf("failed = %q, want %q", err, tt.want)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no failure reported for a component that returned %v", tt.err)
		}
		if err := w.close(); err != nil {
			t.Errorf("close after the failure: %v", err)
		}
	}
}

// TestClosePartlyStarted closes a worker that failed to start before any component: what
// it opened is closed, and closing it again does nothing.
func TestClosePartlyStarted(t *testing.T) {
	w := newTestWorker()
	closed := 0
	w.keep("state", func() error { closed++; return nil })
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if err := w.close(); err != nil {
		t.Fatal(err)
	}
	if closed != 1 {
		t.Fatalf("state closed %d times, want 1", closed)
	}
}
