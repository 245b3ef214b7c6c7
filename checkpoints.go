package brr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go"
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
	if err := c.checkConnected(); err != nil {
		return nil, fmt.Errorf("list recovery points: %w", err)
	}
	data, err := json.Marshal(CheckpointsRequest{V: Version, Repo: repo})
	if err != nil {
		return nil, fmt.Errorf("list recovery points: encode request: %w", err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	msg, err := c.nc.RequestWithContext(ctx, c.subj.API(c.pool, "checkpoints"), data)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("list recovery points: %w serves pool %q on %s: start one with brr-worker, or name another pool", ErrNoWorker, c.pool, c.where())
	}
	if err != nil {
		return nil, fmt.Errorf("list recovery points: ask pool %q: %w", c.pool, err)
	}
	var reply CheckpointsReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return nil, fmt.Errorf("list recovery points: %w: reply is not valid JSON: %v", ErrInvalid, err)
	}
	if reply.V != Version {
		return nil, fmt.Errorf("list recovery points: %w: reply has version %d, this code reads version %d", ErrUnknownVersion, reply.V, Version)
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
