package soak_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/clock"
	"github.com/brr-dev/brr/internal/testkit"
)

// The repositories every worker has, with the same URLs and keys: backups go to local,
// and each snapshot committed there is replicated to offsite by the workers' policy.
const (
	repoLocal   = "local"   // file://
	repoOffsite = "offsite" // nats://, a JetStream object store with 3 replicas
	tagKeep     = "keep"    // snapshots with this tag are never removed by retention
)

// driver publishes the mix of jobs, lane by lane, and records in its ledger what it
// published, how each job ended, and what each snapshot holds.
type driver struct {
	t    testing.TB
	c    *brr.Client
	js   jetstream.JetStream
	l    *ledger
	p    *pool
	dir  string // restore targets go under it
	diag string // where diagnostics of a stuck job go

	// jobTimeout is how long a job may take from its publication to its end before the
	// driver calls it stuck and dumps what JetStream and the workers say.
	jobTimeout time.Duration
}

// run publishes args under a new id (again under the same id while the cluster does not
// answer: the job stream's duplicate window keeps one) and waits for the job to end. It
// returns the job's final event, or nil when ctx ended or the job did not end within
// jobTimeout (a problem, with a dump of what was pending).
func (d *driver) run(ctx context.Context, args brr.JobArgs, what string) *brr.Event {
	id := brr.NewID()
	d.l.published(id, args.Kind(), what)
	start := time.Now()
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := d.c.Publish(pctx, args, brr.WithID(id))
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return nil
		}
		d.l.retriedPublish()
		if time.Since(start) > d.jobTimeout {
			d.stuck(id, what, fmt.Sprintf("publishing got no answer for %s: %v", d.jobTimeout, err))
			return nil
		}
		time.Sleep(500 * time.Millisecond)
	}
	for {
		// Wait watches the job's key in the results bucket; should the watch miss the
		// end while the cluster fails over, the bucket is asked directly each minute.
		wctx, cancel := context.WithTimeout(ctx, time.Minute)
		e, werr := d.c.Wait(wctx, id, nil)
		waited := wctx.Err() != nil
		cancel()
		if e == nil || !e.Status.Final() {
			if got, err := d.c.Job(ctx, id); err == nil && got.Status.Final() {
				e = got
			}
		}
		if e != nil && e.Status.Final() {
			d.l.ended(id, e)
			return e
		}
		if ctx.Err() != nil {
			return nil
		}
		if time.Since(start) > d.jobTimeout {
			d.stuck(id, what, fmt.Sprintf("no end within %s (last wait: %v)", d.jobTimeout, werr))
			return nil
		}
		if !waited {
			time.Sleep(time.Second) // Wait failed at once (no connection): not a busy loop
		}
	}
}

// stuck records that job id did not end, with what JetStream and the workers say about
// it in a file of its own.
func (d *driver) stuck(id, what, why string) {
	var b strings.Builder
	fmt.Fprintf(&b, "job %s (%s): %s\n\nJetStream:\n", id, what, why)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	b.WriteString(testkit.JetStreamReport(ctx, d.js))
	if e, err := d.c.Job(ctx, id); err == nil {
		fmt.Fprintf(&b, "\nresults bucket: %s by %s at %s, attempt %d %s\n", e.Status, e.Worker, e.Time.Format(time.RFC3339Nano), e.Attempt, e.Error)
	} else {
		fmt.Fprintf(&b, "\nresults bucket: %v\n", err)
	}
	for i, logs := range d.p.logs() {
		fmt.Fprintf(&b, "\nworker %d, lines about the job:\n", i+1)
		lines := strings.Split(logs, "\n")
		for _, line := range lines {
			if strings.Contains(line, id) {
				b.WriteString(line + "\n")
			}
		}
		fmt.Fprintf(&b, "worker %d, last lines:\n%s\n", i+1, strings.Join(lines[max(0, len(lines)-40):], "\n"))
	}
	file := filepath.Join(d.diag, "stuck-"+id+".txt")
	if err := os.WriteFile(file, []byte(b.String()), 0o644); err != nil {
		d.t.Logf("write %s: %v", file, err)
	}
	d.l.problem("job %s (%s) stuck: %s; JetStream and the workers' logs at the time: %s", id, what, why, file)
}

// pause sleeps a random time between lo and hi, and reports false when ctx ended first.
func pause(ctx context.Context, lo, hi time.Duration) bool {
	return clock.Sleep(ctx, lo+rand.N(hi-lo+1))
}

// lanes starts the mix: each lane runs one kind of job after another until stop ends,
// and the job it runs then to its end (or until ctx ends). The returned WaitGroup is done
// when every lane has returned.
func (d *driver) lanes(ctx, stop context.Context, sources []*source) *sync.WaitGroup {
	var wg sync.WaitGroup
	lane := func(fn func(ctx, stop context.Context)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(ctx, stop)
		}()
	}
	for _, src := range sources {
		lane(func(ctx, stop context.Context) { d.backups(ctx, stop, src) })
	}
	lane(d.restores)
	lane(d.drills)
	lane(d.replications)
	lane(d.prunes)
	lane(d.verifies)
	return &wg
}

// backups changes src and backs it up, again and again; every fourth snapshot is
// tagged keep. The tree does not change while its backup may still run: a backup that
// does not end stops the lane.
func (d *driver) backups(ctx, stop context.Context, src *source) {
	for stop.Err() == nil {
		src.change(d.t)
		m, err := manifestOf(src.dir)
		if err != nil {
			d.l.problem("read %s: %v", src.dir, err)
			return
		}
		job := brr.BackupJob{Path: src.dir, Repo: repoLocal}
		keep := src.gen%4 == 0
		if keep {
			job.Tags = []string{tagKeep}
		}
		e := d.run(ctx, job, "backup of "+src.dir)
		if e == nil {
			return
		}
		if e.Status != brr.StatusSucceeded || e.Result == nil || e.Result.Backup == nil {
			d.l.problem("backup %s of %s ended %s: %s", e.JobID, src.dir, e.Status, e.Error)
		} else {
			d.l.addSnapshot(&snapshot{id: e.Result.Backup.Snapshot, source: src.dir, keep: keep, job: e.JobID, m: m})
		}
		if !pause(stop, 5*time.Second, 15*time.Second) {
			return
		}
	}
}

// pick returns a random snapshot tagged keep that repo has: retention leaves it there,
// so a restore or drill of it must succeed. It asks the workers which offsite has.
func (d *driver) pick(ctx context.Context, repo string) *snapshot {
	kept := d.l.kept()
	if repo == repoOffsite {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		snaps, err := d.c.Snapshots(lctx, repoOffsite, "")
		cancel()
		if err != nil {
			return nil // the cluster or the workers are busy failing over: next time
		}
		kept = slices.DeleteFunc(kept, func(sn *snapshot) bool {
			return !slices.ContainsFunc(snaps, func(s brr.Snapshot) bool { return s.ID == sn.id })
		})
	}
	if len(kept) == 0 {
		return nil
	}
	return kept[rand.N(len(kept))]
}

// restores restores a kept snapshot, of local or offsite in turn, into a new directory
// and compares what it wrote with the manifest of what was backed up.
func (d *driver) restores(ctx, stop context.Context) {
	for i := 0; pause(stop, 15*time.Second, 30*time.Second); i++ {
		repo := []string{repoLocal, repoOffsite}[i%2]
		sn := d.pick(stop, repo)
		if sn == nil {
			continue
		}
		d.restore(ctx, sn, repo)
	}
}

// restore restores sn from repo into a new directory, compares, and removes it; it
// reports whether the restore was whole.
func (d *driver) restore(ctx context.Context, sn *snapshot, repo string) bool {
	target := filepath.Join(d.dir, "restore-"+brr.NewID())
	defer os.RemoveAll(target)
	what := fmt.Sprintf("restore of %s (%s) from %s", sn.id[:12], sn.source, repo)
	e := d.run(ctx, brr.RestoreJob{Snapshot: sn.id, Repo: repo, Target: target}, what)
	if e == nil {
		return false
	}
	if e.Status != brr.StatusSucceeded {
		d.l.problem("%s (job %s) ended %s: %s", what, e.JobID, e.Status, e.Error)
		return false
	}
	got, err := manifestOf(target)
	if err != nil {
		d.l.problem("%s (job %s): read the restored tree: %v", what, e.JobID, err)
		return false
	}
	if diff := sn.m.diff(got, 10); len(diff) > 0 {
		d.l.problem("%s (job %s) is not what was backed up: %s", what, e.JobID, strings.Join(diff, "; "))
		return false
	}
	_, bytes := sn.m.files()
	d.l.restoredTree(bytes)
	return true
}

// drills drills a kept snapshot of local or offsite in turn: the worker restores it into
// its scratch space and checks every file against the snapshot.
func (d *driver) drills(ctx, stop context.Context) {
	for i := 0; pause(stop, 30*time.Second, 60*time.Second); i++ {
		repo := []string{repoOffsite, repoLocal}[i%2]
		sn := d.pick(stop, repo)
		if sn == nil {
			continue
		}
		what := fmt.Sprintf("drill of %s (%s) in %s", sn.id[:12], sn.source, repo)
		e := d.run(ctx, brr.DrillJob{Snapshot: sn.id, Repo: repo}, what)
		switch {
		case e == nil:
		case e.Status != brr.StatusSucceeded:
			d.l.problem("%s (job %s) ended %s: %s", what, e.JobID, e.Status, e.Error)
		case e.Result == nil || e.Result.Drill == nil || !e.Result.Drill.Passed:
			d.l.problem("%s (job %s) did not pass: %+v", what, e.JobID, e.Result)
		}
	}
}

// replications copies every snapshot that offsite lacks, besides the copies the
// workers' replication policy makes after each backup.
func (d *driver) replications(ctx, stop context.Context) {
	for pause(stop, 60*time.Second, 120*time.Second) {
		e := d.run(ctx, brr.ReplicateJob{Snapshot: "all", From: repoLocal, To: repoOffsite}, "replicate all to offsite")
		if e != nil && e.Status != brr.StatusSucceeded {
			d.l.problem("replicate all (job %s) ended %s: %s", e.JobID, e.Status, e.Error)
		}
	}
}

// prunes applies each repository's retention in turn.
func (d *driver) prunes(ctx, stop context.Context) {
	for i := 0; pause(stop, 60*time.Second, 120*time.Second); i++ {
		repo := []string{repoLocal, repoOffsite}[i%2]
		e := d.run(ctx, brr.PruneJob{Repo: repo}, "prune of "+repo)
		if e != nil && e.Status != brr.StatusSucceeded {
			d.l.problem("prune of %s (job %s) ended %s: %s", repo, e.JobID, e.Status, e.Error)
		}
	}
}

// verifies reads back every blob of each repository in turn.
func (d *driver) verifies(ctx, stop context.Context) {
	for i := 0; pause(stop, 90*time.Second, 150*time.Second); i++ {
		repo := []string{repoLocal, repoOffsite}[i%2]
		d.verify(ctx, repo)
	}
}

// verify runs verify --read-data on repo and returns its result when the repository is
// whole.
func (d *driver) verify(ctx context.Context, repo string) *brr.VerifyResult {
	e := d.run(ctx, brr.VerifyJob{Repo: repo, ReadData: true}, "verify --read-data of "+repo)
	switch {
	case e == nil:
		return nil
	case e.Status != brr.StatusSucceeded:
		d.l.problem("verify of %s (job %s) ended %s: %s", repo, e.JobID, e.Status, e.Error)
		return nil
	case e.Result == nil || e.Result.Verify == nil:
		d.l.problem("verify of %s (job %s) has no result", repo, e.JobID)
		return nil
	case !e.Result.Verify.OK():
		d.l.problem("verify of %s (job %s) found damage: %+v", repo, e.JobID, e.Result.Verify.Damaged)
		return nil
	}
	return e.Result.Verify
}
