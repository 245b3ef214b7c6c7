package soak_test

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// checker runs the checks at the end of the soak, once the mix has stopped and its jobs
// have ended. What it finds goes into the ledger's problems; summary says what it saw.
type checker struct {
	t  *testing.T
	c  *brr.Client
	js jetstream.JetStream
	d  *driver
	l  *ledger

	summary string
}

func (k *checker) all(ctx context.Context) {
	var parts []string
	parts = append(parts, k.drained(ctx))
	// The repositories first: their verify and restores are jobs too, whose ends the
	// next check counts with the others.
	parts = append(parts, k.repos(ctx)...)
	parts = append(parts, k.endedOnce(ctx)...)
	parts = append(parts, k.deadLetters(ctx))
	k.summary = strings.Join(parts, "; ")
}

// drained waits until the job stream's consumer has nothing pending and nothing waiting
// for an ack, no snoozed job waits for its schedule to fire (brr.snoozes.>: a
// replication waiting for the replica's lease), and both stay so for a few seconds, the
// time a worker's outbox takes to publish the jobs it sets off (replication after each
// backup): those have ended too.
func (k *checker) drained(ctx context.Context) string {
	var last string
	start := time.Now()
	var idleSince time.Time
	ok := testkit.WaitFor(10*time.Minute, func() bool {
		idle, state, err := k.queueIdle(ctx)
		last = state
		if err != nil {
			last = err.Error()
		}
		if !idle {
			idleSince = time.Time{}
			return false
		}
		if idleSince.IsZero() {
			idleSince = time.Now()
		}
		return time.Since(idleSince) >= 5*time.Second
	})
	if !ok {
		k.l.problem("the job queue did not drain within 10 minutes of the mix's end (%s); JetStream:\n%s", last, testkit.JetStreamReport(ctx, k.js))
	}
	return fmt.Sprintf("queue drained %s after the lanes returned", time.Since(start).Round(time.Second))
}

// queueIdle says whether the pool's consumer has nothing pending or unacked and no
// snoozed job waits on brr.snoozes.>, and what it saw.
func (k *checker) queueIdle(ctx context.Context) (bool, string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	subj := brr.Subjects{}
	cons, err := k.js.Consumer(ctx, subj.JobsStream(), subj.Consumer(brr.DefaultPool))
	if err != nil {
		return false, "", err
	}
	st, err := k.js.Stream(ctx, subj.JobsStream())
	if err != nil {
		return false, "", err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(subj.AllSnoozes()))
	if err != nil {
		return false, "", err
	}
	ci := cons.CachedInfo()
	snoozed := len(info.State.Subjects)
	state := fmt.Sprintf("pending %d, ack pending %d, snoozed %d", ci.NumPending, ci.NumAckPending, snoozed)
	return ci.NumPending == 0 && ci.NumAckPending == 0 && snoozed == 0, state, nil
}

// events returns the distinct events (by event id) stored under filter, by job id.
func (k *checker) events(ctx context.Context, filter string) map[string][]*brr.Event {
	var events []*brr.Event
	var err error
	testkit.WaitFor(time.Minute, func() bool {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		events, err = k.c.Events(rctx, filter, time.Time{}, 0)
		return err == nil
	})
	if err != nil {
		k.l.problem("read events %s: %v", filter, err)
	}
	seen := map[string]bool{}
	byJob := map[string][]*brr.Event{}
	for _, e := range events {
		if e.JobID == "" || seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		byJob[e.JobID] = append(byJob[e.JobID], e)
	}
	return byJob
}

// endedOnce checks every job's final events in BRR_EVENTS and its entry in
// BRR_RESULTS: each job the driver published ended, once, as its results entry says;
// the jobs the workers published themselves (replication) ended once too, and failed
// only for the one reason allowed them.
func (k *checker) endedOnce(ctx context.Context) []string {
	finals := map[string][]*brr.Event{}
	for _, st := range []brr.Status{brr.StatusSucceeded, brr.StatusFailed, brr.StatusDead} {
		for id, es := range k.events(ctx, "brr.events.job.*."+string(st)) {
			finals[id] = append(finals[id], es...)
		}
	}
	started := k.events(ctx, "brr.events.job.*.started")

	driver := map[string]bool{}
	once, twice, restarted := 0, 0, 0
	for _, j := range k.l.all() {
		driver[j.id] = true
		fs := finals[j.id]
		if len(started[j.id]) > 1 {
			restarted++
		}
		switch {
		case len(fs) == 0:
			k.l.problem("job %s (%s): no final event stored (lost)", j.id, j.what)
			continue
		case !sameStatus(fs):
			k.l.problem("job %s (%s) ended %d times with different outcomes: %s", j.id, j.what, len(fs), outcomes(fs))
			continue
		case len(fs) > 1:
			twice++
			k.t.Logf("job %s (%s) ran to its end %d times, with the same outcome: %s", j.id, j.what, len(fs), outcomes(fs))
		default:
			once++
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		r, err := k.c.Job(rctx, j.id)
		cancel()
		switch {
		case err != nil:
			k.l.problem("job %s (%s): results bucket: %v", j.id, j.what, err)
		case r.Status != fs[0].Status:
			k.l.problem("job %s (%s): results bucket says %s, the event stream %s", j.id, j.what, r.Status, fs[0].Status)
		}
	}

	// The jobs the workers published: replication of each committed snapshot.
	byKind := map[string]int{}
	for id, fs := range finals {
		if driver[id] {
			continue
		}
		kind := string(fs[0].Kind)
		byKind[kind+" "+string(fs[0].Status)]++
		if !sameStatus(fs) {
			k.l.problem("job %s (%s, published by a worker) ended %d times with different outcomes: %s", id, kind, len(fs), outcomes(fs))
			continue
		}
		if len(fs) > 1 {
			twice++
			k.t.Logf("job %s (%s, published by a worker) ran to its end %d times: %s", id, kind, len(fs), outcomes(fs))
		}
		if e := fs[0]; e.Status != brr.StatusSucceeded && !allowedFailure(e) {
			k.l.problem("job %s (%s, published by a worker) ended %s: %s", id, kind, e.Status, e.Error)
		}
	}
	var others []string
	for k, n := range byKind {
		others = append(others, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(others)
	return []string{
		fmt.Sprintf("driver's jobs ended once %d, ran to their end twice %d, started more than once %d", once, twice, restarted),
		fmt.Sprintf("jobs published by workers (replication policy, health canary): %s", strings.Join(others, ", ")),
	}
}

// allowedFailure reports whether e, the end of a job a worker published, is the failure
// allowed in the mix: a replication of a snapshot that prune had already removed from
// local, because backups of its source went on meanwhile.
func allowedFailure(e *brr.Event) bool {
	return e.Kind == brr.KindReplicate && e.Status == brr.StatusFailed && strings.Contains(e.Error, brr.ErrNotFound.Error())
}

func sameStatus(es []*brr.Event) bool {
	for _, e := range es {
		if e.Status != es[0].Status {
			return false
		}
	}
	return true
}

func outcomes(es []*brr.Event) string {
	var parts []string
	for _, e := range es {
		parts = append(parts, fmt.Sprintf("%s by %s at %s (attempt %d)", e.Status, e.Worker, e.Time.Format("15:04:05.000"), e.Attempt))
	}
	return strings.Join(parts, ", ")
}

// deadLetters checks that the dead-letter stream holds only allowed failures.
func (k *checker) deadLetters(ctx context.Context) string {
	var dead []brr.DeadLetterEntry
	var err error
	testkit.WaitFor(time.Minute, func() bool {
		dead, err = k.c.DeadLetters(ctx)
		return err == nil
	})
	if err != nil {
		k.l.problem("read dead letters: %v", err)
	}
	allowed := 0
	for _, dl := range dead {
		if dl.Kind == brr.KindReplicate && strings.Contains(dl.Error, brr.ErrNotFound.Error()) {
			allowed++
			continue
		}
		k.l.problem("dead letter: job %s (%s) %s after %d attempts: %s", dl.JobID, dl.Kind, dl.Status, dl.Attempts, dl.Error)
	}
	return fmt.Sprintf("dead letters %d (%d replications of snapshots pruned first)", len(dead), allowed)
}

// repos verifies each repository with read-data and restores every snapshot in it,
// comparing each with the manifest of what its backup read; every snapshot must be one
// the driver made, and every snapshot tagged keep must still be in local.
func (k *checker) repos(ctx context.Context) []string {
	var out []string
	for _, repo := range []string{repoLocal, repoOffsite} {
		v := k.d.verify(ctx, repo)
		var snaps []brr.Snapshot
		var err error
		testkit.WaitFor(time.Minute, func() bool {
			snaps, err = k.c.Snapshots(ctx, repo, "")
			return err == nil
		})
		if err != nil {
			k.l.problem("list snapshots of %s: %v", repo, err)
			continue
		}
		if v != nil && v.Snapshots != len(snaps) {
			k.l.problem("verify of %s saw %d snapshots, the listing %d", repo, v.Snapshots, len(snaps))
		}
		var todo []*snapshot
		ids := map[string]bool{}
		for _, s := range snaps {
			ids[s.ID] = true
			sn := k.l.snapshot(s.ID)
			if sn == nil {
				k.l.problem("snapshot %s in %s (job %s, source %s) is none the driver made", s.ID, repo, s.JobID, s.Source)
				continue
			}
			todo = append(todo, sn)
		}
		if repo == repoLocal {
			for _, sn := range k.l.kept() {
				if !ids[sn.id] {
					k.l.problem("snapshot %s of %s, tagged %s, is gone from %s", sn.id, sn.source, tagKeep, repo)
				}
			}
		}
		whole := k.restoreAll(ctx, todo, repo)
		desc := fmt.Sprintf("%s: %d snapshots, %d restored whole", repo, len(snaps), whole)
		if v != nil {
			desc += fmt.Sprintf(", verified: %d packs, %d blobs, %.1f MiB read", v.Packs, v.Blobs, float64(v.BytesRead)/(1<<20))
		}
		out = append(out, desc)
	}
	return out
}

// restoreAll restores snaps from repo, four at a time, and returns how many came back
// whole.
func (k *checker) restoreAll(ctx context.Context, snaps []*snapshot, repo string) int {
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		whole int
	)
	next := make(chan *snapshot)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sn := range next {
				if k.d.restore(ctx, sn, repo) {
					mu.Lock()
					whole++
					mu.Unlock()
				}
			}
		}()
	}
	for _, sn := range snaps {
		next <- sn
	}
	close(next)
	wg.Wait()
	return whole
}
