package testkit

import (
	"sync/atomic"
	"time"
)

// Clock is a clock the test sets, for the Now func() time.Time of a component whose
// behaviour depends on time (retention, leases, heartbeats); it is safe to read while
// the test sets it.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a Clock that reads t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.Set(t)
	return c
}

// Set makes the clock read t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Add moves the clock by d.
func (c *Clock) Add(d time.Duration) { c.ns.Add(int64(d)) }

// Now returns the time the clock reads, in UTC.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }
