package jobs

import (
	"context"
	"fmt"

	"github.com/brr-dev/brr"
)

// Drill restores a snapshot into scratch space and checks it against the snapshot.
func (e *Engine) Drill(ctx context.Context, jobID string, a brr.DrillJob, progress func(brr.Progress)) (*brr.DrillResult, error) {
	return nil, brr.Permanent(fmt.Errorf("drill: not implemented yet"))
}
