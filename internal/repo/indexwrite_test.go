package repo_test

import (
	"context"
	"crypto/rand"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// A writer of many blobs does not keep every saved pack's entries until its Flush: once
// the packs that no index file names hold maxIndexEntries blobs, the pack writer saves an
// index file for them, so another process sees those blobs before the Flush.
func TestPackWriterSavesIndexAsItGoes(t *testing.T) {
	ctx := context.Background()
	repo.SetMaxIndexEntries(t, 16)
	dir := t.TempDir()
	opts := testOpts
	opts.PackSize = 4 << 10
	r, _ := testkit.InitRepo(t, dir, opts)
	var ids []repo.ID
	for range 200 {
		data := make([]byte, 500)
		_, _ = rand.Read(data)
		ids = append(ids, saveBlob(t, r, data))
	}
	// Another process, which knows only the saved index files: before any Flush, it
	// sees the blobs of all but the last few packs.
	seen := func() int {
		be, err := file.Open(dir)
		if err != nil {
			t.Fatal(err)
		}
		o, err := repo.Open(ctx, be, password, opts)
		if err != nil {
			t.Fatal(err)
		}
		defer o.Close()
		n := 0
		for _, id := range ids {
			if o.HasBlob(repo.DataBlob, id) {
				n++
			}
		}
		return n
	}
	testkit.Eventually(t, 30*time.Second, "the index files of most packs, before Flush", func() bool { return seen() >= 150 })
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := seen(), len(ids); got != want {
		t.Fatalf("after Flush another process sees %d blobs, want %d", got, want)
	}
	rep, err := r.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() || len(rep.Unreferenced) > 0 || rep.Blobs != len(ids) {
		t.Fatalf("check: %d blobs (want %d), damage %v, unreferenced packs %v", rep.Blobs, len(ids), rep.Damage, rep.Unreferenced)
	}
}
