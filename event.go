package brr

import (
	"encoding/json"
	"fmt"
	"time"
)

// EventType is the first token after "events" in an event's subject.
type EventType string

// The event types.
const (
	EventJob         EventType = "job"
	EventSnapshot    EventType = "snapshot"
	EventReplication EventType = "replication"
	EventRecovery    EventType = "recovery"
	EventHealth      EventType = "health"
)

// Status is the last token of an event's subject: what happened.
type Status string

// Job statuses, on brr.events.job.<kind>.<status>. Succeeded, Failed and Dead are final.
const (
	// StatusAccepted: a worker took the job off the queue and found it well-formed.
	StatusAccepted Status = "accepted"
	// StatusStarted: the job is running (it holds its leases).
	StatusStarted Status = "started"
	// StatusProgress: how far a running job has got; a few per second at most.
	StatusProgress Status = "progress"
	// StatusRetrying: this attempt failed with an error that may pass; it will be tried again.
	StatusRetrying Status = "retrying"
	// StatusSucceeded: the job is done and its effect is durable.
	StatusSucceeded Status = "succeeded"
	// StatusFailed: the job cannot succeed (a bad request, an unknown repo, a path outside
	// the allowed roots); it went to the dead-letter stream without more attempts.
	StatusFailed Status = "failed"
	// StatusDead: the job failed on its last attempt and went to the dead-letter stream.
	StatusDead Status = "dead"
	// StatusCancelled: the job was cancelled on request (Client.Cancel, `brr cancel`)
	// before it ran, or stopped while it ran. It is not a failure: it does not go to the
	// dead-letter stream.
	StatusCancelled Status = "cancelled"
)

// Snapshot statuses, on brr.events.snapshot.<status>.
const (
	StatusCommitted Status = "committed"
	StatusRemoved   Status = "removed"
)

// Replication statuses, on brr.events.replication.<status>: started, progress (the job
// statuses of those names), completed, and failed.
const StatusCompleted Status = "completed"

// Recovery statuses, on brr.events.recovery.<status>.
const (
	StatusPointCreated Status = "point_created"
	StatusPointRemoved Status = "point_removed"
	StatusRestored     Status = "restored"
	StatusDrillPassed  Status = "drill_passed"
	StatusDrillFailed  Status = "drill_failed"
)

// Final reports whether a job with this status will not change any more.
func (s Status) Final() bool {
	return s == StatusSucceeded || s == StatusFailed || s == StatusDead || s == StatusCancelled
}

// Event is a fact published after it happened, as JSON on brr.events.<type>.…
//
// Every event has its own id, which is also its Nats-Msg-Id, so a worker that publishes
// it again after a NATS outage does not make a duplicate. Events carry what a subscriber
// needs to act without a second query: the job id, the worker, the repo, the snapshot.
type Event struct {
	V  int    `json:"v"`
	ID string `json:"id"`
	// Type and Status make the subject: brr.events.<type>.<status>, and for job events
	// brr.events.job.<kind>.<status>.
	Type   EventType `json:"type"`
	Status Status    `json:"status"`
	Time   time.Time `json:"time"`
	// Worker is the id of the worker that published the event.
	Worker string `json:"worker,omitempty"`
	Host   string `json:"host,omitempty"`

	JobID    string `json:"job_id,omitempty"`
	Kind     Kind   `json:"kind,omitempty"`
	Pool     string `json:"pool,omitempty"`
	Repo     string `json:"repo,omitempty"`
	Source   string `json:"source,omitempty"`
	Snapshot string `json:"snapshot,omitempty"`
	// Attempt counts deliveries of the job, from 1.
	Attempt int `json:"attempt,omitempty"`
	// Error says why a job is retrying, failed or dead, or who cancelled it and when.
	Error string `json:"error,omitempty"`
	// RetryInMS, on a retrying event, is how long until the next attempt.
	RetryInMS int64 `json:"retry_in_ms,omitempty"`

	Progress *Progress `json:"progress,omitempty"`
	Result   *Result   `json:"result,omitempty"`
	// SnapshotInfo describes the snapshot of a snapshot event.
	SnapshotInfo *Snapshot `json:"snapshot_info,omitempty"`
	// Replication describes the run of a replication event.
	Replication *ReplicationInfo `json:"replication,omitempty"`
	// Heartbeat is the body of a brr.events.health.worker event; Check that of the other
	// brr.events.health.<check> events.
	Heartbeat *WorkerInfo  `json:"heartbeat,omitempty"`
	Check     *HealthCheck `json:"check,omitempty"`
}

// DecodeEvent decodes an event message. Unknown fields are allowed, so that a subscriber
// keeps working when a newer worker adds some; an unknown version is an error.
func DecodeEvent(data []byte) (*Event, error) {
	var e Event
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%w: event is not valid JSON: %v", ErrInvalid, err)
	}
	if e.V != Version {
		return nil, fmt.Errorf("%w: event has version %d, this code reads version %d", ErrUnknownVersion, e.V, Version)
	}
	return &e, nil
}

// Progress is how far a running job has got.
type Progress struct {
	Phase      string `json:"phase,omitempty"`
	Files      int64  `json:"files"`
	Bytes      int64  `json:"bytes"`
	TotalFiles int64  `json:"total_files,omitempty"`
	TotalBytes int64  `json:"total_bytes,omitempty"`
	// BytesPerSec is the rate since the job started.
	BytesPerSec float64 `json:"bytes_per_sec,omitempty"`
	// ETASeconds is the estimated time left, when the totals are known.
	ETASeconds float64 `json:"eta_seconds,omitempty"`
}
