// Package watch backs sources up as they change (docs/sources.md, "Watch"). For each
// source with a watch, exactly one worker of the pool watches it at a time: the one that
// holds the source's lease. It watches the source with inotify (through fsnotify) and,
// once the changes settle (Debounce), publishes a backup job that names the source; the
// other workers keep trying to take the lease, so that when the watching worker dies
// another takes the watch over within the lease TTL. A periodic rescan backs the source
// up when no backup was published for a while, whatever the events said, as a safety
// net for lost events and as the watch's heartbeat. The package knows nothing of NATS:
// the worker hands it its leases and a way to publish.
package watch

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/clock"
)

// Source is a source to watch: a tree (Path) or a SQLite database (SQLite).
type Source struct {
	// Name is the source's name in the worker's config, which the backup jobs name.
	Name string
	// Path is a tree, watched recursively; SQLite is a database file, watched with its
	// -wal and -journal files. One of them is set.
	Path, SQLite string
	// Excludes are the source's own patterns (gitignore syntax, relative to Path): a
	// directory they exclude is not watched, and a change they exclude sets off no
	// backup. The .brrignore files of the tree are not read: what they exclude may set
	// off a backup, which leaves it out.
	Excludes []string
	// Ignore are paths whose changes are the worker's own: its data dir, its
	// repositories. Those under Path are neither watched nor counted as changes.
	Ignore []string
	// Delay and MaxDelay are the Debounce's.
	Delay, MaxDelay time.Duration
}

// Leaser takes leases: the context it returns is cancelled when the lease is lost, and
// release gives it back. A lease another worker holds is an error marked brr.Snooze,
// with how long to wait before trying again (events.Leases).
type Leaser interface {
	Acquire(ctx context.Context, key string) (lease context.Context, release func(), err error)
}

// Publisher publishes a backup job of the source named name, with the job id id:
// publishing the same id again is the same job.
type Publisher func(ctx context.Context, name, id string) error

// RescanInterval is how long a watched source may go without a backup before the
// watcher rescans it and backs it up, whatever the events said: ten times MaxDelay, at
// least a minute and at most an hour.
func RescanInterval(maxDelay time.Duration) time.Duration {
	return min(max(10*maxDelay, time.Minute), time.Hour)
}

// publishTimeout bounds one publish of a backup job; stopPublishTimeout the publish of
// what is pending when the watch stops, which the worker's shutdown waits for.
const (
	publishTimeout     = 10 * time.Second
	stopPublishTimeout = 3 * time.Second
)

// ctimeSlack is how far before the last backup published a change found by a rescan
// still counts as one the backup may have missed: file times come from the kernel's
// coarse clock, a tick behind, and from the server's on a network file system.
const ctimeSlack = time.Second

// Watcher watches one source while it holds the source's lease, and backs it up as it
// changes. Run runs it.
type Watcher struct {
	Source Source
	// Key is the lease key: one per pool and source.
	Key     string
	Leases  Leaser
	Publish Publisher
	// JobID is the id of the backup job of a burst of changes that began at first;
	// default "watch-NAME-<unix ms>". The same burst published twice is one job.
	JobID func(first time.Time) string
	// Retry is how long to wait before trying the lease again after an error that says
	// no better (NATS is unreachable); default 2.5s. A lease held by another worker is
	// tried again when its snooze delay says.
	Retry time.Duration
	// Rescan is how long the source may go without a backup before it is rescanned and
	// backed up; default RescanInterval(Source.MaxDelay).
	Rescan time.Duration
	// Committed, when set, reports whether the backup job of id has succeeded: its
	// snapshot is committed. The watcher asks it about the jobs it published, to know
	// which changes are in a snapshot (State.UnprotectedSince). A job not found yet is
	// not committed.
	Committed func(ctx context.Context, id string) (bool, error)
	Log       zerolog.Logger
	Now       func() time.Time

	mu    sync.Mutex
	state State
}

// State is what a watcher says of its source, for the worker's heartbeats and the RPO
// check of the health report.
type State struct {
	// Watching says that this watcher holds the lease and watches the source.
	Watching bool
	// UnprotectedSince is when the oldest change that no committed snapshot is known to
	// hold was seen: a change waiting for its backup, or one whose backup job has not
	// succeeded (yet). Zero when every change seen is in a snapshot, and always without
	// Committed. The rescan's backup of a source in which nothing changed is no change;
	// what changed while no one watched (at take-over) and what a rescan finds are.
	UnprotectedSince time.Time
}

// State returns what the watcher says of its source now.
func (w *Watcher) State() State {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state
}

func (w *Watcher) setState(s State) {
	w.mu.Lock()
	w.state = s
	w.mu.Unlock()
}

// checkEvery is how often the watcher asks Committed about the backup jobs it published
// that have not succeeded yet; maxOutstanding bounds how many it keeps asking about (the
// newest: one that succeeds stands for every older one, as each backup is of the whole
// source).
const (
	checkEvery     = 2 * time.Second
	maxOutstanding = 16
	checkTimeout   = 5 * time.Second
)

// outstanding is a backup job the watcher published whose success it has not seen: since
// is its burst's first change (zero for a rescan of a source that did not change).
type outstanding struct {
	id    string
	since time.Time
}

func (w *Watcher) defaults() {
	if w.JobID == nil {
		name := w.Source.Name
		w.JobID = func(first time.Time) string { return fmt.Sprintf("watch-%s-%d", name, first.UnixMilli()) }
	}
	if w.Retry <= 0 {
		w.Retry = 2500 * time.Millisecond
	}
	if w.Rescan <= 0 {
		w.Rescan = RescanInterval(w.Source.MaxDelay)
	}
	if w.Now == nil {
		w.Now = time.Now
	}
}

// Run watches the source whenever this worker holds its lease, and tries to take the
// lease while another worker does, until ctx is done.
func (w *Watcher) Run(ctx context.Context) error {
	w.defaults()
	log := w.Log.With().Str("source_name", w.Source.Name).Str("lease", w.Key).Logger()
	// problem is the last reason this worker did not watch, said once rather than at
	// every try.
	problem := ""
	for ctx.Err() == nil {
		lease, release, err := w.Leases.Acquire(ctx, w.Key)
		if err != nil {
			// The lease's snooze delay is jittered already, and shorter when the holder
			// stopped renewing: it ends when the lease expires.
			wait, busy := brr.SnoozeDelay(err)
			if !busy {
				wait = jitter(w.Retry)
			}
			if msg := err.Error(); msg != problem && ctx.Err() == nil {
				problem = msg
				if busy {
					log.Debug().Err(err).Msg("another worker watches the source; standing by to take over")
				} else {
					log.Warn().Err(err).Dur("retry_in", wait).Msg("cannot take the watch lease")
				}
			}
			if !clock.Sleep(ctx, wait) {
				break
			}
			continue
		}
		err = w.watch(lease, log)
		release()
		switch {
		case err != nil:
			// The source could not be watched at all (its root is missing): another
			// worker of the pool may do better, so the lease is given back for a while.
			ev := log.Debug()
			if msg := err.Error(); msg != problem {
				problem = msg
				ev = log.Warn()
			}
			ev.Err(err).Dur("retry_in", w.Retry).Msg("cannot watch the source; leaving the watch to another worker for now")
			if !clock.Sleep(ctx, jitter(w.Retry)) {
				return nil
			}
		case ctx.Err() != nil:
			log.Debug().Msg("stopped watching the source")
		default:
			problem = ""
			log.Warn().Err(context.Cause(lease)).Msg("lost the watch of the source; trying to take it again")
		}
	}
	return nil
}

// watch watches the source until ctx (the lease's) is done. It returns an error when it
// could not start, or when inotify stopped.
func (w *Watcher) watch(ctx context.Context, log zerolog.Logger) error {
	t, err := openTree(w.Source, log)
	if err != nil {
		return err
	}
	defer t.close()
	log.Info().Str("root", t.root).Int("dirs", len(t.dirs)).Msg("took the watch of the source")

	d := Debounce{Delay: w.Source.Delay, MaxDelay: w.Source.MaxDelay}
	// What changed while no one watched is unknown: back the source up once.
	now := w.Now()
	d.Change(now)
	// changed is the first change of the pending burst (zero when the burst is a rescan
	// of a source that did not change); sent are the backups published whose success
	// is not seen yet, oldest first.
	changed := now
	var sent []outstanding
	var lastCheck time.Time
	report := func() {
		st := State{Watching: true}
		if w.Committed != nil {
			st.UnprotectedSince = changed
			for _, o := range sent {
				if !o.since.IsZero() && (st.UnprotectedSince.IsZero() || o.since.Before(st.UnprotectedSince)) {
					st.UnprotectedSince = o.since
				}
			}
		}
		w.setState(st)
	}
	defer w.setState(State{})
	change := func(at time.Time) {
		d.Change(at)
		if changed.IsZero() {
			changed = at
		}
	}
	// check asks about the backups sent, newest first: the first that succeeded holds
	// every change before its publish, so it and the older ones are done.
	check := func(ctx context.Context) {
		lastCheck = w.Now()
		for i := len(sent) - 1; i >= 0; i-- {
			cctx, cancel := context.WithTimeout(ctx, checkTimeout)
			ok, err := w.Committed(cctx, sent[i].id)
			cancel()
			if err != nil {
				// NATS is away, most likely: ask again later rather than hold the loop.
				log.Debug().Err(err).Str("job_id", sent[i].id).Msg("ask whether the backup succeeded")
				lastCheck = w.Now().Add(checkTimeout)
				return
			}
			if ok {
				sent = sent[i+1:]
				return
			}
		}
	}
	// lastPublish is when the last backup was published: a change after it may not be in
	// any snapshot. lastActive is the later of it and the last rescan.
	lastPublish, lastActive := now, now
	var retryAt time.Time
	backoff := time.Second

	rescan := func(now time.Time, why string) {
		n, err := t.scan(lastPublish.Add(-ctimeSlack))
		lastActive = now
		ev := log.Debug()
		switch {
		case err != nil:
			ev = log.Warn().Err(err)
		case n > 0 && !d.Pending():
			ev = log.Info()
			why = "changes no event reported"
		}
		ev.Str("why", why).Int("changed", n).Int("dirs", len(t.dirs)).Msg("rescanned the source; backing it up")
		if n > 0 || err != nil {
			change(now)
		} else {
			d.Change(now)
		}
	}
	publish := func(ctx context.Context, first, now time.Time, timeout time.Duration) error {
		id := w.JobID(first)
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := w.Publish(pctx, w.Source.Name, id)
		cancel()
		if err != nil {
			return fmt.Errorf("publish backup job %s of source %s: %w", id, w.Source.Name, err)
		}
		log.Debug().Str("job_id", id).Int("changes", d.Changes()).Dur("burst", now.Sub(first)).Msg("published backup")
		lastPublish, lastActive = now, now
		d.Done()
		if w.Committed != nil {
			sent = append(sent, outstanding{id: id, since: changed})
			if len(sent) > maxOutstanding {
				// The oldest change stays the oldest: what is dropped is only the
				// chance that the dropped job's success is seen.
				if !sent[0].since.IsZero() && (sent[1].since.IsZero() || sent[0].since.Before(sent[1].since)) {
					sent[1].since = sent[0].since
				}
				sent = sent[1:]
			}
		}
		changed = time.Time{}
		return nil
	}

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		report()
		now := w.Now()
		next := lastActive.Add(w.Rescan)
		if len(sent) > 0 && lastCheck.Add(checkEvery).Before(next) {
			next = lastCheck.Add(checkEvery)
		}
		if d.Pending() {
			due := d.Due()
			if retryAt.After(due) {
				due = retryAt
			}
			if due.Before(next) {
				next = due
			}
		}
		timer.Reset(max(next.Sub(now), 0))

		select {
		case <-ctx.Done():
			// Publish what is pending, so that a worker that stops leaves nothing
			// unprotected for its successor to find.
			if first, ok := d.Ready(d.Due()); ok {
				if err := publish(context.WithoutCancel(ctx), first, w.Now(), stopPublishTimeout); err != nil {
					log.Warn().Err(err).Msg("publish pending backup at stop; the next watcher backs the source up when it takes over")
				}
			}
			return nil
		case ev, ok := <-t.fsw.Events:
			if !ok {
				return errors.New("inotify watcher closed")
			}
			if t.event(ev) {
				at := w.Now()
				if !d.Pending() {
					log.Debug().Str("path", ev.Name).Str("op", ev.Op.String()).Dur("backup_in", d.Delay).Msg("source changed")
				}
				change(at)
			}
		case err, ok := <-t.fsw.Errors:
			if !ok {
				return errors.New("inotify watcher closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				// Events were lost, and with them perhaps new directories to watch.
				log.Info().Msg("inotify queue overflowed: events were lost; rescanning the source and backing it up")
				rescan(w.Now(), "inotify queue overflowed")
				continue
			}
			log.Warn().Err(err).Msg("inotify")
		case <-timer.C:
			now := w.Now()
			if len(sent) > 0 && !now.Before(lastCheck.Add(checkEvery)) {
				check(ctx)
			}
			if first, ok := d.Ready(now); ok {
				if now.Before(retryAt) {
					continue
				}
				if err := publish(ctx, first, now, publishTimeout); err != nil {
					retryAt = now.Add(backoff)
					log.Warn().Err(err).Dur("retry_in", backoff).Msg("publish backup")
					backoff = min(2*backoff, max(w.Source.MaxDelay, time.Second))
					continue
				}
				retryAt, backoff = time.Time{}, time.Second
				continue
			}
			if !now.Before(lastActive.Add(w.Rescan)) {
				rescan(now, "no backup for "+w.Rescan.String())
			}
		}
	}
}

// jitter spreads d by ±10%, so that the workers of a pool do not try a lease together.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d*9/10 + time.Duration(rand.Int64N(int64(d)/5+1))
}
