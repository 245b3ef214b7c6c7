package limit

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/file"
)

// fakeClock is a clock whose sleep returns at once, moving the time on by what it was
// asked to wait and adding it up: what a throttled call would have waited, without
// waiting.
type fakeClock struct {
	t     time.Time
	slept time.Duration
	// onSleep, when set, runs before each sleep; an error ends the sleep with it, as a
	// context done during the wait would.
	onSleep func() error
}

func (c *fakeClock) now() time.Time { return c.t }

func (c *fakeClock) sleep(ctx context.Context, d time.Duration) error {
	if c.onSleep != nil {
		if err := c.onSleep(); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.t = c.t.Add(d)
	c.slept += d
	return nil
}

// setup returns a file backend in a temporary directory, and the throttled wrapper of
// it with a fake clock.
func setup(t *testing.T, upKiBs, downKiBs int) (*backend, repo.Backend, *fakeClock) {
	t.Helper()
	fb, err := file.Open(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	c := &fakeClock{t: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)}
	b := newBackend(fb, upKiBs, downKiBs, c.now, c.sleep)
	t.Cleanup(func() { b.Close() })
	return b, fb, c
}

func closeTo(got, want time.Duration) bool {
	d := got - want
	return d > -time.Millisecond && d < time.Millisecond
}

func TestWrapUnlimitedIsTheBackend(t *testing.T) {
	fb, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	if got := Wrap(fb, 0, 0); got != repo.Backend(fb) {
		t.Fatalf("Wrap(be, 0, 0) = %T, want be itself", got)
	}
	b, ok := Wrap(fb, 0, 100).(*backend)
	if !ok {
		t.Fatalf("Wrap(be, 0, 100) = %T, want the throttling wrapper", Wrap(fb, 0, 100))
	}
	if b.up != nil || b.down == nil {
		t.Fatalf("Wrap(be, 0, 100): up limited %v, down limited %v; want only down", b.up != nil, b.down != nil)
	}
	if got, want := b.Location(), fb.Location(); got != want {
		t.Fatalf("Location() = %q, want %q", got, want)
	}
}

func TestBurst(t *testing.T) {
	for _, tt := range []struct {
		kibs  int
		burst int
	}{
		{1, MinBurst},
		{100, MinBurst},
		{1024, 256 << 10}, // a quarter of a second
		{4096, MaxBurst},
		{1 << 20, MaxBurst},
	} {
		l := newLimiter(tt.kibs)
		if got := l.Burst(); got != tt.burst {
			t.Errorf("newLimiter(%d KiB/s).Burst() = %d, want %d", tt.kibs, got, tt.burst)
		}
		if got, want := float64(l.Limit()), float64(tt.kibs*1024); got != want {
			t.Errorf("newLimiter(%d KiB/s).Limit() = %v, want %v bytes/s", tt.kibs, got, want)
		}
	}
	if newLimiter(0) != nil || newLimiter(-5) != nil {
		t.Errorf("newLimiter(0 or less) is not nil (unlimited)")
	}
}

// A Save of n bytes, larger than the bucket, takes exactly n tokens: from a full bucket
// it waits (n-burst)/rate, in slices no larger than the bucket, and leaves it empty.
func TestSaveTakesItsBytes(t *testing.T) {
	b, fb, c := setup(t, 100, 0)
	ctx := context.Background()
	const n = 1 << 20
	data := backendtest.RandomData(t, n)
	h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
	sleeps := 0
	c.onSleep = func() error { sleeps++; return nil }
	if err := b.Save(ctx, h, repo.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	// 100 KiB/s, a 64 KiB bucket: 1 MiB is 16 slices, the first free, 15 of 0.64 s.
	if got, want := c.slept, 9600*time.Millisecond; !closeTo(got, want) {
		t.Errorf("Save of 1 MiB at 100 KiB/s waited %v, want %v", got, want)
	}
	if got, want := sleeps, 15; got != want {
		t.Errorf("Save of 1 MiB waited %d times, want %d (slices of the 64 KiB bucket)", got, want)
	}
	if got := b.up.TokensAt(c.now()); got > 1 || got < -1 {
		t.Errorf("bucket after the Save holds %v tokens, want 0: the Save took more or fewer than its bytes", got)
	}
	got, err := fb.Load(ctx, h, 0, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("stored object: %d bytes, err %v; want the %d saved", len(got), err, n)
	}

	// Downloads are not limited: a Load waits for nothing.
	c.slept = 0
	if _, err := b.Load(ctx, h, 0, 0); err != nil {
		t.Fatal(err)
	}
	if c.slept != 0 {
		t.Errorf("Load with no download limit waited %v", c.slept)
	}

	// An object no larger than what the bucket refilled meanwhile goes at once.
	c.t = c.t.Add(time.Second)
	c.slept = 0
	if err := b.Save(ctx, repo.Handle{Type: repo.SnapshotFile, Name: backendtest.RandomID(t)}, repo.NewByteReader(make([]byte, 50<<10))); err != nil {
		t.Fatal(err)
	}
	if c.slept != 0 {
		t.Errorf("Save of 50 KiB after an idle second waited %v, want 0", c.slept)
	}
}

// A Load takes the tokens of the bytes it returned: the whole object, or the range asked.
func TestLoadTakesItsBytes(t *testing.T) {
	b, fb, c := setup(t, 0, 50)
	ctx := context.Background()
	const n = 1 << 20
	h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
	if err := fb.Save(ctx, h, repo.NewByteReader(backendtest.RandomData(t, n))); err != nil {
		t.Fatal(err)
	}
	got, err := b.Load(ctx, h, 0, 0)
	if err != nil || len(got) != n {
		t.Fatalf("Load = %d bytes, %v; want %d", len(got), err, n)
	}
	// 50 KiB/s, a 64 KiB bucket: (1 MiB - 64 KiB) / 50 KiB/s = 19.2 s.
	if got, want := c.slept, 19200*time.Millisecond; !closeTo(got, want) {
		t.Errorf("Load of 1 MiB at 50 KiB/s waited %v, want %v", got, want)
	}

	// A range: 100 000 bytes from an empty bucket take 100 000 / 51 200 s.
	c.slept = 0
	if got, err := b.Load(ctx, h, 1000, 100_000); err != nil || len(got) != 100_000 {
		t.Fatalf("range Load = %d bytes, %v; want 100000", len(got), err)
	}
	if got, want := c.slept, time.Duration(100_000*float64(time.Second)/(50*1024)); !closeTo(got, want) {
		t.Errorf("range Load of 100 000 bytes waited %v, want %v", got, want)
	}
	if got := b.down.TokensAt(c.now()); got > 1 || got < -1 {
		t.Errorf("bucket after the Loads holds %v tokens, want 0", got)
	}

	// Uploads are not limited.
	c.slept = 0
	if err := b.Save(ctx, repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}, repo.NewByteReader(make([]byte, n))); err != nil {
		t.Fatal(err)
	}
	if c.slept != 0 {
		t.Errorf("Save with no upload limit waited %v", c.slept)
	}
}

// A Save whose context is done while it waits for tokens returns the context's error,
// stores nothing, and gives back the tokens of the slice it waited for.
func TestCancelledSaveStoresNothing(t *testing.T) {
	b, fb, c := setup(t, 100, 0)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sleeps := 0
	c.onSleep = func() error {
		sleeps++
		if sleeps == 3 {
			cancel()
		}
		return nil
	}
	h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
	err := b.Save(ctx, h, repo.NewByteReader(backendtest.RandomData(t, 1<<20)))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Save cancelled while throttled = %v, want context.Canceled", err)
	}
	if got, want := sleeps, 3; got != want {
		t.Errorf("Save waited %d times, want %d: it goes on after its context is done", got, want)
	}
	if _, err := fb.Stat(context.Background(), h); !repo.IsNotExist(err) {
		t.Fatalf("Stat of the cancelled Save's object = %v, want not exist", err)
	}
	// Two slices were taken, the one in the full bucket and one refilled in 0.64 s; the
	// third, reserved and not waited for, was given back, so the bucket is empty, not in
	// debt for a slice that was never sent.
	if got, want := b.up.TokensAt(c.now()), 0.0; got < want-1 || got > want+1 {
		t.Errorf("bucket after the cancelled Save holds %v tokens, want %v", got, want)
	}
}

// The same with the real clock: a Save that would wait minutes returns when its context
// is cancelled, and stores nothing.
func TestCancelledSaveRealClock(t *testing.T) {
	fb, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{}, 1)
	b := newBackend(fb, 1, 0, time.Now, func(ctx context.Context, d time.Duration) error {
		select {
		case waiting <- struct{}{}:
		default:
		}
		return sleep(ctx, d)
	})
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
	done := make(chan error, 1)
	go func() { done <- b.Save(ctx, h, repo.NewByteReader(make([]byte, 1<<20))) }() // 1 MiB at 1 KiB/s: 16 min
	<-waiting
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Save = %v, want context.Canceled", err)
	}
	if _, err := fb.Stat(context.Background(), h); !repo.IsNotExist(err) {
		t.Fatalf("Stat of the cancelled Save's object = %v, want not exist", err)
	}
}
