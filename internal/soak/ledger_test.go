package soak_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/brr-dev/brr"
)

// ledger is what the driver knows: every job it published and how it ended, every
// snapshot its backups made with the manifest of what they backed up, and what went
// wrong. It is safe for concurrent use by the lanes.
type ledger struct {
	mu        sync.Mutex
	jobs      map[string]*job      // by job id
	snapshots map[string]*snapshot // by snapshot id
	problems  []string
	// lastEnd is when a job last ended; the watchdog reads it.
	lastEnd time.Time
	// publishRetries counts publishes made again (same job id) after no answer.
	publishRetries int
	// restored counts restores whose tree was compared with the manifest, and their bytes.
	restored      int
	restoredBytes int64
}

// job is one job the driver published.
type job struct {
	id        string
	kind      brr.Kind
	what      string // for messages: "backup of /x", "restore of 1a2b… from offsite"
	published time.Time
	end       *brr.Event // its final event, as Wait or the results bucket gave it
}

// snapshot is one snapshot a backup of the driver made.
type snapshot struct {
	id     string
	source string
	keep   bool // tagged keep: retention never removes it
	job    string
	m      manifest
}

func newLedger() *ledger {
	return &ledger{jobs: make(map[string]*job), snapshots: make(map[string]*snapshot), lastEnd: time.Now()}
}

func (l *ledger) published(id string, kind brr.Kind, what string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.jobs[id] = &job{id: id, kind: kind, what: what, published: time.Now()}
}

func (l *ledger) ended(id string, e *brr.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if j := l.jobs[id]; j != nil {
		j.end = e
	}
	l.lastEnd = time.Now()
}

func (l *ledger) retriedPublish() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.publishRetries++
}

func (l *ledger) problem(format string, a ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, time.Now().Format("15:04:05 ")+fmt.Sprintf(format, a...))
}

func (l *ledger) addSnapshot(sn *snapshot) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.snapshots[sn.id] = sn
}

func (l *ledger) snapshot(id string) *snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.snapshots[id]
}

// kept returns the snapshots tagged keep, in no particular order.
func (l *ledger) kept() []*snapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*snapshot
	for _, sn := range l.snapshots {
		if sn.keep {
			out = append(out, sn)
		}
	}
	return out
}

func (l *ledger) restoredTree(bytes int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.restored++
	l.restoredBytes += bytes
}

// inFlight returns the jobs published and not ended, oldest first.
func (l *ledger) inFlight() []*job {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []*job
	for _, j := range l.jobs {
		if j.end == nil {
			out = append(out, j)
		}
	}
	sort.Slice(out, func(a, b int) bool { return out[a].published.Before(out[b].published) })
	return out
}

// all returns every job, in the order they were published.
func (l *ledger) all() []*job {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*job, 0, len(l.jobs))
	for _, j := range l.jobs {
		out = append(out, j)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].published.Before(out[b].published) })
	return out
}

func (l *ledger) sinceLastEnd() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	return time.Since(l.lastEnd)
}

func (l *ledger) problemList() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.problems...)
}

// byKind counts jobs by kind and final status: "backup: 120 succeeded; restore: 30
// succeeded, 1 failed; …".
func (l *ledger) byKind() string {
	counts := map[brr.Kind]map[string]int{}
	for _, j := range l.all() {
		if counts[j.kind] == nil {
			counts[j.kind] = map[string]int{}
		}
		status := "not ended"
		if j.end != nil {
			status = string(j.end.Status)
		}
		counts[j.kind][status]++
	}
	var parts []string
	for _, k := range brr.Kinds {
		c := counts[k]
		if c == nil {
			continue
		}
		total := 0
		var st []string
		for s, n := range c {
			total += n
			st = append(st, fmt.Sprintf("%d %s", n, s))
		}
		sort.Strings(st)
		parts = append(parts, fmt.Sprintf("%s %d (%s)", k, total, strings.Join(st, ", ")))
	}
	return strings.Join(parts, "; ")
}
