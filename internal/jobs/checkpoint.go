package jobs

import (
	"context"
	"fmt"

	"github.com/brr-dev/brr"
)

// PointIndex indexes recovery points outside the repositories. *state.DB implements it.
type PointIndex interface{}

// Checkpoint creates or removes a recovery point.
func (e *Engine) Checkpoint(ctx context.Context, job *brr.Job, a brr.CheckpointJob) (*brr.CheckpointResult, error) {
	return nil, brr.Permanent(fmt.Errorf("checkpoint: not implemented yet"))
}
