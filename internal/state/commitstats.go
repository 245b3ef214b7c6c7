package state

import (
	"sync"
	"time"
)

// CommitLatencyBounds are the upper bounds of the buckets of CommitStats' latency
// histograms (the last bucket is everything above the last bound): a commit on a
// quiet SSD takes well under a millisecond, one behind a disk still writing back
// gigabytes tens to hundreds.
var CommitLatencyBounds = []time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond, 10 * time.Millisecond,
	25 * time.Millisecond, 50 * time.Millisecond, 100 * time.Millisecond,
	250 * time.Millisecond, time.Second,
}

// CommitWritesBounds are the upper bounds of the buckets of CommitStats.Writes: how
// many writes (PutJob, Enqueue, outbox removals…) shared one commit.
var CommitWritesBounds = []int{1, 2, 4, 8, 16, 32, 64, 128, 256, 512}

// Histogram counts observations in buckets: Counts[i] are those at most Bounds[i]
// (not cumulative), the last element those above every bound.
type Histogram struct {
	Counts []uint64
	Sum    float64 // of the observations, in seconds for latencies
}

// CommitStats describe the commits of the state database since it was opened: how many,
// how long they took, how much of that was the disk, and how many writes shared each.
// They say what a job's settle waits on (its record is durable before it is acked).
type CommitStats struct {
	// Commits counts the write transactions committed (or rolled back on an error).
	Commits uint64
	// Writes counts the writes they carried: a commit carries every write waiting when
	// it starts (group commit).
	Writes uint64
	// Commit is the latency of whole commits: applying the writes, writing the pages
	// and syncing the file.
	Commit Histogram
	// Disk is the part of each commit in bbolt's write to the file: the pwrites of the
	// dirty pages and of the meta page and the two fdatasyncs between them.
	Disk Histogram
	// Wait is, per write, the time from its request to its commit's end: the queue
	// behind the commit in progress, and its own commit. A job's settle waits this long.
	Wait Histogram
	// PerCommit is how many writes shared each commit (CommitWritesBounds).
	PerCommit Histogram
	// Busy is the time the commit loop spent committing (the sum of Commit).
	Busy time.Duration
}

// commitStats accumulates CommitStats; the commit loop is its only writer, Stats reads.
type commitStats struct {
	mu sync.Mutex
	s  CommitStats
}

func newCommitStats() *commitStats {
	cs := &commitStats{}
	n := len(CommitLatencyBounds) + 1
	cs.s.Commit.Counts = make([]uint64, n)
	cs.s.Disk.Counts = make([]uint64, n)
	cs.s.Wait.Counts = make([]uint64, n)
	cs.s.PerCommit.Counts = make([]uint64, len(CommitWritesBounds)+1)
	return cs
}

func latencyBucket(d time.Duration) int {
	for i, b := range CommitLatencyBounds {
		if d <= b {
			return i
		}
	}
	return len(CommitLatencyBounds)
}

// observe records one commit of batch that ran from start to end, disk of it in the
// write to the file; each write waited from its request (queued) to end. It runs on the
// commit loop after every commit, so it allocates nothing.
func (cs *commitStats) observe(start, end time.Time, disk time.Duration, batch []*commitReq) {
	total := end.Sub(start)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	s := &cs.s
	s.Commits++
	s.Writes += uint64(len(batch))
	s.Busy += total
	s.Commit.Counts[latencyBucket(total)]++
	s.Commit.Sum += total.Seconds()
	s.Disk.Counts[latencyBucket(disk)]++
	s.Disk.Sum += disk.Seconds()
	for _, r := range batch {
		from := r.queued
		if from.IsZero() {
			from = start // an outbox removal the loop added itself
		}
		w := end.Sub(from)
		s.Wait.Counts[latencyBucket(w)]++
		s.Wait.Sum += w.Seconds()
	}
	i := len(CommitWritesBounds)
	for j, b := range CommitWritesBounds {
		if len(batch) <= b {
			i = j
			break
		}
	}
	s.PerCommit.Counts[i]++
	s.PerCommit.Sum += float64(len(batch))
}

// CommitStats returns the commit figures so far.
func (db *DB) CommitStats() CommitStats {
	cs := db.stats
	cs.mu.Lock()
	defer cs.mu.Unlock()
	s := cs.s
	for _, h := range []*Histogram{&s.Commit, &s.Disk, &s.Wait, &s.PerCommit} {
		h.Counts = append([]uint64(nil), h.Counts...)
	}
	return s
}
