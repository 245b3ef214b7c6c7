package testkit

import (
	"context"
	"testing"
	"time"
)

// WaitFor calls cond until it returns true or d has passed, and reports whether it held.
// It polls every few milliseconds at first, then every 100 ms: a condition on memory is
// seen at once, and one that asks a server is not asked too often.
func WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	pause := 5 * time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 100*time.Millisecond)
	}
}

// Eventually fails the test unless cond holds within d; what names the condition in
// the failure.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !WaitFor(d, cond) {
		t.Fatalf("timed out after %s waiting for %s", d, what)
	}
}

// Context returns a context that ends after d, or when the test ends.
func Context(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
