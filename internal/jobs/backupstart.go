package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/brr-dev/brr/internal/repo"
)

// backupStart is what a backup holds while it writes: the repository's write lock and the
// source's lease (release frees both), and what the repository has of the source.
type backupStart struct {
	r        *repo.Repository
	repoName string
	jobID    string
	host     string
	w        *repo.Writer
	// committed is the snapshot the job committed before, when it is delivered again;
	// parent the newest snapshot of the source from this host, if any.
	committed, parent *repo.Snapshot
	// saved is set once commit saved the snapshot; release keeps what a backup that
	// stopped before wrote (see keep).
	saved   bool
	release func()
}

// keepTimeout bounds keep: the backup was asked to stop (a cancel must end it within
// seconds) or failed, and what keep cannot save in time is left for prune to remove.
const keepTimeout = time.Second

// keep indexes the packs that a backup which stopped before its snapshot (cancelled,
// cut short by a drain, failed) has written: the next backup finds their blobs and does
// not store them again. No snapshot is written, so nothing half-done is visible; the
// blobs no snapshot references are prune's to remove. A flush that fails or takes too
// long leaves those packs unindexed, as a crash would.
func (st *backupStart) keep() {
	ctx, cancel := context.WithTimeout(context.Background(), keepTimeout)
	defer cancel()
	_ = st.w.Flush(ctx)
}

// startBackup takes the lease on source (what names it in errors) and the write lock of
// r, and finds the job's committed snapshot or the source's parent. The lease's context,
// cancelled if the lease is lost, is returned for the backup to run under.
func (e *Engine) startBackup(ctx context.Context, jobID string, r *repo.Repository, repoName, source, what string) (context.Context, *backupStart, error) {
	st := &backupStart{r: r, repoName: repoName, jobID: jobID, host: e.Host, release: func() {}}
	ctx, release, err := e.lease(ctx, SourceLeaseKey(e.Host, source))
	if err != nil {
		return ctx, nil, fmt.Errorf("take lease on source %s: %w", what, err)
	}
	st.release = release
	// Before anything reads the index: the lock reloads it, so the backup knows every
	// prune plan and never reuses a pack a prune is about to delete (see repo.GC).
	w, err := r.StartWriter(ctx, "backup "+jobID)
	if err != nil {
		st.release()
		return ctx, nil, fmt.Errorf("lock repo %s for writing: %w", repoName, err)
	}
	releaseLease := st.release
	st.w, st.release = w, func() {
		if !st.saved {
			st.keep()
		}
		w.Release()
		releaseLease()
	}

	snapID := r.SnapshotIDFor(jobID)
	snaps, err := r.Snapshots(ctx)
	if err != nil {
		st.release()
		return ctx, nil, fmt.Errorf("list snapshots of repo %s: %w", repoName, err)
	}
	for _, sn := range snaps {
		if sn.ID == snapID {
			st.committed = sn
			return ctx, st, nil
		}
		if sn.Source == source && sn.Host == e.Host && (st.parent == nil || !sn.Time.Before(st.parent.Time)) {
			st.parent = sn
		}
	}
	return ctx, st, nil
}

// commit flushes what the backup wrote and saves sn as the job's snapshot: its id derives
// from the job's, it is of this host, and its parent is the one startBackup found.
func (st *backupStart) commit(ctx context.Context, sn *repo.Snapshot) error {
	if err := st.w.Flush(ctx); err != nil {
		return fmt.Errorf("flush repo %s: %w", st.repoName, err)
	}
	sn.ID, sn.Host, sn.JobID = st.r.SnapshotIDFor(st.jobID), st.host, st.jobID
	if st.parent != nil {
		id := st.parent.ID
		sn.Parent = &id
	}
	if err := st.r.SaveSnapshot(ctx, sn); err != nil {
		return fmt.Errorf("save snapshot: %w", err)
	}
	st.saved = true
	return nil
}
