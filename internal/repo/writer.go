package repo

import (
	"context"
	"fmt"
)

// Writer is one job writing into a repository: a backup, a replication into it. It holds
// a writer lock (see LockWriter) for as long as it runs, and it hears of exactly the pack
// writes and blob saves that failed while it ran: any of them may have held a blob it
// relies on (one it saved, or one another job had claimed and it found present), so its
// Flush fails and it must not commit a snapshot. A writer that begins after a failure
// starts clean: the failed pack's blobs are forgotten, and it saves them again. So a full
// disk or a network blip fails the jobs it touched, and the next job succeeds once the
// storage is back, on the same Repository.
type Writer struct {
	r       *Repository
	since   uint64 // r.failures when the writer began
	release func()
}

// StartWriter takes a writer lock for who (see LockWriter) and begins a Writer. Call it
// before reading the index or the snapshots, and Release when done.
func (r *Repository) StartWriter(ctx context.Context, who string) (*Writer, error) {
	r.mu.Lock()
	since := r.failures
	r.mu.Unlock()
	release, err := r.LockWriter(ctx, who)
	if err != nil {
		return nil, err
	}
	return &Writer{r: r, since: since, release: release}, nil
}

// Repository returns the repository w writes into.
func (w *Writer) Repository() *Repository { return w.r }

// Err returns the latest pack write or blob save that failed since w began, or nil: a
// long writer checks it to stop early.
func (w *Writer) Err() error { return w.r.failedSince(w.since) }

// SaveBlob is Repository.SaveBlob, refused once a write failed since w began.
func (w *Writer) SaveBlob(ctx context.Context, t BlobType, id ID, data []byte) (added bool, stored int, err error) {
	if err := w.Err(); err != nil {
		return false, 0, fmt.Errorf("save blob %s: an earlier write of this job failed: %w", id.Short(), err)
	}
	return w.r.SaveBlob(ctx, t, id, data)
}

// Flush is Repository.Flush for w: it fails when a pack write or blob save failed since w
// began, and only then.
func (w *Writer) Flush(ctx context.Context) error { return w.r.flush(ctx, w.since) }

// Release removes w's writer lock. Calling it again does nothing.
func (w *Writer) Release() { w.release() }
