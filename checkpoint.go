package brr

import (
	"context"
	"fmt"
	"time"
)

// CheckpointsRequest asks the workers of a pool, on brr.api.<pool>.checkpoints, for the
// recovery points of one repository, or with Repo empty of every repository the worker
// that answers has.
type CheckpointsRequest struct {
	V    int    `json:"v"`
	Repo string `json:"repo,omitempty"`
}

// CheckpointsReply is the answer to a CheckpointsRequest: the recovery points, sorted by
// repo and label, each with the time and source of the snapshot it pins (zero when that
// snapshot is gone). Error is set when the worker could not answer at all.
type CheckpointsReply struct {
	V      int             `json:"v"`
	Points []RecoveryPoint `json:"points"`
	// Unread names each repository the worker could not read, with why: its points
	// come from the worker's index of what it last saw there, and may be out of date.
	Unread map[string]string `json:"unread,omitempty"`
	Error  string            `json:"error,omitempty"`
}

// Checkpoints asks a worker of the client's pool for the recovery points of repo, or of
// every repository it has when repo is empty. A repository the worker could not read is
// named in the reply's Unread, with the points it last saw there; that is not an error.
func (c *Client) Checkpoints(ctx context.Context, repo string) (*CheckpointsReply, error) {
	if err := ValidateRepoName(repo); err != nil {
		return nil, err
	}
	var reply CheckpointsReply
	if err := c.ask(ctx, "list recovery points", "checkpoints", CheckpointsRequest{V: Version, Repo: repo}, &reply); err != nil {
		return nil, err
	}
	if reply.Error != "" {
		what := "every repo"
		if repo != "" {
			what = fmt.Sprintf("repo %q", repo)
		}
		return nil, fmt.Errorf("list recovery points of %s: %s", what, reply.Error)
	}
	if reply.Points == nil {
		reply.Points = []RecoveryPoint{}
	}
	return &reply, nil
}

// CheckpointJob creates a recovery point, a labelled pin on a snapshot that retention
// never removes, or with Remove deletes the recovery point Label.
type CheckpointJob struct {
	// Snapshot is a snapshot id, a unique prefix of one, or "latest" (of Source when
	// set); not used with Remove.
	Snapshot string `json:"snapshot,omitempty"`
	Source   string `json:"source,omitempty"`
	Repo     string `json:"repo,omitempty"`
	// Label names the recovery point; unique within a repo.
	Label  string `json:"label"`
	Reason string `json:"reason,omitempty"`
	Remove bool   `json:"remove,omitempty"`
}

// Kind returns KindCheckpoint.
func (CheckpointJob) Kind() Kind { return KindCheckpoint }

// Scope returns the repo and the source that narrows the snapshot, if any.
func (a CheckpointJob) Scope() Scope { return Scope{Repo: a.Repo, Source: a.Source} }

// Validate checks the label, the reason, the snapshot reference and the repo name.
func (a CheckpointJob) Validate() error {
	if !tagPattern.MatchString(a.Label) {
		return fmt.Errorf("%w: recovery point label %q: use 1-128 letters, digits or _.:=-", ErrInvalid, a.Label)
	}
	if len(a.Reason) > 1024 {
		return fmt.Errorf("%w: reason is %d bytes, the limit is 1024", ErrInvalid, len(a.Reason))
	}
	if !a.Remove && !snapshotRefPattern.MatchString(a.Snapshot) {
		return fmt.Errorf("%w: snapshot %q: want \"latest\" or 4-64 hex digits of a snapshot id", ErrInvalid, a.Snapshot)
	}
	if a.Source != "" {
		if err := validateSourceRef(a.Source); err != nil {
			return err
		}
	}
	return ValidateRepoName(a.Repo)
}

// RecoveryPoint is a labelled, pinned snapshot.
type RecoveryPoint struct {
	Repo     string    `json:"repo"`
	Label    string    `json:"label"`
	Snapshot string    `json:"snapshot"`
	Source   string    `json:"source,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	By       string    `json:"by,omitempty"`
	Time     time.Time `json:"time"`
	// SnapshotTime is when the pinned snapshot was taken.
	SnapshotTime time.Time `json:"snapshot_time"`
}

// CheckpointResult is the recovery point a checkpoint job created or removed.
type CheckpointResult struct {
	Point   RecoveryPoint `json:"point"`
	Removed bool          `json:"removed,omitempty"`
}
