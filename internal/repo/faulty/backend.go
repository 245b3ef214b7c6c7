// Package faulty wraps a repository backend with faults armed by tests: a save that fails,
// a save that leaves a truncated object, a load that fails or returns a flipped byte. It
// exists so that the repository's promises under failure (a failed pack or index write
// never leaves a snapshot pointing at missing data; damage is found by Check) are tested
// against real storage, at the exact step where a disk or a network would fail.
package faulty

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/brr-dev/brr/internal/repo"
)

// ErrInjected is the error a fault returns when it was armed without one.
var ErrInjected = errors.New("injected fault")

type op int

const (
	opSave op = iota
	opLoad
)

type action int

const (
	actFail action = iota
	actTruncate
	actCorrupt
)

// fault fires on the (after+1)-th matching call after it was armed, once.
type fault struct {
	op    op
	t     repo.FileType
	after int
	act   action
	err   error
}

// Backend passes every call to the backend it wraps, except where a fault is armed. It
// is safe for concurrent use; faults may be armed while it is in use.
type Backend struct {
	be repo.Backend

	mu     sync.Mutex
	faults []*fault
	saves  map[repo.FileType]int
	loads  map[repo.FileType]int
	fired  int
}

var _ repo.Backend = (*Backend)(nil)

// New returns be with no fault armed.
func New(be repo.Backend) *Backend {
	return &Backend{be: be, saves: map[repo.FileType]int{}, loads: map[repo.FileType]int{}}
}

// Unwrap returns the wrapped backend.
func (b *Backend) Unwrap() repo.Backend { return b.be }

func (b *Backend) arm(f *fault) {
	if f.err == nil && f.act == actFail {
		f.err = ErrInjected
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults = append(b.faults, f)
}

// FailSave makes the (after+1)-th Save of type t from now on fail with err (ErrInjected
// when nil) without storing anything. after 0 means the next one.
func (b *Backend) FailSave(t repo.FileType, after int, err error) {
	b.arm(&fault{op: opSave, t: t, after: after, act: actFail, err: err})
}

// TruncateSave makes the (after+1)-th Save of type t from now on store only the first
// half of its data under the object's name, as a store without atomic writes would after
// a crash, and return err; with err nil the Save reports success (a lying disk).
func (b *Backend) TruncateSave(t repo.FileType, after int, err error) {
	b.arm(&fault{op: opSave, t: t, after: after, act: actTruncate, err: err})
}

// FailLoad makes the (after+1)-th Load of type t from now on fail with err (ErrInjected
// when nil).
func (b *Backend) FailLoad(t repo.FileType, after int, err error) {
	b.arm(&fault{op: opLoad, t: t, after: after, act: actFail, err: err})
}

// CorruptLoad makes the (after+1)-th Load of type t from now on return its data with
// one bit of its middle byte flipped; the stored object is not changed.
func (b *Backend) CorruptLoad(t repo.FileType, after int) {
	b.arm(&fault{op: opLoad, t: t, after: after, act: actCorrupt})
}

// Reset disarms every fault that has not fired.
func (b *Backend) Reset() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.faults = nil
}

// Armed returns how many faults wait to fire.
func (b *Backend) Armed() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.faults)
}

// Fired returns how many faults have fired.
func (b *Backend) Fired() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.fired
}

// Saves returns how many Saves of type t were called, faulty ones included.
func (b *Backend) Saves(t repo.FileType) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.saves[t]
}

// Loads returns how many Loads of type t were called, faulty ones included.
func (b *Backend) Loads(t repo.FileType) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.loads[t]
}

// next counts a call and returns the fault that fires on it, if any.
func (b *Backend) next(o op, t repo.FileType) *fault {
	b.mu.Lock()
	defer b.mu.Unlock()
	if o == opSave {
		b.saves[t]++
	} else {
		b.loads[t]++
	}
	var fire *fault
	kept := b.faults[:0]
	for _, f := range b.faults {
		if f.op != o || f.t != t {
			kept = append(kept, f)
			continue
		}
		if f.after == 0 && fire == nil {
			fire = f
			continue
		}
		if f.after > 0 {
			f.after--
		}
		kept = append(kept, f)
	}
	b.faults = kept
	if fire != nil {
		b.fired++
	}
	return fire
}

// Location returns the wrapped backend's location.
func (b *Backend) Location() string { return b.be.Location() }

// Save stores rd's bytes unless a save fault fires.
func (b *Backend) Save(ctx context.Context, h repo.Handle, rd repo.RewindReader) error {
	f := b.next(opSave, h.Type)
	switch {
	case f == nil:
		return b.be.Save(ctx, h, rd)
	case f.act == actTruncate:
		if err := b.be.Save(ctx, h, &truncated{rd: rd, n: rd.Length() / 2, left: rd.Length() / 2}); err != nil {
			return err
		}
		return f.err
	default:
		return f.err
	}
}

// Load loads h unless a load fault fires.
func (b *Backend) Load(ctx context.Context, h repo.Handle, offset, length int64) ([]byte, error) {
	f := b.next(opLoad, h.Type)
	if f != nil && f.act == actFail {
		return nil, f.err
	}
	data, err := b.be.Load(ctx, h, offset, length)
	if err != nil || f == nil {
		return data, err
	}
	if len(data) > 0 {
		data[len(data)/2] ^= 0x01
	}
	return data, nil
}

// Stat passes through.
func (b *Backend) Stat(ctx context.Context, h repo.Handle) (repo.FileInfo, error) {
	return b.be.Stat(ctx, h)
}

// Remove passes through.
func (b *Backend) Remove(ctx context.Context, h repo.Handle) error { return b.be.Remove(ctx, h) }

// List passes through.
func (b *Backend) List(ctx context.Context, t repo.FileType, fn func(repo.FileInfo) error) error {
	return b.be.List(ctx, t, fn)
}

// Close closes the wrapped backend.
func (b *Backend) Close() error { return b.be.Close() }

// truncated is the first n bytes of rd.
type truncated struct {
	rd   repo.RewindReader
	n    int64
	left int64
}

func (t *truncated) Read(p []byte) (int, error) {
	if t.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > t.left {
		p = p[:t.left]
	}
	n, err := t.rd.Read(p)
	t.left -= int64(n)
	return n, err
}

func (t *truncated) Rewind() error {
	t.left = t.n
	return t.rd.Rewind()
}

func (t *truncated) Length() int64 { return t.n }
