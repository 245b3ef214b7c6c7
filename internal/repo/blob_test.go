package repo_test

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
)

// slowClaim holds the SaveBlob of one blob between its claim and its append to a pack,
// as a slow compression would, until release is called: by the Flush that waits for it,
// or by the test once that Flush has returned.
type slowClaim struct {
	id       repo.ID
	claimed  chan struct{}
	released chan struct{}
	once     sync.Once
}

func holdClaim(r *repo.Repository, id repo.ID) *slowClaim {
	s := &slowClaim{id: id, claimed: make(chan struct{}), released: make(chan struct{})}
	repo.SetTestHooks(r, func(got repo.ID) {
		if got == s.id {
			close(s.claimed)
			<-s.released
		}
	}, s.release)
	return s
}

func (s *slowClaim) release() { s.once.Do(func() { close(s.released) }) }

// Two jobs share a Repository: job B skips a blob that job A has claimed but not yet
// appended to a pack, and flushes. Once B's Flush returns nil, B commits a snapshot that
// names the blob, so the blob must be in a saved pack and index by then.
func TestFlushWaitsForBlobClaimedByAnother(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	data := randomBytes(40, 100<<10)
	id := r.BlobID(data)
	slow := holdClaim(r, id)

	saved := make(chan error, 1)
	go func() {
		added, _, err := r.SaveBlob(ctx, repo.DataBlob, id, data)
		if err == nil && !added {
			err = errors.New("the claiming SaveBlob did not add the blob")
		}
		saved <- err
	}()
	<-slow.claimed
	if !r.HasBlob(repo.DataBlob, id) {
		t.Fatal("HasBlob is false for a claimed blob")
	}
	added, _, err := r.SaveBlob(ctx, repo.DataBlob, id, data)
	if err != nil || added {
		t.Fatalf("SaveBlob of a claimed blob = %v, %v; want false, nil", added, err)
	}
	flushErr := r.Flush(ctx)
	pb, found := r.LookupBlob(repo.DataBlob, id)
	slow.release() // when Flush did not wait for the claim
	if err := <-saved; err != nil {
		t.Fatalf("claiming SaveBlob: %v", err)
	}
	if flushErr != nil {
		t.Fatalf("Flush: %v", flushErr)
	}
	if !found {
		t.Fatal("Flush returned nil before the blob it relied on was in a saved pack")
	}
	if _, err := be.Stat(ctx, repo.Handle{Type: repo.PackFile, Name: pb.Pack.String()}); err != nil {
		t.Fatalf("pack of the blob: %v", err)
	}
	got, err := reopen(t, be).LoadBlob(ctx, repo.DataBlob, id, nil)
	if err != nil || string(got) != string(data) {
		t.Fatalf("LoadBlob after reopen: %d bytes, %v", len(got), err)
	}
}

// When the pack of a claimed blob fails, the blob is claimed no more, and the Flush of a
// job that skipped it (another job had claimed it) fails instead of letting it commit a
// snapshot; so does the Flush of the job that claimed it.
func TestFlushFailsWhenClaimFails(t *testing.T) {
	ctx := context.Background()
	r, be := initFailing(t)
	data := randomBytes(41, 100<<10)
	id := r.BlobID(data)
	slow := holdClaim(r, id)
	claimer, skipper := testWriter(t, r, "claimer"), testWriter(t, r, "skipper")

	saved := make(chan error, 1)
	go func() {
		_, _, err := claimer.SaveBlob(ctx, repo.DataBlob, id, data)
		saved <- err
	}()
	<-slow.claimed
	if added, _, err := skipper.SaveBlob(ctx, repo.DataBlob, id, data); err != nil || added {
		t.Fatalf("SaveBlob of a claimed blob = %v, %v; want false, nil", added, err)
	}
	// Pack writes fail while the claim is held. Each blob fills a pack.
	be.mu.Lock()
	be.fail = true
	be.mu.Unlock()
	for i := range 2 {
		big := randomBytes(uint64(42+i), testOpts.PackSize)
		_, _, _ = r.SaveBlob(ctx, repo.DataBlob, r.BlobID(big), big)
	}
	flushErr := skipper.Flush(ctx) // lets the claiming SaveBlob go on when it waits for it
	slow.release()
	<-saved
	if flushErr == nil {
		t.Fatal("Flush succeeded although a blob it relied on was never saved")
	}
	if err := claimer.Flush(ctx); err == nil {
		t.Fatal("the claiming job's Flush succeeded although its blob was never saved")
	}
	if r.HasBlob(repo.DataBlob, id) {
		t.Fatal("HasBlob is true for a blob whose pack failed")
	}
	be.mu.Lock()
	be.fail = false
	be.mu.Unlock()
	if reopen(t, be.Backend).HasBlob(repo.DataBlob, id) {
		t.Fatal("an index names a blob that was never saved")
	}
}

// testWriter begins a writer into r, released when the test ends.
func testWriter(t *testing.T, r *repo.Repository, who string) *repo.Writer {
	t.Helper()
	w, err := r.StartWriter(context.Background(), who)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Release)
	return w
}
