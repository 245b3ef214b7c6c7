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

	arch := archiver.New(testkit.StartWriter(t, r), src, archiver.Options{Workers: 2})
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
	second, err := archiver.New(testkit.StartWriter(t, r), src, archiver.Options{LoadCache: func() (map[string]state.CachedFile, error) { return cache, nil }}).Run(ctx)
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

// A file cache entry is checked before it is trusted: a damaged entry (a state.db that
// was restored from another backup, or hit a disk error) whose blobs do not add up to
// the file's size would put another file's content into the snapshot. The file is read
// again instead.
func TestDamagedCacheEntryIsNotTrusted(t *testing.T) {
	ctx := context.Background()
	r, _ := testkit.InitRepo(t, t.TempDir(), repo.Options{KDF: testkit.CheapKDF})
	src := t.TempDir()
	one, two := []byte("the first file, which the damaged entry points away from"), make([]byte, 300<<10)
	rand.NewChaCha8([32]byte{2}).Read(two)
	for name, data := range map[string][]byte{"one": one, "two": two} {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	first, err := archiver.New(testkit.StartWriter(t, r), src, archiver.Options{}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	cache := first.CachePut
	damaged := cache["one"]
	damaged.Content = cache["two"].Content // blobs that exist, but of another size
	cache["one"] = damaged

	second, err := archiver.New(testkit.StartWriter(t, r), src, archiver.Options{LoadCache: func() (map[string]state.CachedFile, error) { return cache, nil }}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if second.FilesUnchanged != 1 || second.BytesRead != int64(len(one)) {
		t.Errorf("second run: %+v; want one read again (%d bytes), two unchanged", second, len(one))
	}
	tree, err := r.LoadTree(ctx, second.Tree)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range tree.Nodes {
		if n.Name != "one" {
			continue
		}
		var got []byte
		for _, id := range n.Content {
			data, err := r.LoadBlob(ctx, repo.DataBlob, id, nil)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, data...)
		}
		if string(got) != string(one) {
			t.Fatalf("one in the snapshot holds %d bytes of other content, want its own %d bytes", len(got), len(one))
		}
		return
	}
	t.Fatal("one is not in the snapshot")
}
