package testkit

import (
	"context"
	"testing"
)

// Go runs fn, a component's Run(ctx) loop, in a goroutine until the test ends: a cleanup
// cancels fn's context and waits for fn to return. Cleanups run last-registered first,
// so a component started after what it uses (a server, a database) stops before that is
// closed. An error fn returns, before or after its cancellation, fails the test: what
// names fn in the failure.
func Go(t testing.TB, what string, fn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil {
			t.Errorf("%s: %v", what, err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}
