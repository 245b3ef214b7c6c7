package faults_test

import (
	"context"
	"fmt"
	"maps"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// tally counts the events of jobs by job, each event id once: an event delivered again (a
// subscriber that resumed, an outbox that published again) is counted in again, not as
// a second event.
type tally struct {
	mu    sync.Mutex
	ids   map[string]seen // by event id
	again int
	jobs  map[string]*jobTally
}

// seen is an event as a tally keeps it: its job, and what it said, for messages.
type seen struct{ job, what string }

// jobTally is what one job's events said: how many distinct events of each type and
// status ("job.succeeded", "snapshot.committed"), and the snapshots they named.
type jobTally struct {
	n         map[string]int
	snapshots map[string]bool
}

func newTally() *tally {
	return &tally{ids: make(map[string]seen), jobs: make(map[string]*jobTally)}
}

func (ta *tally) add(e *brr.Event) {
	if e.JobID == "" {
		return // health and other events of no job
	}
	ta.mu.Lock()
	defer ta.mu.Unlock()
	if _, ok := ta.ids[e.ID]; ok {
		ta.again++
		return
	}
	ta.ids[e.ID] = seen{job: e.JobID, what: fmt.Sprintf("%s.%s of job %s by %s at %s", e.Type, e.Status, e.JobID, e.Worker, e.Time.Format("15:04:05.000"))}
	j := ta.jobs[e.JobID]
	if j == nil {
		j = &jobTally{n: make(map[string]int), snapshots: make(map[string]bool)}
		ta.jobs[e.JobID] = j
	}
	j.n[string(e.Type)+"."+string(e.Status)]++
	if e.Snapshot != "" {
		j.snapshots[e.Snapshot] = true
	}
}

// count returns how many distinct events of key ("job.succeeded") job id had.
func (ta *tally) count(id, key string) int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	if j := ta.jobs[id]; j != nil {
		return j.n[key]
	}
	return 0
}

// jobsWith returns how many of ids had at least one event of key.
func (ta *tally) jobsWith(ids []string, key string) int {
	n := 0
	for _, id := range ids {
		if ta.count(id, key) > 0 {
			n++
		}
	}
	return n
}

// againCount returns the number of deliveries of events already counted.
func (ta *tally) againCount() int {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	return ta.again
}

// missing describes the events of jobs that other counted and ta did not.
func (ta *tally) missing(other *tally, jobs []string) []string {
	want := make(map[string]bool, len(jobs))
	for _, id := range jobs {
		want[id] = true
	}
	other.mu.Lock()
	events := maps.Clone(other.ids)
	other.mu.Unlock()
	ta.mu.Lock()
	defer ta.mu.Unlock()
	var out []string
	for id, e := range events {
		if _, ok := ta.ids[id]; !ok && want[e.job] {
			out = append(out, e.what)
		}
	}
	sort.Strings(out)
	return out
}

// subscribedSawAll fails t unless live, a subscriber's tally, has seen every event of
// jobs that stored (what the stream holds) has, within 30 s: a subscriber misses nothing.
func subscribedSawAll(t *testing.T, live, stored *tally, jobs []string) {
	t.Helper()
	if !testkit.WaitFor(30*time.Second, func() bool { return len(live.missing(stored, jobs)) == 0 }) {
		missed := live.missing(stored, jobs)
		t.Errorf("the subscriber missed %d of the events stored: %s", len(missed), strings.Join(firstN(missed, 10), "; "))
		if extra := stored.missing(live, jobs); len(extra) > 0 {
			t.Logf("the subscriber saw %d events the stream does not hold: %s", len(extra), strings.Join(firstN(extra, 10), "; "))
		}
	}
}

// summary returns the number of distinct events of jobs, and their totals by key, for
// the log. Other jobs (a health check's canary pings) are left out.
func (ta *tally) summary(jobs []string) (int, string) {
	ta.mu.Lock()
	defer ta.mu.Unlock()
	totals := map[string]int{}
	events := 0
	for _, id := range jobs {
		if j := ta.jobs[id]; j != nil {
			for k, n := range j.n {
				totals[k] += n
				events += n
			}
		}
	}
	keys := make([]string, 0, len(totals))
	for k := range totals {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		b.WriteString(k + "=" + strconv.Itoa(totals[k]))
	}
	return events, b.String()
}

func firstN(s []string, n int) []string {
	return s[:min(n, len(s))]
}

// storedEvents returns every event under filter that BRR_EVENTS holds now.
func storedEvents(t *testing.T, ctx context.Context, c *brr.Client, filter string) []*brr.Event {
	t.Helper()
	var events []*brr.Event
	retry(t, "read events "+filter, func() (err error) {
		events, err = c.Events(ctx, filter, time.Time{}, 0)
		return err
	})
	return events
}

// retry calls fn until it succeeds, for up to 30 s, and fails t with its last error:
// right after a cluster lost a node, JetStream may not answer until it has elected
// new leaders.
func retry(t *testing.T, what string, fn func() error) {
	t.Helper()
	var err error
	testkit.WaitFor(30*time.Second, func() bool {
		err = fn()
		return err == nil
	})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// stored reads every event under filter that BRR_EVENTS holds now into a tally.
func stored(t *testing.T, ctx context.Context, c *brr.Client, filter string) *tally {
	t.Helper()
	ta := newTally()
	for _, e := range storedEvents(t, ctx, c, filter) {
		ta.add(e)
	}
	return ta
}

// noDeadLetters fails t when BRR_DLQ holds anything.
func noDeadLetters(t *testing.T, ctx context.Context, c *brr.Client) {
	t.Helper()
	var dead []brr.DeadLetterEntry
	retry(t, "read dead letters", func() (err error) {
		dead, err = c.DeadLetters(ctx)
		return err
	})
	for _, d := range dead {
		t.Errorf("dead letter: job %s (%s) %s: %s", d.JobID, d.Kind, d.Status, d.Error)
	}
}

// alreadyProcessed counts the redeliveries of finished jobs that workers acked without
// running them again, from their logs: a job whose ack the server lost comes back.
func alreadyProcessed(workers []*testkit.Worker) int {
	n := 0
	for _, w := range workers {
		n += strings.Count(w.Logs(), "job already processed")
	}
	return n
}
