package state

import (
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

func sum(counts []uint64) uint64 {
	var n uint64
	for _, c := range counts {
		n += c
	}
	return n
}

// TestCommitStats checks that the commit figures add up: every write is counted once,
// in one commit, every commit has a latency and a disk time, and concurrent writes
// share commits.
func TestCommitStats(t *testing.T) {
	db := open(t)
	before := db.CommitStats()
	const writers, each = 8, 25
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				rec := &JobRecord{ID: "j-" + strconv.Itoa(w) + "-" + strconv.Itoa(i), Kind: brr.KindPing, Pool: "default",
					Status: brr.StatusSucceeded, Created: time.Now(), Finished: time.Now()}
				if err := db.PutJob(rec, OutboxMsg{Subject: "brr.events.job.ping.succeeded", MsgID: rec.ID, Data: []byte("{}")}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	s := db.CommitStats()
	commits, writes := s.Commits-before.Commits, s.Writes-before.Writes
	if got, want := writes, uint64(writers*each); got != want {
		t.Fatalf("Writes = %d, want %d (one per PutJob)", got, want)
	}
	if commits == 0 || commits > writes {
		t.Fatalf("Commits = %d for %d writes, want 1..%d", commits, writes, writes)
	}
	for name, h := range map[string]Histogram{"Commit": s.Commit, "Disk": s.Disk, "PerCommit": s.PerCommit} {
		if got := sum(h.Counts); got != s.Commits {
			t.Errorf("%s histogram counts %d commits, want %d", name, got, s.Commits)
		}
	}
	if got := sum(s.Wait.Counts); got != s.Writes {
		t.Errorf("Wait histogram counts %d writes, want %d", got, s.Writes)
	}
	if got, want := s.PerCommit.Sum, float64(s.Writes); got != want {
		t.Errorf("PerCommit.Sum = %v, want %v (the writes)", got, want)
	}
	if s.Commit.Sum <= 0 || s.Busy <= 0 {
		t.Errorf("Commit.Sum = %v, Busy = %v: want > 0", s.Commit.Sum, s.Busy)
	}
	// The disk part is bbolt's write time, within the whole commit; a write waits at
	// least as long as the commit that carried it.
	if s.Disk.Sum <= 0 || s.Disk.Sum > s.Commit.Sum {
		t.Errorf("Disk.Sum = %v, want in (0, Commit.Sum = %v]", s.Disk.Sum, s.Commit.Sum)
	}
	if s.Wait.Sum < s.Commit.Sum-before.Commit.Sum {
		t.Errorf("Wait.Sum = %v < Commit.Sum = %v", s.Wait.Sum, s.Commit.Sum)
	}
	// A returned copy is the caller's: the next commit does not change it.
	counts := sum(s.Commit.Counts)
	if err := db.Enqueue(OutboxMsg{Subject: "x", MsgID: "y"}); err != nil {
		t.Fatal(err)
	}
	if got := sum(s.Commit.Counts); got != counts {
		t.Errorf("a CommitStats copy changed after a commit: %d, was %d", got, counts)
	}
	if got := db.CommitStats().Commits; got != s.Commits+1 {
		t.Errorf("Commits after one more write = %d, want %d", got, s.Commits+1)
	}
}

func TestLatencyBucket(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0},
		{100 * time.Microsecond, 0},
		{101 * time.Microsecond, 1},
		{3 * time.Millisecond, 5},
		{time.Second, len(CommitLatencyBounds) - 1},
		{time.Hour, len(CommitLatencyBounds)},
	} {
		if got := latencyBucket(c.d); got != c.want {
			t.Errorf("latencyBucket(%v) = %d, want %d", c.d, got, c.want)
		}
	}
}
