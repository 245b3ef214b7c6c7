package natsobj

import "time"

// Fetched returns the bytes Load has read from the server so far.
func (b *Backend) Fetched() int64 { return b.fetched.Load() }

// CacheUsed returns the bytes of the packs in the cache.
func (b *Backend) CacheUsed() int64 { return b.cache.usedBytes() }

// PurgeCache drops every cached pack.
func (b *Backend) PurgeCache() { b.cache.purge() }

// SetCacheClock sets the clock of the cache's rechecks.
func (b *Backend) SetCacheClock(now func() time.Time) {
	b.cache.mu.Lock()
	defer b.cache.mu.Unlock()
	b.cache.now = now
}

// WaitFills waits for the downloads into the cache under way.
func (b *Backend) WaitFills() { b.cache.running.Wait() }
