package jobs

import (
	"context"
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

// A reporter passes on the first report, holds back the ones that come too soon, and
// passes on the last one held back when the job ends: the func sees the latest state.
func TestReporterHoldsBackAndFlushes(t *testing.T) {
	var got []brr.Progress
	pr := newReporter(func(p brr.Progress) { got = append(got, p) })
	start := time.Now()
	for i := range 10000 {
		pr.report(brr.Progress{Files: int64(i + 1)})
	}
	pr.flush()
	elapsed := time.Since(start)
	if most := int(elapsed/progressEvery) + 2; len(got) > most || len(got) < 2 {
		t.Fatalf("%d reports in %v, want 2 to %d", len(got), elapsed, most)
	}
	if got[0].Files != 1 || got[len(got)-1].Files != 10000 {
		t.Errorf("first report %d, last %d; want 1 and 10000", got[0].Files, got[len(got)-1].Files)
	}
	pr.flush()
	if n := len(got); got[n-1].Files != 10000 || n > int(time.Since(start)/progressEvery)+2 {
		t.Errorf("a second flush reported again: %d reports", n)
	}
}

// The ticking form reports the state at its end, held back until the job ends if it
// comes too soon.
func TestReporterTickReportsTheEnd(t *testing.T) {
	var got []brr.Progress
	pr := newReporter(func(p brr.Progress) { got = append(got, p) })
	pr.report(brr.Progress{Phase: "before"})
	var n int64
	stop := pr.tick(context.Background(), func() brr.Progress { n++; return brr.Progress{Phase: "tick", Files: n} })
	stop()
	pr.flush()
	if last := got[len(got)-1]; last.Phase != "tick" || last.Files != n {
		t.Fatalf("last report %+v, want the tick's last state (%d)", last, n)
	}

	var none *reporter // a job handed no progress func
	none.report(brr.Progress{})
	none.tick(context.Background(), func() brr.Progress { t.Fatal("a nil reporter ticked"); return brr.Progress{} })()
	none.flush()
}
