package jobs

import (
	"context"
	"sync"
	"time"

	"github.com/brr-dev/brr"
)

// progressEvery is the least time between two calls of the progress func a job was
// handed; only the job's last report may come sooner. The consume loop publishes every
// report it gets as an event, so this is what bounds progress events.
const progressEvery = 250 * time.Millisecond

// reporter is how every job reports its progress: it calls the job's progress func at most
// once every progressEvery. A report that comes sooner is held back, replaced by the next
// one, and sent when one is due or by flush, which the job calls when it ends: the func
// sees the latest state, and the last state of the job, never a flood. A job whose work
// reports itself (per blob, per object) calls report; one that has counters to read calls
// tick. A nil *reporter, for a job handed no progress func, does nothing.
type reporter struct {
	progress func(brr.Progress)

	mu      sync.Mutex
	last    time.Time // when progress was last called; zero: never
	pending *brr.Progress
}

// newReporter returns the reporter of a job handed progress, nil when progress is nil.
func newReporter(progress func(brr.Progress)) *reporter {
	if progress == nil {
		return nil
	}
	return &reporter{progress: progress}
}

// report passes p on if progressEvery has passed since the last report, and holds it
// back otherwise.
func (r *reporter) report(p brr.Progress) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && time.Since(r.last) < progressEvery {
		r.pending = &p
		return
	}
	r.send(p)
}

// flush passes on the report held back, if any. A job calls it once, when it ends: it is
// the one report that may come sooner than progressEvery after the one before.
func (r *reporter) flush() {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending != nil {
		r.send(*r.pending)
	}
}

// send calls progress with p; r.mu is held, so that calls neither overlap nor reorder.
func (r *reporter) send(p brr.Progress) {
	r.last = time.Now()
	r.pending = nil
	r.progress(p)
}

// untilDue is how long until a report would be passed on.
func (r *reporter) untilDue() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last.IsZero() {
		return 0
	}
	return progressEvery - time.Since(r.last)
}

// tick reports what now returns every progressEvery, starting progressEvery from now,
// until ctx is done or the returned func is called. That func reports once more (the
// state at the end of what was ticked), and returns when the ticking has stopped.
func (r *reporter) tick(ctx context.Context, now func() brr.Progress) (stop func()) {
	if r == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTimer(progressEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			r.report(now())
			t.Reset(max(r.untilDue(), time.Millisecond))
		}
	}()
	return func() {
		cancel()
		<-done
		r.report(now())
	}
}

// fillRate sets the rate and, when the totals are final, the time left.
func fillRate(p *brr.Progress, start time.Time, totalsFinal bool) {
	secs := time.Since(start).Seconds()
	if secs <= 0 {
		return
	}
	p.BytesPerSec = float64(p.Bytes) / secs
	if totalsFinal && p.BytesPerSec > 0 && p.TotalBytes > p.Bytes {
		p.ETASeconds = float64(p.TotalBytes-p.Bytes) / p.BytesPerSec
	}
}
