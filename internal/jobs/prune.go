package jobs

import (
	"context"
	"fmt"

	"github.com/brr-dev/brr"
)

// Prune removes the snapshots retention does not keep and the data no snapshot needs.
func (e *Engine) Prune(ctx context.Context, jobID string, a brr.PruneJob, progress func(brr.Progress)) (*brr.PruneResult, error) {
	return nil, brr.Permanent(fmt.Errorf("prune: not implemented yet"))
}
