package brr

import (
	"errors"
	"time"
)

// Sentinel errors, checked with errors.Is.
var (
	// ErrInvalid marks a job or event that is malformed or breaks a rule.
	ErrInvalid = errors.New("invalid message")
	// ErrUnknownVersion marks a message whose "v" this code does not read.
	ErrUnknownVersion = errors.New("unknown message version")
	// ErrUnknownKind marks a job whose kind is not one of Kinds.
	ErrUnknownKind = errors.New("unknown job kind")
	// ErrNotFound is returned for a job, snapshot or DLQ entry that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrJobFailed is wrapped by Wait's error when the job ended failed or dead.
	ErrJobFailed = errors.New("job failed")
	// ErrJobCancelled is wrapped by Wait's error when the job ended cancelled: not a
	// failure, but not done either.
	ErrJobCancelled = errors.New("job cancelled")
	// ErrJobEnded is wrapped by Cancel's error when the job had already ended: there is
	// nothing left to cancel.
	ErrJobEnded = errors.New("job already ended")
)

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix (a bad request, an unknown repo, a
// path outside the allowed roots). The worker sends such a job to the dead-letter stream at
// once instead of retrying it. Plain errors are retried with backoff.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

// IsPermanent reports whether err, or an error it wraps, was marked with Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// snoozeError asks for the job to be tried again after a delay without it counting as a
// failure of the job itself (a lease held by another worker, say).
type snoozeError struct {
	err   error
	after time.Duration
}

func (e *snoozeError) Error() string { return e.err.Error() }
func (e *snoozeError) Unwrap() error { return e.err }

// Snooze marks err as a reason to try the job again after d: the job could not start yet
// (its source's lease is held elsewhere), which is no fault of the job.
func Snooze(err error, d time.Duration) error {
	if err == nil {
		return nil
	}
	return &snoozeError{err: err, after: d}
}

// SnoozeDelay reports whether err was marked with Snooze, and the delay it asked for.
func SnoozeDelay(err error) (time.Duration, bool) {
	var s *snoozeError
	if errors.As(err, &s) {
		return s.after, true
	}
	return 0, false
}
