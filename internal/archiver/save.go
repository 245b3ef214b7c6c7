package archiver

import (
	"context"
	"fmt"

	"github.com/brr-dev/brr/internal/repo"
)

type blobKey struct {
	t  repo.BlobType
	id repo.ID
}

// saveJob is a blob for a saver. buf, when set, goes back to chunkBufs, small to its pool.
type saveJob struct {
	t     repo.BlobType
	id    repo.ID
	data  []byte
	buf   *[]byte
	small *[]byte
}

// queueBlob reports whether the blob is new: not in the repository and not queued by
// this run yet. A blob stays in seen only until its SaveBlob returns (see save): from then
// on the repository has it. A caller that saw it missing from the repository just before
// that, and from seen just after, queues it again, and its SaveBlob returns added=false.
func (a *Archiver) queueBlob(t repo.BlobType, id repo.ID) bool {
	if a.r.HasBlob(t, id) {
		return false
	}
	_, dup := a.seen.LoadOrStore(blobKey{t, id}, struct{}{})
	return !dup
}

func (a *Archiver) save(ctx context.Context, job saveJob) error {
	defer a.putBuf(job)
	select {
	case a.limits.saves <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	added, stored, err := a.w.SaveBlob(ctx, job.t, job.id, job.data)
	<-a.limits.saves
	// The repository has the blob now (HasBlob is true) or the job fails: seen only has
	// to cover the blobs between queueBlob and here, and so stays small whatever the
	// number of files, instead of an entry per blob of the backup.
	a.seen.Delete(blobKey{job.t, job.id})
	if err != nil {
		return fmt.Errorf("save %s blob %s: %w", job.t, job.id.Short(), err)
	}
	if added && job.t == repo.DataBlob {
		a.blobsAdded.Add(1)
		a.bytesAdded.Add(int64(stored))
	}
	return nil
}

func (a *Archiver) putBuf(job saveJob) {
	switch {
	case job.buf != nil:
		a.putChunkBuf(job.buf)
	case job.small != nil:
		putSmall(job.small)
	}
}
