package watch

import "time"

// Debounce decides when the changes to a source are backed up. Changes come in bursts:
// a burst starts with the first change after the last backup, and it is backed up Delay
// after its last change, but no later than MaxDelay after its first. So a burst of any
// length is one backup, two backups are always at least Delay apart, and a steady
// stream of changes is backed up every MaxDelay.
//
// It is pure logic: the caller says what time it is, and sleeps until Due.
type Debounce struct {
	Delay, MaxDelay time.Duration

	first, last time.Time // of the pending burst; zero when nothing is pending
	changes     int       // in the pending burst
}

// Change records a change at now.
func (d *Debounce) Change(now time.Time) {
	if d.first.IsZero() {
		d.first = now
	}
	d.changes++
	if now.After(d.last) {
		d.last = now
	}
}

// Changes counts the changes of the pending burst.
func (d *Debounce) Changes() int { return d.changes }

// Pending reports whether changes wait to be backed up.
func (d *Debounce) Pending() bool { return !d.first.IsZero() }

// Due is when the pending burst is to be backed up: Delay after its last change, but no
// later than MaxDelay after its first. It is the zero time when nothing is pending.
func (d *Debounce) Due() time.Time {
	if !d.Pending() {
		return time.Time{}
	}
	quiet := d.last.Add(d.Delay)
	if limit := d.first.Add(d.MaxDelay); limit.Before(quiet) {
		return limit
	}
	return quiet
}

// Ready returns the time of the first change of the pending burst, and true, when the
// burst is due at now. The caller backs it up, then calls Done; until then the burst
// stays pending (a publish that failed is tried again).
func (d *Debounce) Ready(now time.Time) (first time.Time, ok bool) {
	if !d.Pending() || now.Before(d.Due()) {
		return time.Time{}, false
	}
	return d.first, true
}

// Done ends the pending burst: it was backed up. The next change starts another.
func (d *Debounce) Done() { d.first, d.last, d.changes = time.Time{}, time.Time{}, 0 }
