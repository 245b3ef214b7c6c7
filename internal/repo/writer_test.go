package repo_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// failingBackend fails Save of packs once fail is set: a test fixture around a real backend.
type failingBackend struct {
	repo.Backend
	mu   sync.Mutex
	fail bool
}

// initFailing makes a repository on a file backend whose saves can be made to fail; the
// repository is closed when the test ends.
func initFailing(t *testing.T) (*repo.Repository, *failingBackend) {
	t.Helper()
	dir, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	be := &failingBackend{Backend: dir}
	r, err := repo.Init(context.Background(), be, password, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return r, be
}

func (b *failingBackend) Save(ctx context.Context, h repo.Handle, rd repo.RewindReader) error {
	b.mu.Lock()
	fail := b.fail
	b.mu.Unlock()
	if fail && h.Type == repo.PackFile {
		return errors.New("disk full")
	}
	return b.Backend.Save(ctx, h, rd)
}

func TestFlushPackError(t *testing.T) {
	ctx := context.Background()
	r, be := initFailing(t)
	saveBlob(t, r, []byte("before"))
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	w, err := r.StartWriter(ctx, "job 1")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Release()
	be.mu.Lock()
	be.fail = true
	be.mu.Unlock()
	lost := r.BlobID([]byte("after"))
	if _, _, err := w.SaveBlob(ctx, repo.DataBlob, lost, []byte("after")); err != nil {
		t.Fatal(err)
	}
	if err := w.Flush(ctx); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("Flush with failing pack save: %v", err)
	}
	if _, _, err := w.SaveBlob(ctx, repo.DataBlob, r.BlobID([]byte("later")), []byte("later")); err == nil {
		t.Fatal("the job's SaveBlob after its pack write failed succeeded")
	}
	if err := w.Flush(ctx); err == nil {
		t.Fatal("the job's second Flush after its pack write failed succeeded")
	}
	if err := r.Flush(ctx); err == nil {
		t.Fatal("the Repository's own Flush, which cannot know what its caller relied on, succeeded after a failed pack write")
	}
	r2 := reopen(t, be.Backend)
	if r2.HasBlob(repo.DataBlob, lost) {
		t.Fatal("an index names a blob whose pack was never saved")
	}
	testkit.CheckClean(t, r2)
}

// TestFailedWriteDoesNotPoisonTheRepository: after a pack write failed (a full disk),
// every later backup into the same Repository failed with the same error until the
// worker restarted. A writer that begins once the storage is back must save and flush,
// the blob that was lost included.
func TestFailedWriteDoesNotPoisonTheRepository(t *testing.T) {
	ctx := context.Background()
	r, be := initFailing(t)
	w1, err := r.StartWriter(ctx, "job 1")
	if err != nil {
		t.Fatal(err)
	}
	be.mu.Lock()
	be.fail = true
	be.mu.Unlock()
	data := []byte("written while the disk was full")
	id := r.BlobID(data)
	if _, _, err := w1.SaveBlob(ctx, repo.DataBlob, id, data); err != nil {
		t.Fatal(err)
	}
	if err := w1.Flush(ctx); err == nil {
		t.Fatal("job 1's Flush succeeded with its pack unwritten")
	}
	w1.Release()
	be.mu.Lock()
	be.fail = false
	be.mu.Unlock()

	w2, err := r.StartWriter(ctx, "job 2")
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Release()
	if r.HasBlob(repo.DataBlob, id) {
		t.Fatal("the blob of the failed pack is still taken as present")
	}
	added, _, err := w2.SaveBlob(ctx, repo.DataBlob, id, data)
	if err != nil || !added {
		t.Fatalf("job 2 SaveBlob: added %v, %v; want the lost blob saved again", added, err)
	}
	if err := w2.Flush(ctx); err != nil {
		t.Fatalf("job 2's Flush after the storage came back: %v", err)
	}
	if got, err := reopen(t, be.Backend).LoadBlob(ctx, repo.DataBlob, id, nil); err != nil || string(got) != string(data) {
		t.Fatalf("blob after job 2: %q, %v", got, err)
	}
}
