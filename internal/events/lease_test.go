package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// leaseSetup starts a server with the brr streams and a lease TTL of ttl, and returns
// the leases of two workers, w1 and w2, and the bucket itself.
func leaseSetup(t *testing.T, ttl time.Duration) (l1, l2 *Leases, kv jetstream.KeyValue) {
	t.Helper()
	ctx := context.Background()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	cfg := Config{Worker: "w1", Host: "h1", LeaseTTL: ttl}
	if err := EnsureStreams(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	var err error
	if l1, err = NewLeases(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Worker, cfg.Host = "w2", "h2"
	if l2, err = NewLeases(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	if kv, err = js.KeyValue(ctx, cfg.Subjects.LeasesBucket()); err != nil {
		t.Fatal(err)
	}
	return l1, l2, kv
}

// wantHeld checks that err is the snooze error of a key held by worker.
func wantHeld(t *testing.T, err error, worker string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Acquire of a held key succeeded")
	}
	d, ok := brr.SnoozeDelay(err)
	if !ok {
		t.Fatalf("Acquire of a held key: %v, want a snooze error", err)
	}
	if d <= 0 {
		t.Errorf("snooze delay = %v, want > 0", d)
	}
	if !strings.Contains(err.Error(), "leased by worker "+worker) {
		t.Errorf("error = %q, want it to name worker %s", err, worker)
	}
}

// waitDone waits for ctx to be done, and fails the test if that takes more than limit:
// a safety net so that a broken lease fails instead of hanging, not a timing assertion.
func waitDone(t *testing.T, ctx context.Context, limit time.Duration) {
	t.Helper()
	select {
	case <-ctx.Done():
	case <-time.After(limit):
		t.Fatalf("lease context not cancelled after %v", limit)
	}
}

func TestLeaseAcquireRelease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l1, l2, kv := leaseSetup(t, 30*time.Second)

	lctx, release, err := l1.Acquire(ctx, "repo.local")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = l2.Acquire(ctx, "repo.local")
	wantHeld(t, err, "w1")
	if d, _ := brr.SnoozeDelay(err); d < 10*time.Second || d > 20*time.Second {
		t.Errorf("snooze delay = %v, want about LeaseTTL/2 = 15s", d)
	}
	// The holder itself cannot take it twice either.
	_, _, err = l1.Acquire(ctx, "repo.local")
	wantHeld(t, err, "w1")
	// Other keys are free.
	_, release2, err := l2.Acquire(ctx, "repo.offsite")
	if err != nil {
		t.Fatalf("Acquire of another key: %v", err)
	}
	release2()

	release()
	release() // a second release does nothing
	if lctx.Err() == nil {
		t.Errorf("lease context not done after release")
	}
	if _, err := kv.Get(ctx, "repo.local"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("Get after release: %v, want ErrKeyNotFound", err)
	}
	lctx2, release3, err := l2.Acquire(ctx, "repo.local")
	if err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	if lctx2.Err() != nil {
		t.Errorf("new lease context is done: %v", context.Cause(lctx2))
	}
	release3()
}

func TestLeaseRenewal(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ttl = time.Second
	l1, l2, _ := leaseSetup(t, ttl)

	lctx, release, err := l1.Acquire(ctx, "source./srv/app")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	time.Sleep(4 * ttl)
	if lctx.Err() != nil {
		t.Fatalf("lease lost while renewed: %v", context.Cause(lctx))
	}
	_, _, err = l2.Acquire(ctx, "source./srv/app")
	wantHeld(t, err, "w1")
}

func TestLeaseLostBehindItsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l1, _, kv := leaseSetup(t, time.Second)

	for _, tc := range []struct {
		name   string
		meddle func(key string) error
	}{
		{"overwritten", func(key string) error {
			_, err := kv.Put(ctx, key, []byte(`{"worker":"intruder"}`))
			return err
		}},
		{"deleted", func(key string) error { return kv.Delete(ctx, key) }},
		{"purged", func(key string) error { return kv.Purge(ctx, key) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "repo." + tc.name
			lctx, release, err := l1.Acquire(ctx, key)
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			if err := tc.meddle(key); err != nil {
				t.Fatal(err)
			}
			waitDone(t, lctx, 10*time.Second)
			if cause := context.Cause(lctx); cause == nil || !strings.Contains(cause.Error(), "lost") {
				t.Errorf("Cause = %v, want a lost lease", cause)
			}
			if tc.name == "overwritten" {
				release() // must not delete the intruder's key
				e, err := kv.Get(ctx, key)
				if err != nil {
					t.Fatalf("intruder's key gone after release: %v", err)
				}
				if !strings.Contains(string(e.Value()), "intruder") {
					t.Errorf("key = %s, want the intruder's value", e.Value())
				}
			}
		})
	}
}

func TestLeaseExpiresWithoutRenewal(t *testing.T) {
	t.Parallel()
	const ttl = time.Second
	l1, l2, _ := leaseSetup(t, ttl)

	// w1 takes the lease and then stops renewing without releasing: what a hung or
	// killed worker looks like from outside.
	ctx, cancel := context.WithCancel(context.Background())
	lctx, _, err := l1.Acquire(ctx, "repo.local")
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	waitDone(t, lctx, time.Second)
	_, _, err = l2.Acquire(context.Background(), "repo.local")
	wantHeld(t, err, "w1")

	free := testkit.WaitFor(15*ttl, func() bool {
		var (
			lctx2   context.Context
			release func()
		)
		lctx2, release, err = l2.Acquire(context.Background(), "repo.local")
		if err != nil {
			if _, ok := brr.SnoozeDelay(err); !ok {
				t.Fatalf("Acquire: %v", err)
			}
			return false
		}
		if lctx2.Err() != nil {
			t.Errorf("new lease context is done: %v", context.Cause(lctx2))
		}
		release()
		return true
	})
	if !free {
		t.Fatalf("lease not free %v after its holder stopped renewing (TTL %v): %v", 15*ttl, ttl, err)
	}
}

func TestLeaseKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l1, _, _ := leaseSetup(t, 30*time.Second)

	for _, key := range []string{"", ".repo", "repo.", "repo..local", "source./srv/my app", "repo.*", "repo.>", "repo.ü"} {
		_, _, err := l1.Acquire(ctx, key)
		if err == nil {
			t.Errorf("Acquire(%q) succeeded, want an invalid key error", key)
			continue
		}
		if !brr.IsPermanent(err) {
			t.Errorf("Acquire(%q) = %v, want a permanent error", key, err)
		}
		if _, ok := brr.SnoozeDelay(err); ok {
			t.Errorf("Acquire(%q) = %v, want no snooze", key, err)
		}
	}

	seen := map[string]string{}
	for _, name := range []string{"/srv/app", "/srv/my app", "/srv/my=app", "/srv/my=20app", "/a/../b", "/a/./b", ".", "..", "", "ümlaut", "local", "a.b", "a_b", "a-b"} {
		key := LeaseKey("source", name)
		if err := ValidLeaseKey(key); err != nil {
			t.Errorf("LeaseKey(source, %q) = %q: %v", name, key, err)
		}
		if other, dup := seen[key]; dup {
			t.Errorf("LeaseKey gives %q for both %q and %q", key, other, name)
		}
		seen[key] = name
	}
	if got, want := LeaseKey("repo", "local"), "repo.local"; got != want {
		t.Errorf("LeaseKey(repo, local) = %q, want %q", got, want)
	}
	if got, want := LeaseKey("source", "/srv/my app"), "source./srv/my=20app"; got != want {
		t.Errorf("LeaseKey(source, /srv/my app) = %q, want %q", got, want)
	}
	_, release, err := l1.Acquire(ctx, LeaseKey("source", "/srv/my app.d"))
	if err != nil {
		t.Fatalf("Acquire of an escaped key: %v", err)
	}
	release()
}

// TestRestartedWorkerReclaimsItsLease: a worker that crashed while holding a lease
// restarts with the same id (kept in its data dir) and takes its job up again. It used to
// find the key held "by worker w1", itself, and snooze until the TTL ran out; now it
// reclaims what its previous life held. A lease the same process holds is still refused,
// and so is one another worker holds.
func TestRestartedWorkerReclaimsItsLease(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l1, l2, kv := leaseSetup(t, 30*time.Second)
	if _, _, err := l1.Acquire(ctx, "source.srv"); err != nil { // never released: the process dies
		t.Fatal(err)
	}
	time.Sleep(10 * time.Millisecond) // the restarted process starts after the lease was taken
	restarted, err := NewLeases(ctx, l1.js, l1.cfg)
	if err != nil {
		t.Fatal(err)
	}
	lctx, release, err := restarted.Acquire(ctx, "source.srv")
	if err != nil {
		t.Fatalf("the restarted worker's Acquire of its own stale lease: %v", err)
	}
	if lctx.Err() != nil {
		t.Fatalf("reclaimed lease context is done: %v", context.Cause(lctx))
	}
	_, _, err = restarted.Acquire(ctx, "source.srv")
	wantHeld(t, err, "w1")
	_, _, err = l2.Acquire(ctx, "source.srv")
	wantHeld(t, err, "w1")
	release()
	if _, err := kv.Get(ctx, "source.srv"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("Get after releasing the reclaimed lease: %v, want ErrKeyNotFound", err)
	}
}

// TestLeaseSurvivesAStalledServer: the server stalls (its connection to the holder is
// held, as a read loop stuck under load holds it) from just after a renewal until after
// the next renewal timed out, and resumes before the key can expire. The lease used to be
// given up as soon as that one renewal timed out, which cost a 4-minute backup when an
// embedded server stalled 3.3 s under load; now the holder reads the key, finds it still
// its own (at the revision of the renewal that timed out but was written when the server
// resumed), and carries on.
func TestLeaseSurvivesAStalledServer(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	const ttl = 24 * time.Second // renewals every 8 s, each given 8 s
	s := natstest.StartListening(t)
	stall := natstest.StartStaller(t, s.Addr().String())
	_, js := stall.JetStream(t)
	cfg := Config{Worker: "w1", LeaseTTL: ttl}
	if err := EnsureStreams(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	l, err := NewLeases(ctx, js, cfg)
	if err != nil {
		t.Fatal(err)
	}
	_, direct := s.JetStream(t)
	kv, err := direct.KeyValue(ctx, cfg.Subjects.LeasesBucket())
	if err != nil {
		t.Fatal(err)
	}

	lctx, release, err := l.Acquire(ctx, "source.stalled")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	taken, err := kv.Get(ctx, "source.stalled")
	if err != nil {
		t.Fatal(err)
	}
	// Stall right after the server's answer to the first renewal has gone through to
	// the holder (its PubAck), not when the watch, on a connection of its own, shows the
	// renewal: that can come first, and a stall then holds the answer, so the holder
	// counts the lease from its take, not from the renewal, and rightly gives it up
	// before the stall ends.
	stall.StallAfter(fmt.Sprintf(`"stream":"KV_%s","seq":%d}`, cfg.Subjects.LeasesBucket(), taken.Revision()+1))
	w, err := kv.Watch(ctx, "source.stalled", jetstream.UpdatesOnly())
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = w.Stop() }()
	next := func(what string) jetstream.KeyValueEntry {
		t.Helper()
		select {
		case e := <-w.Updates():
			return e
		case <-time.After(4 * ttl):
			t.Fatalf("no %s of the lease within %s; lease context: %v", what, 4*ttl, context.Cause(lctx))
			return nil
		}
	}
	first := next("renewal")
	if first.Revision() != taken.Revision()+1 {
		t.Fatalf("first renewal at revision %d, want %d", first.Revision(), taken.Revision()+1)
	}
	if !testkit.WaitFor(ttl/3, stall.Stalled) {
		t.Fatal("the holder's connection did not stall after the first renewal's answer")
	}
	// The next renewal is due 8 s after the first was written and times out 8 s later, at
	// 16 s; the key expires at 24 s unless a renewal is written. Resume at 17 s, counted
	// from when the server wrote the first renewal: the held renewal is written then, and
	// the holder's read of the key has 7 s to get its answer.
	time.Sleep(time.Until(first.Created().Add(ttl*2/3 + time.Second)))
	stall.Resume()
	if e := next("renewal after the stall"); e.Operation() != jetstream.KeyValuePut || e.Revision() <= first.Revision() {
		t.Fatalf("after the stall the key is %v at revision %d, want a renewal after %d", e.Operation(), e.Revision(), first.Revision())
	}
	next("second renewal after the stall")
	if lctx.Err() != nil {
		t.Fatalf("lease given up over a stall shorter than its TTL: %v", context.Cause(lctx))
	}
}

// TestLeaseRetryTakesOverItsOwnKey: a lease this process lost (its renewals failed past
// the TTL while the stalled server kept the key) leaves the key under this worker's id
// and run. The retry of the job used to find it "leased by worker w1", itself, and wait
// for it to expire; now it takes it over at once. The same worker id written by another
// run of it that is still up (since after this one started) is waited for, as another
// worker's lease is.
func TestLeaseRetryTakesOverItsOwnKey(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	l1, l2, kv := leaseSetup(t, 30*time.Second)
	left := func(run string) []byte {
		val, err := json.Marshal(leaseValue{Worker: "w1", Host: "h1", Since: time.Now().UTC(), Run: run})
		if err != nil {
			t.Fatal(err)
		}
		return val
	}
	if _, err := kv.Create(ctx, "repo.mine", left(l1.run)); err != nil {
		t.Fatal(err)
	}
	_, _, err := l2.Acquire(ctx, "repo.mine")
	wantHeld(t, err, "w1")
	lctx, release, err := l1.Acquire(ctx, "repo.mine")
	if err != nil {
		t.Fatalf("Acquire of a key this run left: %v, want it taken over", err)
	}
	if lctx.Err() != nil {
		t.Fatalf("taken-over lease context is done: %v", context.Cause(lctx))
	}
	release()
	if _, err := kv.Get(ctx, "repo.mine"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("Get after releasing the taken-over lease: %v, want ErrKeyNotFound", err)
	}

	if _, err := kv.Create(ctx, "repo.twin", left("another-run")); err != nil {
		t.Fatal(err)
	}
	_, _, err = l1.Acquire(ctx, "repo.twin")
	wantHeld(t, err, "w1")
}
