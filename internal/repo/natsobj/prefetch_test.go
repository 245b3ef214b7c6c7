package natsobj_test

import (
	"context"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
)

// A prefetched pack is downloaded once, in the background, and the ranges loaded after
// come from the cache; a prefetch of a pack the cache has, of a pack being downloaded,
// of an object that is not a pack and of one that does not exist fetches nothing more.
func TestPrefetch(t *testing.T) {
	ctx := context.Background()
	_, be := setup(t, t.TempDir(), 8<<20)
	h, data := savePack(t, be, 1<<20)

	be.Prefetch(ctx, h)
	be.Prefetch(ctx, h) // joins, or finds it cached
	be.WaitFills()
	if got := be.Fetched(); got != int64(len(data)) {
		t.Fatalf("after two prefetches: %d bytes fetched, want the pack once (%d)", got, len(data))
	}
	if got := be.CacheUsed(); got != int64(len(data)) {
		t.Fatalf("after a prefetch the cache holds %d bytes, want the pack (%d)", got, len(data))
	}
	checkRange(t, be, h, data, 1000, 5000)
	checkRange(t, be, h, data, len(data)-100, 100)
	be.Prefetch(ctx, h)
	be.WaitFills()
	if got := be.Fetched(); got != int64(len(data)) {
		t.Fatalf("ranges of a prefetched pack fetched %d bytes in all, want only the prefetch's %d", got, len(data))
	}

	cfg := repo.Handle{Type: repo.ConfigFile, Name: "config"}
	if err := be.Save(ctx, cfg, repo.NewByteReader([]byte("config"))); err != nil {
		t.Fatal(err)
	}
	be.Prefetch(ctx, cfg)
	be.Prefetch(ctx, repo.Handle{Type: repo.PackFile, Name: "00ff00ff"}) // no such pack
	be.WaitFills()
	if got := be.Fetched(); got != int64(len(data)) {
		t.Fatalf("prefetches of a config and of a missing pack fetched %d bytes more", got-int64(len(data)))
	}
}
