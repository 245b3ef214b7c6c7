package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
)

// backupSQLite backs up a consistent copy of the SQLite database src.SQLite.
func (e *Engine) backupSQLite(ctx context.Context, jobID string, a brr.BackupJob, src *Source, r *repo.Repository, repoName string, pr *reporter, start time.Time) (*brr.BackupResult, *repo.Snapshot, error) {
	return nil, nil, brr.Permanent(errors.New("sqlite sources are not supported by this worker yet"))
}
