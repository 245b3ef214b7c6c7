package events

import (
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
// and a holder whose update fails (the key was deleted or taken over) learns it at once
// through the cancelled context.
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
}

// leaseValue is what a lease key holds: who took it and when.
type leaseValue struct {
	Worker string    `json:"worker"`
	Host   string    `json:"host,omitempty"`
	Since  time.Time `json:"since"`
}

// NewLeases opens the lease bucket, which EnsureStreams creates.
func NewLeases(ctx context.Context, js jetstream.JetStream, cfg Config) (*Leases, error) {
	cfg = cfg.withDefaults()
	name := cfg.Subjects.LeasesBucket()
	kv, err := js.KeyValue(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("open lease bucket %s (the worker creates it at start): %w", name, err)
	}
	return &Leases{js: js, kv: kv, cfg: cfg, held: make(map[string]bool), started: time.Now()}, nil
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
// uses): it is taken over at once instead of waiting out the TTL.
func (l *Leases) Acquire(ctx context.Context, key string) (context.Context, func(), error) {
	return l.acquire(ctx, key, time.Now())
}

// acquire is Acquire, with since as the time the lease says it was taken.
func (l *Leases) acquire(ctx context.Context, key string, since time.Time) (context.Context, func(), error) {
	if err := ValidLeaseKey(key); err != nil {
		return nil, nil, brr.Permanent(err)
	}
	val, err := json.Marshal(leaseValue{Worker: l.cfg.Worker, Host: l.cfg.Host, Since: since.UTC()})
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
		rev, lost = l.renew(lctx, cancel, stop, key, val, rev)
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
// update of a claim that an earlier run of this worker left: one under this worker's id,
// taken before this process made its Leases (by the same host's clock: a worker id lives
// in one data dir). A key another worker holds is an error marked brr.Snooze.
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
		var v leaseValue
		if json.Unmarshal(e.Value(), &v) == nil && v.Worker == l.cfg.Worker && v.Since.Before(l.started) {
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
// last revision written and whether the lease was lost. A revision mismatch (the key was deleted, expired or taken over)
// cancels the lease at once; other errors (NATS unreachable) are retried until the lease
// may have expired on the server, then cancel it too, so no one works under a lease that
// another worker may already hold.
func (l *Leases) renew(ctx context.Context, cancel context.CancelCauseFunc, stop <-chan struct{}, key string, val []byte, rev uint64) (uint64, bool) {
	interval := l.cfg.LeaseTTL / 3
	t := time.NewTicker(interval)
	defer t.Stop()
	lastOK := time.Now()
	for {
		select {
		case <-stop:
			return rev, false
		case <-ctx.Done():
			return rev, false
		case <-t.C:
		}
		uctx, ucancel := context.WithTimeout(ctx, interval)
		next, err := l.kv.Update(uctx, key, val, rev)
		ucancel()
		switch {
		case err == nil:
			rev, lastOK = next, time.Now()
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch), errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyNotFound):
			cancel(fmt.Errorf("lease %s lost: it was deleted, expired or taken by another worker: %w", key, err))
			return rev, true
		case ctx.Err() != nil:
			return rev, false
		case time.Since(lastOK) >= l.cfg.LeaseTTL-interval:
			cancel(fmt.Errorf("lease %s lost: not renewed for %s: %w", key, time.Since(lastOK).Round(time.Millisecond), err))
			return rev, true
		}
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
