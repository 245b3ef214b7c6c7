package watch

import (
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"
)

// TestDebounce drives a Debounce with a fake clock through bursts of changes and checks
// when each is backed up: Delay after its last change, but no later than MaxDelay after
// its first.
func TestDebounce(t *testing.T) {
	const delay, maxDelay = 2 * time.Second, 6 * time.Second
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tests := []struct {
		name string
		// changes are when changes come, as offsets from t0.
		changes []time.Duration
		// want are the backups: when each is made and the first change it covers.
		want []backup
	}{
		{"one change", []time.Duration{0}, []backup{{at: 2 * time.Second, first: 0}}},
		{"a short burst is one backup, delay after its last change",
			[]time.Duration{0, 500 * time.Millisecond, time.Second, 1500 * time.Millisecond},
			[]backup{{at: 3500 * time.Millisecond, first: 0}}},
		{"two bursts apart are two backups",
			[]time.Duration{0, time.Second, 10 * time.Second},
			[]backup{{at: 3 * time.Second, first: 0}, {at: 12 * time.Second, first: 10 * time.Second}}},
		{"a change just before the delay runs out postpones it",
			[]time.Duration{0, 1900 * time.Millisecond},
			[]backup{{at: 3900 * time.Millisecond, first: 0}}},
		{"a steady stream is backed up every max delay",
			every(0, 200*time.Millisecond, 50), // 50 changes over 10 s
			// The change at 6 s is in the first backup; the second burst starts at 6.2 s.
			[]backup{{at: 6 * time.Second, first: 0}, {at: 11800 * time.Millisecond, first: 6200 * time.Millisecond}}},
		{"a stream slower than the delay is a backup per change",
			every(0, 3*time.Second, 3),
			[]backup{{at: 2 * time.Second, first: 0}, {at: 5 * time.Second, first: 3 * time.Second}, {at: 8 * time.Second, first: 6 * time.Second}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := testkit.NewClock(t0)
			d := Debounce{Delay: delay, MaxDelay: maxDelay}
			got := run(clock, &d, t0, tt.changes, 100*time.Millisecond)
			if len(got) != len(tt.want) {
				t.Fatalf("backups = %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("backup %d = %v, want %v", i, got[i], tt.want[i])
				}
			}
			if d.Pending() {
				t.Errorf("still pending after the last backup: due %s", d.Due())
			}
		})
	}
}

// TestDebounceSpacing checks the promise of the rule on streams of every pace: backups are
// at least Delay apart, no change waits longer than MaxDelay, and the last change is
// backed up.
func TestDebounceSpacing(t *testing.T) {
	const delay, maxDelay = 2 * time.Second, 6 * time.Second
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, pace := range []time.Duration{10 * time.Millisecond, 300 * time.Millisecond, 1900 * time.Millisecond, 2100 * time.Millisecond, 7 * time.Second} {
		clock := testkit.NewClock(t0)
		d := Debounce{Delay: delay, MaxDelay: maxDelay}
		changes := every(0, pace, int(30*time.Second/pace))
		got := run(clock, &d, t0, changes, 10*time.Millisecond)
		for i := 1; i < len(got); i++ {
			if gap := got[i].at - got[i-1].at; gap < delay {
				t.Errorf("pace %s: backups %d and %d are %s apart, less than the delay", pace, i-1, i, gap)
			}
		}
		// Each change is covered by the first backup at or after it, within MaxDelay
		// (plus the step of the simulated clock).
		j := 0
		for _, c := range changes {
			for j < len(got) && got[j].at < c {
				j++
			}
			if j == len(got) {
				t.Fatalf("pace %s: change at %s is never backed up (backups %v)", pace, c, got)
			}
			if wait := got[j].at - c; wait > maxDelay+10*time.Millisecond {
				t.Errorf("pace %s: change at %s waited %s for its backup, more than the max delay", pace, c, wait)
			}
		}
	}
}

// backup is a backup made by run: when, and the first change of its burst, as offsets
// from t0.
type backup struct{ at, first time.Duration }

// run feeds changes (offsets from t0, in order) to d while the clock moves in steps, and
// returns the backups d asks for; it goes on until nothing is pending.
func run(clock *testkit.Clock, d *Debounce, t0 time.Time, changes []time.Duration, step time.Duration) []backup {
	var out []backup
	i := 0
	for i < len(changes) || d.Pending() {
		now := clock.Now()
		for i < len(changes) && !t0.Add(changes[i]).After(now) {
			d.Change(t0.Add(changes[i]))
			i++
		}
		if first, ok := d.Ready(now); ok {
			out = append(out, backup{at: now.Sub(t0), first: first.Sub(t0)})
			d.Done()
		}
		clock.Add(step)
	}
	return out
}

// every is n offsets, from start, pace apart.
func every(start, pace time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = start + time.Duration(i)*pace
	}
	return out
}

func TestDebounceDueAndChanges(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	d := Debounce{Delay: time.Second, MaxDelay: 3 * time.Second}
	if !d.Due().IsZero() || d.Pending() || d.Changes() != 0 {
		t.Fatalf("new Debounce: due %s, pending %v, changes %d; want nothing", d.Due(), d.Pending(), d.Changes())
	}
	if _, ok := d.Ready(t0.Add(time.Hour)); ok {
		t.Fatal("Ready with nothing pending")
	}
	d.Change(t0)
	d.Change(t0.Add(2500 * time.Millisecond))
	// A change reported late (an event read after a later one) does not move the burst back.
	d.Change(t0.Add(time.Second))
	if got, want := d.Due(), t0.Add(3*time.Second); !got.Equal(want) {
		t.Errorf("Due = %s, want %s (max delay after the first change)", got, want)
	}
	if got, want := d.Changes(), 3; got != want {
		t.Errorf("Changes = %d, want %d", got, want)
	}
	if _, ok := d.Ready(t0.Add(2999 * time.Millisecond)); ok {
		t.Error("Ready before Due")
	}
	// Not Done (the publish failed): it stays pending, as it was.
	if first, ok := d.Ready(t0.Add(4 * time.Second)); !ok || !first.Equal(t0) {
		t.Errorf("Ready = %s, %v; want %s, true", first, ok, t0)
	}
	if first, ok := d.Ready(t0.Add(5 * time.Second)); !ok || !first.Equal(t0) {
		t.Errorf("Ready again = %s, %v; want %s, true", first, ok, t0)
	}
	d.Done()
	if d.Pending() || d.Changes() != 0 {
		t.Errorf("after Done: pending %v, changes %d", d.Pending(), d.Changes())
	}
}
