package natsobj

import "time"

// Fetched returns the bytes Load has read from the server so far.
func (b *Backend) Fetched() int64 { return b.fetched.Load() }

// CacheUsed returns the bytes of the packs in the cache.
func (b *Backend) CacheUsed() int64 {
	if b.cache == nil {
		return 0
	}
	return b.cache.usedBytes()
}

// PurgeCache drops every cached pack.
func (b *Backend) PurgeCache() { b.cache.purge() }

// SetCacheClock sets the clock of the cache's rechecks.
func (b *Backend) SetCacheClock(now func() time.Time) {
	b.cache.mu.Lock()
	defer b.cache.mu.Unlock()
	b.cache.now = now
}

// WaitFills waits for the downloads into the cache under way.
func (b *Backend) WaitFills() {
	if b.cache != nil {
		b.cache.running.Wait()
	}
}

// ChunkCacheUsed returns the bytes of the chunks the ranged reads keep; -1 without ranged
// reads.
func (b *Backend) ChunkCacheUsed() int64 {
	if b.ranged == nil {
		return -1
	}
	return b.ranged.cache.usedBytes()
}

// ChunkCacheSize is the bound of ChunkCacheUsed.
const ChunkCacheSize = chunkCacheSize

// ChunkSize is the size of the chunks Save writes.
func (b *Backend) ChunkSize() int { return int(b.chunkSize) }

// WaitPrefetches waits for the chunk maps being made in the background.
func (b *Backend) WaitPrefetches() { b.ranged.running.Wait() }

// KnowsMap reports whether the chunk map of pack h is known.
func (b *Backend) KnowsMap(name string) bool {
	b.ranged.mu.Lock()
	defer b.ranged.mu.Unlock()
	f := b.ranged.maps["data/"+name]
	return f != nil && f.m != nil
}

// Batching reports whether ranged reads use batched direct gets.
func (b *Backend) Batching() bool { return b.ranged != nil && !b.ranged.noBatch.Load() }

// SetBatching turns batched direct gets off (or on again) for ranged reads.
func (b *Backend) SetBatching(on bool) { b.ranged.noBatch.Store(!on) }

// VersionAtLeast and BatchMinVersion are the server version check of batched gets.
var (
	VersionAtLeast  = versionAtLeast
	BatchMinVersion = batchMinVersion
)
