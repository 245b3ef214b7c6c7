package health_test

import (
	"context"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/health"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestRepositoryCheckStopsWithTheWorker: the server stops answering just after it
// created the check's consumer, as a server restarting under a worker does. The check's
// first fetch recreates that consumer, and nats.go retried that forever with backoff, on
// a 10 s timeout of its own and without a context: a worker told to stop after a NATS
// restart waited on its health checks past their 10 s and exited 1 (the TestRemoteNATS
// flake; its goroutine dump showed FetchNoWait in the ordered consumer's reset). The
// check must return once its context is done.
func TestRepositoryCheckStopsWithTheWorker(t *testing.T) {
	ctx := context.Background()
	s := natstest.StartListening(t)
	_, direct := s.JetStream(t)
	if err := events.EnsureStreams(ctx, direct, events.Config{}); err != nil {
		t.Fatal(err)
	}
	stall := natstest.StartStaller(t, s.Addr().String())
	_, js := stall.JetStream(t)
	check := &health.RepositoryCheck{JS: js, Repos: func() []string { return []string{"local"} }, DefaultRepo: "local"}

	stall.StallAfter("consumer_create_response")
	defer func() {
		if stall.Stalled() {
			stall.Resume()
		}
	}()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		_, err := check.Run(runCtx, health.Tick{Now: time.Now()})
		done <- err
	}()
	testkit.Eventually(t, 30*time.Second, "the server stalls after creating the check's consumer", stall.Stalled)
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Fatalf("check with no answer from the server returned no error")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the repository check did not return 30 s after its context was cancelled")
	}
}
