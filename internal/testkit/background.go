package testkit

import (
	"context"
	"errors"
	"testing"
)

// Go runs fn, a component's Run(ctx) loop, in a goroutine until the test ends: a cleanup
// cancels fn's context and waits for fn to return. Cleanups run last-registered first,
// so a component started after what it uses (a server, a database) stops before that is
// closed. An error fn returns fails the test (what names fn in the failure), except,
// once fn is stopped, one that says so: as brr-worker judges a component at shutdown, a
// test that ends while a component still starts is no failure of the component. A test
// of how a component stops asserts its return itself.
func Go(t testing.TB, what string, fn func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := fn(ctx); err != nil && (ctx.Err() == nil || !errors.Is(err, context.Canceled)) {
			t.Errorf("%s: %v", what, err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
}
