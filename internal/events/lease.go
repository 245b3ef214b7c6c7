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

	"github.com/brr-dev/brr"
	"github.com/nats-io/nats.go/jetstream"
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
	kv  jetstream.KeyValue
	cfg Config
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
	return &Leases{kv: kv, cfg: cfg}, nil
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
// When another worker holds key, Acquire returns an error marked with brr.Snooze and a
// delay of about LeaseTTL/2, so the consume loop tries the job again later without
// counting it as a failure.
func (l *Leases) Acquire(ctx context.Context, key string) (context.Context, func(), error) {
	if err := ValidLeaseKey(key); err != nil {
		return nil, nil, brr.Permanent(err)
	}
	val, err := json.Marshal(leaseValue{Worker: l.cfg.Worker, Host: l.cfg.Host, Since: time.Now().UTC()})
	if err != nil {
		return nil, nil, fmt.Errorf("encode lease %s: %w", key, err)
	}
	var rev uint64
	for attempt := 0; ; attempt++ {
		rev, err = l.kv.Create(ctx, key, val)
		if err == nil {
			break
		}
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, nil, fmt.Errorf("take lease %s: %w", key, err)
		}
		holder, herr := l.holder(ctx, key)
		if errors.Is(herr, jetstream.ErrKeyNotFound) && attempt == 0 {
			continue // the holder let go or expired between our create and get: try again
		}
		if herr != nil {
			return nil, nil, fmt.Errorf("read lease %s: %w", key, herr)
		}
		return nil, nil, brr.Snooze(fmt.Errorf("%s is leased by %s", key, holder), l.snoozeDelay())
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
		})
	}
	return lctx, release, nil
}

// holder says who holds key and since when: "worker W since T".
func (l *Leases) holder(ctx context.Context, key string) (string, error) {
	e, err := l.kv.Get(ctx, key)
	if err != nil {
		return "", err
	}
	var v leaseValue
	if err := json.Unmarshal(e.Value(), &v); err != nil || v.Worker == "" {
		return "an unknown worker since " + e.Created().UTC().Format(time.RFC3339), nil
	}
	return fmt.Sprintf("worker %s since %s", v.Worker, v.Since.UTC().Format(time.RFC3339)), nil
}

// snoozeDelay is about half a TTL, jittered by ±25% so that workers waiting for the same
// key do not all come back at once.
func (l *Leases) snoozeDelay() time.Duration {
	half := l.cfg.LeaseTTL / 2
	return half*3/4 + time.Duration(rand.Int64N(int64(half)/2+1))
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
