package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
)

// backupCommand backs up the standard output of src.Command as one file.
func (e *Engine) backupCommand(ctx context.Context, jobID string, a brr.BackupJob, src *Source, r *repo.Repository, repoName string, pr *reporter, start time.Time) (*brr.BackupResult, *repo.Snapshot, error) {
	return nil, nil, brr.Permanent(errors.New("command sources are not supported by this worker yet"))
}
