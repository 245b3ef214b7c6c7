package events

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/clock"
)

// Leases hands out leases on repositories and sources, one key each in KV BRR_LEASES.
//
// A lease is taken with a create (it fails when the key exists) and kept alive by an
// update that names the revision the holder last wrote, every LeaseTTL/3. The bucket's
// TTL is enforced by the server, so a worker that stops renewing (it died, it hangs, its
// clock is wrong) loses the key LeaseTTL after its last renewal whatever its clock says,
// and a holder whose key was deleted or taken over learns it through the cancelled
// context, whose cause (ErrLeaseLost) says which lease and why.
//
// A renewal that fails is not the end of a lease: under load a server can stall for
// seconds, and an update that timed out may still be written when it resumes. The holder
// reads the key to find out (still its own value, maybe at a newer revision: it carries
// on; gone or another's: lost) and retries until LeaseTTL has passed since it sent the
// last update the server is known to have written, the earliest the server can expire it.
type Leases struct {
	js  jetstream.JetStream
	kv  jetstream.KeyValue
	cfg Config

	// held are the keys this process holds. started is when these Leases were made: a
	// key in the bucket under this worker's id, taken before then, is a lease of an
	// earlier run of this worker, which died holding it, and Acquire reclaims it.
	mu      sync.Mutex
	held    map[string]bool
	started time.Time
	// run tells the keys this process wrote from those of an earlier run of its worker
	// id: a key of this run that no job of it holds is a lease it lost or failed to
	// delete, which it takes over at once (see take).
	run string
}

// leaseValue is what a lease key holds: who took it and when, and which run of the worker.
type leaseValue struct {
	Worker string    `json:"worker"`
	Host   string    `json:"host,omitempty"`
	Since  time.Time `json:"since"`
	Run    string    `json:"run,omitempty"`
}

// ErrLeaseLost is the cause (context.Cause) of the context of a lease that was lost: its
// key was deleted, expired or taken by another worker, or could not be renewed for
// LeaseTTL. The error with it names the lease and says which.
var ErrLeaseLost = errors.New("lost")

// NewLeases opens the lease bucket, which EnsureStreams creates.
func NewLeases(ctx context.Context, js jetstream.JetStream, cfg Config) (*Leases, error) {
	cfg = cfg.withDefaults()
	name := cfg.Subjects.LeasesBucket()
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("open lease bucket %s (the worker creates it at start): %w", name, err)
	}
	return &Leases{js: js, kv: kv, cfg: cfg, held: make(map[string]bool), started: time.Now(), run: fmt.Sprintf("%016x", rand.Uint64())}, nil
}

// LeaseKey returns the lease key of name within scope ("repo", "source"): scope, a dot,
// and name with every byte other than a letter, a digit, '-', '_' or '/' written as
// "=XX" (hex), so any repo name or source path makes a valid key and different names
// never share one. An empty name gives scope alone.
func LeaseKey(scope, name string) string {
	const hex = "0123456789ABCDEF"
	if name == "" {
		return scope
	}
	var b strings.Builder
	b.Grow(len(scope) + 1 + len(name))
	b.WriteString(scope)
	b.WriteByte('.')
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '/':
			b.WriteByte(c)
		default:
			b.WriteByte('=')
			b.WriteByte(hex[c>>4])
			b.WriteByte(hex[c&15])
		}
	}
	return b.String()
}

// ValidLeaseKey checks that key can name a lease: letters, digits, '-', '_', '/', '='
// or '.', not starting or ending with '.' and without "..". LeaseKey builds such keys.
func ValidLeaseKey(key string) error {
	if key == "" {
		return errors.New("lease key is empty")
	}
	if key[0] == '.' || key[len(key)-1] == '.' || strings.Contains(key, "..") {
		return fmt.Errorf("lease key %q may not start or end with '.' or contain \"..\"", key)
	}
	for _, r := range key {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case r == '-', r == '_', r == '/', r == '=', r == '.':
		default:
			return fmt.Errorf("lease key %q has %q: use only letters, digits and - _ / = . (LeaseKey escapes the rest)", key, r)
		}
	}
	return nil
}

// Acquire takes the lease on key. It returns a context that is cancelled when the lease
// is lost (context.Cause says why) or ctx is done, and a release function that stops the
// renewal and deletes the key; call release exactly when the work under the lease ends
// (calling it again does nothing).
//
// When another worker holds key, or another job of this process does, Acquire returns an
// error marked with brr.Snooze and a delay of about LeaseTTL/2, so the consume loop tries
// the job again later without counting it as a failure. A key held under this worker's
// id since before this process started is a lease of an earlier run of this worker,
// which died holding it (the id is kept in the data dir, which one process at a time
// uses): it is taken over at once instead of waiting out the TTL. So is a key this
// process wrote and no job of it holds: a lease it lost (a retry of the job that lost it
// does not wait for the key to expire) or whose release could not delete the key.
func (l *Leases) Acquire(ctx context.Context, key string) (context.Context, func(), error) {
	return l.acquire(ctx, key, time.Now())
}

// acquire is Acquire, with since as the time the lease says it was taken.
func (l *Leases) acquire(ctx context.Context, key string, since time.Time) (context.Context, func(), error) {
	if err := ValidLeaseKey(key); err != nil {
		return nil, nil, brr.Permanent(err)
	}
	val, err := json.Marshal(leaseValue{Worker: l.cfg.Worker, Host: l.cfg.Host, Since: since.UTC(), Run: l.run})
	if err != nil {
		return nil, nil, fmt.Errorf("encode lease %s: %w", key, err)
	}
	l.mu.Lock()
	if l.held[key] {
		l.mu.Unlock()
		return nil, nil, brr.Snooze(fmt.Errorf("%s is leased by worker %s (another job of this worker)", key, l.cfg.Worker), l.snoozeDelay(nil))
	}
	l.held[key] = true // reserved: a second Acquire in this process is refused above
	l.mu.Unlock()
	sent := time.Now() // the server writes the key after this: it expires LeaseTTL later at the earliest
	rev, err := l.take(ctx, key, val)
	if err != nil {
		l.mu.Lock()
		delete(l.held, key)
		l.mu.Unlock()
		return nil, nil, err
	}

	lctx, cancel := context.WithCancelCause(ctx)
	stop := make(chan struct{})
	done := make(chan struct{})
	lost := false
	go func() {
		defer close(done)
		rev, lost = l.renew(lctx, cancel, stop, key, val, rev, sent)
	}()
	var once sync.Once
	release := func() {
		once.Do(func() {
			close(stop)
			<-done
			if !lost {
				// Delete only the revision we wrote: a lease we lost may be someone else's
				// now. The work's ctx may be done already (shutdown): delete anyway.
				dctx, dcancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.LeaseTTL/3)
				_ = l.kv.Delete(dctx, key, jetstream.LastRevision(rev))
				dcancel()
			}
			cancel(fmt.Errorf("lease %s released", key))
			l.mu.Lock()
			delete(l.held, key)
			l.mu.Unlock()
		})
	}
	return lctx, release, nil
}

// take writes this worker's claim on key and returns its revision: a create, or an
// update of a claim that no job holds (see stale). A key another worker holds is an error
// marked brr.Snooze.
func (l *Leases) take(ctx context.Context, key string, val []byte) (uint64, error) {
	for attempt := 0; ; attempt++ {
		rev, err := l.kv.Create(ctx, key, val)
		if err == nil {
			return rev, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, fmt.Errorf("take lease %s: %w", key, err)
		}
		e, err := l.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) && attempt == 0 {
			continue // the holder let go or expired between our create and get: try again
		}
		if err != nil {
			return 0, fmt.Errorf("read lease %s: %w", key, err)
		}
		if l.stale(e) {
			rev, err := l.kv.Update(ctx, key, val, e.Revision())
			if err == nil {
				return rev, nil
			}
			if attempt == 0 {
				continue // it changed meanwhile: look again
			}
			return 0, fmt.Errorf("reclaim lease %s: %w", key, err)
		}
		return 0, brr.Snooze(fmt.Errorf("%s is leased by %s", key, describeHolder(e)), l.snoozeDelay(e))
	}
}

// stale says whether the lease key e is a claim of this worker that no job holds, which
// take may overwrite: one an earlier run of this worker left (under this worker's id,
// taken before this process made its Leases, by the same host's clock: a worker id lives
// in one data dir), or one of this run whose key is not held (take is called with key
// reserved in held: no other job of this process has it). Both would otherwise block
// their own worker until they expire.
func (l *Leases) stale(e jetstream.KeyValueEntry) bool {
	var v leaseValue
	if json.Unmarshal(e.Value(), &v) != nil || v.Worker != l.cfg.Worker {
		return false
	}
	return v.Run == l.run || v.Since.Before(l.started)
}

// describeHolder says who holds the lease e and since when: "worker W since T".
func describeHolder(e jetstream.KeyValueEntry) string {
	var v leaseValue
	if err := json.Unmarshal(e.Value(), &v); err != nil || v.Worker == "" {
		return "an unknown worker since " + e.Created().UTC().Format(time.RFC3339)
	}
	return fmt.Sprintf("worker %s since %s", v.Worker, v.Since.UTC().Format(time.RFC3339))
}

// snoozeDelay is how long a job waits for the lease held as e (nil: by this process):
// about half a TTL, jittered by ±25% so that workers waiting for the same key do not all
// come back at once; but no longer than until the lease expires, with a little to spare,
// when its holder last renewed it more than half a TTL ago: a holder that stopped
// renewing (it was killed) is waited out to the moment its lease is gone.
func (l *Leases) snoozeDelay(e jetstream.KeyValueEntry) time.Duration {
	half := l.cfg.LeaseTTL / 2
	d := half*3/4 + time.Duration(rand.Int64N(int64(half)/2+1))
	if e == nil {
		return d
	}
	left := l.cfg.LeaseTTL - time.Since(e.Created())
	return min(d, max(left, 0)+l.cfg.LeaseTTL/20+100*time.Millisecond)
}

// renew updates key every LeaseTTL/3 until stop is closed or ctx is done, and returns the
// last revision written and whether the lease was lost. sent is when the write that took
// the key was sent.
//
// A renewal that fails does not end the lease by itself: renew reads the key. Still this
// lease's value, the key is kept: at a newer revision when an update that timed out was
// written after all (a stalled server resumes with the requests it held), which renew
// then carries on from. Deleted, expired or another's value: the lease is lost at once.
// No answer either (NATS unreachable): renew tries again until LeaseTTL has passed since
// it sent the last write the server is known to have made (the earliest moment the
// server can expire the key), then gives the lease up, so that no one works under a lease
// another worker may hold by then. Losing it cancels ctx with an ErrLeaseLost cause.
func (l *Leases) renew(ctx context.Context, cancel context.CancelCauseFunc, stop <-chan struct{}, key string, val []byte, rev uint64, sent time.Time) (uint64, bool) {
	interval := l.cfg.LeaseTTL / 3
	retry := max(interval/8, 50*time.Millisecond)
	// expires is the earliest moment the server may expire the key; pending is when the
	// first renewal since the last one known written was sent (zero: none is pending): a
	// renewal that failed may have been written after then, not before.
	expires := sent.Add(l.cfg.LeaseTTL)
	var pending time.Time
	var failed error // the last renewal's error
	lose := func(why string, args ...any) (uint64, bool) {
		cancel(fmt.Errorf("lease on %s %w: %s", key, ErrLeaseLost, fmt.Sprintf(why, args...)))
		return rev, true
	}
	t := time.NewTimer(interval)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return rev, false
		case <-ctx.Done():
			return rev, false
		case <-t.C:
		}
		now := time.Now()
		if pending.IsZero() {
			pending = now
		}
		left := expires.Sub(now)
		if left <= 0 {
			return lose("not renewed for %s, so it may have expired on the server: %v", now.Sub(expires.Add(-l.cfg.LeaseTTL)).Round(time.Millisecond), failed)
		}
		uctx, ucancel := context.WithTimeout(ctx, min(interval, left))
		next, err := l.kv.Update(uctx, key, val, rev)
		ucancel()
		if err == nil {
			rev, expires, pending, failed = next, now.Add(l.cfg.LeaseTTL), time.Time{}, nil
			t.Reset(interval)
			continue
		}
		if ctx.Err() != nil {
			return rev, false
		}
		failed = err
		// What does the key hold? Asked until the key may expire, and no longer.
		gctx, gcancel := context.WithTimeout(ctx, max(time.Until(expires), time.Millisecond))
		e, gerr := l.kv.Get(gctx, key)
		gcancel()
		switch {
		case gerr == nil && bytes.Equal(e.Value(), val):
			if e.Revision() != rev {
				// A renewal that failed was written: after pending was sent.
				rev, expires = e.Revision(), pending.Add(l.cfg.LeaseTTL)
				pending = time.Time{}
			}
		case gerr == nil:
			return lose("taken by %s (renewal: %v)", describeHolder(e), err)
		case errors.Is(gerr, jetstream.ErrKeyNotFound), errors.Is(gerr, jetstream.ErrKeyDeleted):
			return lose("its key was deleted or expired (renewal: %v)", err)
		case ctx.Err() != nil:
			return rev, false
		}
		t.Reset(retry)
	}
}

// PresenceKey is the lease key that says worker is running: worker.<id>.
func PresenceKey(worker string) string { return LeaseKey("worker", worker) }

// KeepPresence holds this worker's presence key (PresenceKey) until ctx is done, taking
// it again whenever it is lost (a NATS outage longer than the lease TTL). The key says
// since when this process runs, not since when the key is held, so that an outage does
// not make the worker look restarted. It is what tells the other workers of the pool
// that a job this worker started, whose ack or InProgress was lost, is still its own
// (see Consumer.UsePresence); a killed worker's key expires a lease TTL after its last
// renewal.
func (l *Leases) KeepPresence(ctx context.Context) error {
	for ctx.Err() == nil {
		lctx, release, err := l.acquire(ctx, PresenceKey(l.cfg.Worker), l.started)
		if err != nil {
			if !clock.Sleep(ctx, l.cfg.LeaseTTL/3) {
				break
			}
			continue
		}
		<-lctx.Done()
		release()
	}
	return nil
}

// Presence says whether worker's presence key is there, since when the worker's process
// runs, and how long until the key expires unless it is renewed.
func (l *Leases) Presence(ctx context.Context, worker string) (since time.Time, left time.Duration, ok bool) {
	e, err := l.kv.Get(ctx, PresenceKey(worker))
	if err != nil {
		return time.Time{}, 0, false
	}
	var v leaseValue
	if json.Unmarshal(e.Value(), &v) != nil {
		return time.Time{}, 0, false
	}
	return v.Since, max(l.cfg.LeaseTTL-time.Since(e.Created()), 0), true
}
