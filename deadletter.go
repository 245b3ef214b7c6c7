package brr

import (
	"time"
)

// DeadLetter is what a worker writes to brr.dlq.<pool>.<kind> (stream BRR_DLQ) when a job
// failed for good: the request exactly as it arrived, and why it failed. `brr dlq retry`
// publishes Request again.
type DeadLetter struct {
	V int `json:"v"`
	// JobID is the job's id, or the message's Nats-Msg-Id when the request could not be
	// decoded, or "seq-<n>" when it had neither.
	JobID   string `json:"job_id"`
	Pool    string `json:"pool"`
	Kind    Kind   `json:"kind"`
	Subject string `json:"subject"`
	// Request is the job message as it arrived (base64 in JSON: it may not be valid JSON).
	Request  []byte    `json:"request"`
	Error    string    `json:"error"`
	Status   Status    `json:"status"` // StatusFailed (permanent error) or StatusDead (out of attempts)
	Attempts int       `json:"attempts"`
	Worker   string    `json:"worker,omitempty"`
	Time     time.Time `json:"time"`
}

// SnapshotsRequest asks the workers of a pool, on brr.api.<pool>.snapshots, for the
// snapshots of a repository.
type SnapshotsRequest struct {
	V    int    `json:"v"`
	Repo string `json:"repo,omitempty"`
	// Source, when set, lists only the snapshots of that source path.
	Source string `json:"source,omitempty"`
}

// SnapshotsReply is the answer to a SnapshotsRequest; Error is set when the worker could
// not list the repository.
type SnapshotsReply struct {
	V         int        `json:"v"`
	Repo      string     `json:"repo"`
	Snapshots []Snapshot `json:"snapshots"`
	Error     string     `json:"error,omitempty"`
}
