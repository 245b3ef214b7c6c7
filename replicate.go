package brr

import (
	"fmt"
	"regexp"
	"time"
)

// ReplicateJob copies snapshots from one repository to another: only the blobs the
// target lacks are sent, re-encrypted under the target's key; the target's snapshot is
// written last, under the same id as in the source.
type ReplicateJob struct {
	// Snapshot is a snapshot id, a unique prefix of one, "latest" (the newest, of Source
	// when set) or "all": every snapshot of From (of Source when set) that To lacks.
	Snapshot string `json:"snapshot"`
	// Source narrows "latest" and "all" to the snapshots of one source path.
	Source string `json:"source,omitempty"`
	// From names the repository to copy from; empty means the worker's default repo.
	From string `json:"from,omitempty"`
	// To names the repository to copy into.
	To string `json:"to"`
}

// Kind returns KindReplicate.
func (ReplicateJob) Kind() Kind { return KindReplicate }

// Scope returns the target repo and the source that narrows the snapshots, if any.
func (a ReplicateJob) Scope() Scope { return Scope{Repo: a.To, Source: a.Source} }

var replicateRefPattern = regexp.MustCompile(`^(latest|all|[0-9a-f]{4,64})$`)

// Validate checks the snapshot reference and the two repo names.
func (a ReplicateJob) Validate() error {
	if !replicateRefPattern.MatchString(a.Snapshot) {
		return fmt.Errorf("%w: snapshot %q: want \"latest\", \"all\" or 4-64 hex digits of a snapshot id", ErrInvalid, a.Snapshot)
	}
	if a.Source != "" {
		if err := validateSourceRef(a.Source); err != nil {
			return err
		}
	}
	if a.To == "" {
		return fmt.Errorf("%w: replicate needs a target repo (\"to\")", ErrInvalid)
	}
	if err := ValidateRepoName(a.From); err != nil {
		return err
	}
	if err := ValidateRepoName(a.To); err != nil {
		return err
	}
	if a.From == a.To {
		return fmt.Errorf("%w: replicate from %q to itself", ErrInvalid, a.To)
	}
	return nil
}

// ReplicateResult is what a replicate job copied.
type ReplicateResult struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Snapshots are the ids copied by this job; Present counts the asked-for snapshots
	// the target had already.
	Snapshots []string `json:"snapshots"`
	Present   int      `json:"present"`
	// BlobsSent and BytesSent (stored size in the target) are what the target lacked;
	// BlobsPresent counts blobs it had already.
	BlobsSent    int64 `json:"blobs_sent"`
	BytesSent    int64 `json:"bytes_sent"`
	BlobsPresent int64 `json:"blobs_present"`
	// Lag is how far the target is behind the source after this job.
	Lag ReplicationLag `json:"lag"`
	// Copied describes the snapshots copied, as the target now lists them (Repo is To).
	Copied []Snapshot `json:"copied,omitempty"`
	// Warnings lists what went wrong without failing the job.
	Warnings   []string `json:"warnings,omitempty"`
	DurationMS int64    `json:"duration_ms"`
}

// ReplicationLag measures how far a replica is behind its source repository.
type ReplicationLag struct {
	// Behind counts the source's snapshots the target lacks.
	Behind int `json:"behind"`
	// Oldest is the time of the oldest snapshot the target lacks, and AgeSeconds its age
	// when measured; both are zero when Behind is 0.
	Oldest     *time.Time `json:"oldest,omitempty"`
	AgeSeconds float64    `json:"age_seconds"`
	Measured   time.Time  `json:"measured"`
}

// ReplicationInfo is the body of a brr.events.replication.* event.
type ReplicationInfo struct {
	From       string          `json:"from"`
	To         string          `json:"to"`
	Snapshots  []string        `json:"snapshots,omitempty"`
	BlobsSent  int64           `json:"blobs_sent"`
	BytesSent  int64           `json:"bytes_sent"`
	Lag        *ReplicationLag `json:"lag,omitempty"`
	DurationMS int64           `json:"duration_ms,omitempty"`
}
