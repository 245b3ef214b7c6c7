// Package clock waits: Sleep is time.Sleep that a context cuts short, for the loops of the
// worker's long-running parts (the consume loop, the lease keeper, the watcher, the
// notifier) that wait between attempts and must stop at once at shutdown.
package clock

import (
	"context"
	"time"
)

// Sleep waits d, or until ctx is done, and reports whether the whole of d passed: false
// means ctx ended the wait, and the caller should stop.
func Sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
