package archiver_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/brr-dev/brr/internal/archiver"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
)

// Run gives the caller everything the snapshot and the file cache need: the counts, and
// which cache entries to write and to delete.
func TestRunReturnsCountsAndCacheUpdates(t *testing.T) {
	ctx := context.Background()
	r, _ := testkit.InitRepo(t, t.TempDir(), repo.Options{KDF: testkit.CheapKDF})
	src := t.TempDir()
	big := make([]byte, 3<<20) // chunked
	rand.NewChaCha8([32]byte{1}).Read(big)
	files := map[string][]byte{"small": []byte("a few bytes"), "big": big, "dir/inner": []byte("inner")}
	var size int64
	for rel, data := range files {
		testkit.WriteFile(t, filepath.Join(src, rel), data, 0o644)
		size += int64(len(data))
	}

	arch := archiver.New(r, src, archiver.Options{Workers: 2})
	first, err := arch.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if first.Tree.IsZero() || first.Files != 3 || first.Dirs != 1 || first.Bytes != size || first.FilesNew != 3 || first.BytesRead != size || first.BlobsAdded < 4 {
		t.Fatalf("first run: %+v, want 3 new files of %d bytes read, 1 dir, at least 4 blobs", first, size)
	}
	if got, want := arch.Progress(), (archiver.Stats{Files: 3, Dirs: 1, Bytes: size, FilesDone: 3, BytesDone: size}); got != want {
		t.Errorf("Progress after Run = %+v, want %+v", got, want)
	}
	if keys := sortedKeys(first.CachePut); !slices.Equal(keys, []string{"big", "dir/inner", "small"}) || len(first.CacheDelete) != 0 {
		t.Fatalf("first run: cache put %q, delete %q; want every file put, nothing deleted", keys, first.CacheDelete)
	}

	if err := os.Remove(filepath.Join(src, "small")); err != nil {
		t.Fatal(err)
	}
	cache := first.CachePut
	second, err := archiver.New(r, src, archiver.Options{LoadCache: func() (map[string]state.CachedFile, error) { return cache, nil }}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if second.Files != 2 || second.FilesUnchanged != 2 || second.BytesRead != 0 || second.BlobsAdded != 0 {
		t.Errorf("second run: %+v, want 2 unchanged files, nothing read or added", second)
	}
	if len(second.CachePut) != 0 || !slices.Equal(second.CacheDelete, []string{"small"}) {
		t.Errorf("second run: cache put %q, delete %q; want nothing put, small deleted", sortedKeys(second.CachePut), second.CacheDelete)
	}
}

func sortedKeys(m map[string]state.CachedFile) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
