package brr

import (
	"context"
	"fmt"
	"time"
)

// Snapshots asks a worker of the client's pool for the snapshots in repo (empty: the
// worker's default repo), only those of source when it is set, oldest first as the worker
// lists them.
func (c *Client) Snapshots(ctx context.Context, repo, source string) ([]Snapshot, error) {
	if err := ValidateRepoName(repo); err != nil {
		return nil, err
	}
	if source != "" {
		if err := validateAbs("source", source); err != nil {
			return nil, err
		}
	}
	var reply SnapshotsReply
	if err := c.ask(ctx, "list snapshots", "snapshots", SnapshotsRequest{V: Version, Repo: repo, Source: source}, &reply); err != nil {
		return nil, err
	}
	if reply.Error != "" {
		return nil, fmt.Errorf("list snapshots of repo %q: %s", reply.Repo, reply.Error)
	}
	return reply.Snapshots, nil
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

// Snapshot describes a snapshot in a repository, as listed by `brr snapshots`.
type Snapshot struct {
	ID     string    `json:"id"`
	Repo   string    `json:"repo"`
	Time   time.Time `json:"time"`
	Host   string    `json:"host"`
	Source string    `json:"source"`
	Tags   []string  `json:"tags,omitempty"`
	Parent string    `json:"parent,omitempty"`
	JobID  string    `json:"job_id,omitempty"`
	Files  int64     `json:"files"`
	Bytes  int64     `json:"bytes"`
	// BytesAdded is what this snapshot added to the repository when it was made.
	BytesAdded int64 `json:"bytes_added"`
}
