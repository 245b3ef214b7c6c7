package watch

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// leases is an in-memory Leaser: one holder per key; revoke takes a lease away as a lost
// renewal does.
type leases struct {
	mu   sync.Mutex
	held map[string]*lease
}

type lease struct{ cancel context.CancelCauseFunc }

func (l *leases) Acquire(ctx context.Context, key string) (context.Context, func(), error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.held == nil {
		l.held = make(map[string]*lease)
	}
	if _, ok := l.held[key]; ok {
		return nil, nil, brr.Snooze(fmt.Errorf("%s is leased", key), 10*time.Millisecond)
	}
	lctx, cancel := context.WithCancelCause(ctx)
	mine := &lease{cancel: cancel}
	l.held[key] = mine
	return lctx, func() {
		cancel(errors.New("released"))
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.held[key] == mine {
			delete(l.held, key)
		}
	}, nil
}

// revoke takes key from its holder, as a lease that expired does, and frees it.
func (l *leases) revoke(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if h, ok := l.held[key]; ok {
		h.cancel(errors.New("lease lost"))
		delete(l.held, key)
	}
}

// published records the backup jobs the watchers publish.
type published struct {
	mu   sync.Mutex
	jobs []job
}

type job struct{ by, name, id string }

func (p *published) publisher(by string) Publisher {
	return func(ctx context.Context, name, id string) error {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.jobs = append(p.jobs, job{by: by, name: name, id: id})
		return nil
	}
}

func (p *published) list() []job {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]job(nil), p.jobs...)
}

// waitFor waits until n jobs are published, and returns them.
func (p *published) waitFor(t *testing.T, n int) []job {
	t.Helper()
	testkit.Eventually(t, 20*time.Second, fmt.Sprintf("%d backup jobs published", n), func() bool { return len(p.list()) >= n })
	return p.list()
}

// settle waits until no job was published for quiet, and returns the jobs.
func (p *published) settle(t *testing.T, quiet time.Duration) []job {
	t.Helper()
	n := -1
	for range 100 {
		if got := len(p.list()); got == n {
			return p.list()
		} else {
			n = got
		}
		time.Sleep(quiet)
	}
	t.Fatalf("backup jobs keep coming: %d", n)
	return nil
}

func startWatcher(t *testing.T, w *Watcher) context.CancelFunc {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := w.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return cancel
}

// TestWatcherBacksUpChanges starts a watcher on a tree: it backs the tree up once as it
// takes the watch, then once per burst of changes, with a job id of the burst; a change in
// a directory made after it started is seen too, and one in the worker's own directory
// is not.
func TestWatcherBacksUpChanges(t *testing.T) {
	root := t.TempDir()
	own := filepath.Join(root, ".brr-data")
	var pub published
	w := &Watcher{
		Source: Source{Name: "app", Path: root, Ignore: []string{own}, Delay: 50 * time.Millisecond, MaxDelay: 200 * time.Millisecond},
		Key:    "watch.default/app", Leases: &leases{}, Publish: pub.publisher("w1"),
		Rescan: time.Hour, Log: zerolog.New(testWriter{t}).Level(zerolog.DebugLevel),
	}
	startWatcher(t, w)
	jobs := pub.waitFor(t, 1) // the catch-up backup at take-over
	if j := jobs[0]; j.name != "app" || !strings.HasPrefix(j.id, "watch-app-") {
		t.Fatalf("first job = %+v, want a backup of source app with id watch-app-<ms>", j)
	}
	for i := range 5 {
		testkit.WriteFile(t, filepath.Join(root, "a", "b", fmt.Sprintf("f%d", i)), []byte("x"), 0o644)
	}
	pub.waitFor(t, 2)
	// The worker's own writes set off nothing.
	n := len(pub.settle(t, 300*time.Millisecond))
	testkit.WriteFile(t, filepath.Join(own, "state.db"), []byte("own"), 0o644)
	time.Sleep(300 * time.Millisecond)
	if got := len(pub.list()); got != n {
		t.Fatalf("a write to the worker's own directory set off %d backups", got-n)
	}
	testkit.WriteFile(t, filepath.Join(root, "a", "b", "late"), []byte("y"), 0o644)
	jobs = pub.waitFor(t, n+1)
	seen := map[string]bool{}
	for _, j := range jobs {
		if seen[j.id] {
			t.Errorf("job id %s published twice", j.id)
		}
		seen[j.id] = true
	}
}

// TestWatcherRescans leaves a watched tree alone: the rescan backs it up all the same,
// every Rescan, as the watch's heartbeat.
func TestWatcherRescans(t *testing.T) {
	root := t.TempDir()
	var pub published
	w := &Watcher{
		Source: Source{Name: "app", Path: root, Delay: 10 * time.Millisecond, MaxDelay: 20 * time.Millisecond},
		Key:    "k", Leases: &leases{}, Publish: pub.publisher("w1"), Rescan: 100 * time.Millisecond,
		Log: zerolog.New(testWriter{t}).Level(zerolog.DebugLevel),
	}
	startWatcher(t, w)
	pub.waitFor(t, 4)
}

// TestWatcherTakeOver runs two watchers of one source: one watches, the other stands by;
// when the first loses its lease the second takes the watch and backs the source up at
// once, and a change after that is backed up by it.
func TestWatcherTakeOver(t *testing.T) {
	root := t.TempDir()
	l := &leases{}
	var pub published
	src := Source{Name: "app", Path: root, Delay: 20 * time.Millisecond, MaxDelay: 100 * time.Millisecond}
	newWatcher := func(by string) *Watcher {
		return &Watcher{Source: src, Key: "watch.default/app", Leases: l, Publish: pub.publisher(by), Rescan: time.Hour,
			Log: zerolog.New(testWriter{t}).With().Str("worker", by).Logger()}
	}
	stop1 := startWatcher(t, newWatcher("w1"))
	pub.waitFor(t, 1)
	startWatcher(t, newWatcher("w2"))
	testkit.WriteFile(t, filepath.Join(root, "f1"), []byte("1"), 0o644)
	jobs := pub.waitFor(t, 2)
	for _, j := range jobs {
		if j.by != "w1" {
			t.Fatalf("job %s published by %s, which does not hold the lease", j.id, j.by)
		}
	}

	// w1 loses its lease (its NATS went away), and stops for good.
	l.revoke("watch.default/app")
	stop1()
	jobs = pub.waitFor(t, 3)
	if j := jobs[len(jobs)-1]; j.by != "w2" {
		t.Fatalf("after the take-over, job %s was published by %s, want w2", j.id, j.by)
	}
	n := len(jobs)
	testkit.WriteFile(t, filepath.Join(root, "f2"), []byte("2"), 0o644)
	jobs = pub.waitFor(t, n+1)
	for _, j := range jobs[n:] {
		if j.by != "w2" {
			t.Errorf("job %s published by %s after the take-over, want w2", j.id, j.by)
		}
	}
}

// TestWatcherMissingRoot checks that a worker on which the source's path does not exist
// gives the lease back, so that another worker of the pool may watch it.
func TestWatcherMissingRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "missing")
	l := &leases{}
	var pub published
	var mu sync.Mutex
	acquired := 0
	w := &Watcher{
		Source: Source{Name: "app", Path: root, Delay: time.Millisecond, MaxDelay: time.Millisecond},
		Key:    "k", Leases: countingLeaser{l, func() { mu.Lock(); acquired++; mu.Unlock() }}, Publish: pub.publisher("w1"),
		Retry: 10 * time.Millisecond, Log: zerolog.New(testWriter{t}),
	}
	startWatcher(t, w)
	testkit.Eventually(t, 20*time.Second, "the lease taken again after the watch failed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return acquired >= 3
	})
	if got := pub.list(); len(got) != 0 {
		t.Errorf("published %v for a source that is not there", got)
	}
}

type countingLeaser struct {
	*leases
	acquired func()
}

func (c countingLeaser) Acquire(ctx context.Context, key string) (context.Context, func(), error) {
	lctx, release, err := c.leases.Acquire(ctx, key)
	if err == nil {
		c.acquired()
	}
	return lctx, release, err
}

// testWriter sends log lines to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestWatcherUnprotectedSince follows State.UnprotectedSince: set while a change waits
// for its backup or its backup job has not succeeded, cleared once one has; a source in
// which nothing changes stays protected through the rescans' backups (an idle watched
// source is no RPO problem), and a change whose backups keep failing stays unprotected
// from its time on, through the rescans' backups that fail as well.
func TestWatcherUnprotectedSince(t *testing.T) {
	root := t.TempDir()
	// A rescan counts an entry changed within ctimeSlack of the last backup as a change:
	// let the new tree's own ctime fall out of that.
	time.Sleep(ctimeSlack + 200*time.Millisecond)
	var pub published
	var mu sync.Mutex
	succeed := true
	asked := 0
	w := &Watcher{
		Source: Source{Name: "app", Path: root, Delay: 20 * time.Millisecond, MaxDelay: 50 * time.Millisecond},
		Key:    "k", Leases: &leases{}, Publish: pub.publisher("w1"), Rescan: 300 * time.Millisecond,
		Committed: func(_ context.Context, id string) (bool, error) {
			mu.Lock()
			defer mu.Unlock()
			asked++
			return succeed, nil
		},
		Log: zerolog.New(testWriter{t}).Level(zerolog.DebugLevel),
	}
	if st := w.State(); st.Watching || !st.UnprotectedSince.IsZero() {
		t.Fatalf("State before Run = %+v, want the zero State", st)
	}
	startWatcher(t, w)
	// The take-over's backup, which succeeds: nothing unprotected.
	pub.waitFor(t, 1)
	testkit.Eventually(t, 20*time.Second, "the take-over's backup seen to succeed", func() bool {
		st := w.State()
		return st.Watching && st.UnprotectedSince.IsZero()
	})
	// Idle: the rescans back the source up, and it stays protected throughout.
	n := len(pub.list())
	for len(pub.list()) < n+3 {
		if st := w.State(); !st.UnprotectedSince.IsZero() {
			t.Fatalf("idle source: State = %+v, want nothing unprotected", st)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The backups fail from now on: a change stays unprotected from its time, through
	// its own backup and the rescans'.
	mu.Lock()
	succeed = false
	mu.Unlock()
	before := time.Now()
	testkit.WriteFile(t, filepath.Join(root, "f1"), []byte("1"), 0o644)
	testkit.Eventually(t, 20*time.Second, "the change seen", func() bool { return !w.State().UnprotectedSince.IsZero() })
	since := w.State().UnprotectedSince
	if since.Before(before.Add(-time.Second)) || since.After(time.Now()) {
		t.Fatalf("UnprotectedSince = %s, want about %s", since, before)
	}
	n = len(pub.list())
	pub.waitFor(t, n+3) // its backup and two rescans'
	if got := w.State().UnprotectedSince; !got.Equal(since) {
		t.Fatalf("after failed backups, UnprotectedSince = %s, want %s still", got, since)
	}

	// A backup succeeds: everything before it is protected.
	mu.Lock()
	succeed = true
	mu.Unlock()
	testkit.Eventually(t, 20*time.Second, "the change protected once a backup succeeds", func() bool { return w.State().UnprotectedSince.IsZero() })
	mu.Lock()
	if asked == 0 {
		t.Error("Committed never asked")
	}
	mu.Unlock()
}
