// Package limit caps the bandwidth a repository backend uses: a wrapper that makes Save
// and Load wait for tokens of a bucket refilled at the configured rate, so that a backup
// to an offsite repository over a shared link leaves room for everything else on it
// (the repos' limit_upload and limit_download, in KiB/s). It is a decorator like restic's
// backend limiter: the backend below knows nothing of it.
//
// The wrapper does not pace the bytes while they move: it bounds the average rate. A Save
// waits for its bytes' tokens (its reader's Length) before the object is stored, so that
// a cancelled job stops before storing it, and hands the reader down untouched, so that
// the backend below may still read it in parallel parts (an io.ReaderAt); a Load pays for
// the bytes it returned after they arrived, as it does not know their number before. An
// object is sent at the link's speed once paid for; over a job of many packs the rate is
// the one configured.
package limit

import (
	"context"
	"time"

	"golang.org/x/time/rate"

	"github.com/brr-dev/brr/internal/repo"
)

// Burst bounds, in bytes: a bucket holds a quarter of a second of traffic, at least
// MinBurst (so that a slow link still moves a small object in one step) and at most
// MaxBurst (so that an idle minute does not let a fast link run unthrottled for long).
const (
	MinBurst = 64 << 10
	MaxBurst = 1 << 20
)

// Wrap returns be with Save throttled to uploadKiBs and Load to downloadKiBs KiB/s; 0 (or
// less) leaves that direction unlimited, and with both 0 Wrap returns be itself. The
// wrapper owns be as be's caller did: its Close closes be.
func Wrap(be repo.Backend, uploadKiBs, downloadKiBs int) repo.Backend {
	if uploadKiBs <= 0 && downloadKiBs <= 0 {
		return be
	}
	return newBackend(be, uploadKiBs, downloadKiBs, time.Now, sleep)
}

// backend is a repo.Backend whose Save and Load take tokens from up and down (nil:
// unlimited) before or after they move the bytes.
type backend struct {
	be       repo.Backend
	up, down *rate.Limiter
	// now and sleep are the clock; tests replace them to check what the wrapper waits
	// for without waiting.
	now   func() time.Time
	sleep func(ctx context.Context, d time.Duration) error
}

var _ repo.Backend = (*backend)(nil)

func newBackend(be repo.Backend, uploadKiBs, downloadKiBs int, now func() time.Time, sleep func(context.Context, time.Duration) error) *backend {
	return &backend{be: be, up: newLimiter(uploadKiBs), down: newLimiter(downloadKiBs), now: now, sleep: sleep}
}

// newLimiter returns a full bucket refilled at kibs KiB/s, or nil for kibs <= 0.
func newLimiter(kibs int) *rate.Limiter {
	if kibs <= 0 {
		return nil
	}
	perSec := kibs * 1024
	return rate.NewLimiter(rate.Limit(perSec), min(max(perSec/4, MinBurst), MaxBurst))
}

// take waits until l has given n tokens, taking them in slices of at most its burst (a
// bucket never holds more), and returns ctx's error when ctx is done first; the tokens of
// the slice being waited for are then given back.
func (b *backend) take(ctx context.Context, l *rate.Limiter, n int) error {
	if l == nil {
		return nil
	}
	for n > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		k := min(n, l.Burst())
		now := b.now()
		r := l.ReserveN(now, k) // k <= burst: always OK
		if d := r.DelayFrom(now); d > 0 {
			if err := b.sleep(ctx, d); err != nil {
				r.CancelAt(b.now())
				return err
			}
		}
		n -= k
	}
	return nil
}

// sleep waits d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// Unwrap returns the backend below.
func (b *backend) Unwrap() repo.Backend { return b.be }

func (b *backend) Location() string { return b.be.Location() }

// Save waits for the tokens of rd's bytes, then stores them: a Save cancelled while it
// waits stores nothing. rd goes down as it is, so that the backend below still sees
// what else it is (an io.ReaderAt for parallel parts).
func (b *backend) Save(ctx context.Context, h repo.Handle, rd repo.RewindReader) error {
	if err := b.take(ctx, b.up, int(rd.Length())); err != nil {
		return err
	}
	return b.be.Save(ctx, h, rd)
}

// Load loads, then waits for the tokens of the bytes it got; a Load cancelled while it
// waits returns ctx's error and no data.
func (b *backend) Load(ctx context.Context, h repo.Handle, offset, length int64) ([]byte, error) {
	data, err := b.be.Load(ctx, h, offset, length)
	if err != nil {
		return nil, err
	}
	if err := b.take(ctx, b.down, len(data)); err != nil {
		return nil, err
	}
	return data, nil
}

func (b *backend) Stat(ctx context.Context, h repo.Handle) (repo.FileInfo, error) {
	return b.be.Stat(ctx, h)
}

func (b *backend) Remove(ctx context.Context, h repo.Handle) error { return b.be.Remove(ctx, h) }

func (b *backend) List(ctx context.Context, t repo.FileType, fn func(repo.FileInfo) error) error {
	return b.be.List(ctx, t, fn)
}

func (b *backend) Close() error { return b.be.Close() }
