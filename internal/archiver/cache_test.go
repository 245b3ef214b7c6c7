package archiver_test

import (
	"context"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/brr-dev/brr/internal/archiver"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
)

// With PutCache, a backup of many files hands the file cache's entries over in batches
// while it runs instead of holding one per file until it ends, and what it hands over and
// what it returns together are every file: the next run answers every file from them.
// It keeps no blob queued once it is done either: its set of queued blobs holds only
// those between queueing and their SaveBlob.
func TestPutCacheInBatches(t *testing.T) {
	ctx := context.Background()
	archiver.SetCacheBatch(t, 8)
	r, _ := testkit.InitRepo(t, t.TempDir(), repo.Options{KDF: testkit.CheapKDF})
	src := t.TempDir()
	const n = 100
	for i := range n {
		testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("d%d/f%03d", i%4, i)), fmt.Appendf(nil, "file %d", i), 0o644)
	}
	var mu sync.Mutex
	var batches []map[string]state.CachedFile
	stored := map[string]state.CachedFile{}
	put := func(m map[string]state.CachedFile) error {
		mu.Lock()
		defer mu.Unlock()
		batches = append(batches, m)
		maps.Copy(stored, m)
		return nil
	}
	arch := archiver.New(testkit.StartWriter(t, r), src, archiver.Options{Workers: 2, PutCache: put})
	first, err := arch.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if q := archiver.Queued(arch); q != 0 {
		t.Errorf("%d blobs still queued after Run, want 0", q)
	}
	if len(batches) < n/8-1 {
		t.Errorf("PutCache got %d batches, want about %d", len(batches), n/8)
	}
	for _, b := range batches {
		if len(b) != 8 {
			t.Errorf("a batch of %d entries, want 8", len(b))
		}
	}
	if len(first.CachePut) >= 8 {
		t.Errorf("Run returned %d cache entries, want fewer than a batch", len(first.CachePut))
	}
	maps.Copy(stored, first.CachePut)
	if got := sortedKeys(stored); len(got) != n || !slices.IsSorted(got) {
		t.Fatalf("cache entries of %d files, want %d", len(got), n)
	}

	second, err := archiver.New(testkit.StartWriter(t, r), src, archiver.Options{
		LoadCache: func() (map[string]state.CachedFile, error) { return stored, nil },
		PutCache:  put,
	}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.FilesUnchanged != n || second.BytesRead != 0 || len(second.CachePut) != 0 || len(second.CacheDelete) != 0 {
		t.Errorf("second run: %d unchanged, %d bytes read, %d put, %d deleted; want %d unchanged and nothing else",
			second.FilesUnchanged, second.BytesRead, len(second.CachePut), len(second.CacheDelete), n)
	}
}
