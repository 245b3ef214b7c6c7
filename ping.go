package brr

import "fmt"

// PingJob passes through the whole pipeline and does nothing else, after an optional
// delay that simulates an I/O-bound job.
type PingJob struct {
	DelayMS int `json:"delay_ms,omitempty"`
}

// Kind returns KindPing.
func (PingJob) Kind() Kind { return KindPing }

// Scope is empty: a ping works on nothing.
func (PingJob) Scope() Scope { return Scope{} }

// Validate checks the delay: 0 to 60000 ms.
func (a PingJob) Validate() error {
	if a.DelayMS < 0 || a.DelayMS > 60000 {
		return fmt.Errorf("%w: ping delay_ms %d: want 0-60000", ErrInvalid, a.DelayMS)
	}
	return nil
}

// PingResult is what a ping job returns.
type PingResult struct {
	Worker string `json:"worker"`
}
