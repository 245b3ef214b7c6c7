package jobs

import (
	"context"
	"fmt"

	"github.com/brr-dev/brr"
)

// BlobMap remembers, per pair of repositories, which target blob holds a source blob's
// content. *state.DB implements it.
type BlobMap interface{}

// Replicate copies snapshots from one repository to another.
func (e *Engine) Replicate(ctx context.Context, jobID string, a brr.ReplicateJob, progress func(brr.Progress)) (*brr.ReplicateResult, error) {
	return nil, brr.Permanent(fmt.Errorf("replicate: not implemented yet"))
}
