package brr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
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
	if err := c.checkConnected(); err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	data, err := json.Marshal(SnapshotsRequest{V: Version, Repo: repo, Source: source})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: encode request: %w", err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	msg, err := c.nc.RequestWithContext(ctx, c.subj.API(c.pool, "snapshots"), data)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("list snapshots: %w serves pool %q on %s: start one with brr-worker, or name another pool", ErrNoWorker, c.pool, c.where())
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots: ask pool %q: %w", c.pool, err)
	}
	var reply SnapshotsReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return nil, fmt.Errorf("list snapshots: %w: reply is not valid JSON: %v", ErrInvalid, err)
	}
	if reply.V != Version {
		return nil, fmt.Errorf("list snapshots: %w: reply has version %d, this code reads version %d", ErrUnknownVersion, reply.V, Version)
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
