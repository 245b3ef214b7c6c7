package restorer

// SetCacheLimit sets the bound on the bytes of blobs rs's loader holds (cacheLimit by
// default); call it before Run.
func SetCacheLimit(rs *Restorer, n int64) { rs.cacheLimit = n }

// CacheStats returns, after Run, the most bytes of blobs the loader held at once, the
// most bytes of buffers it had at once (free ones included), and the bytes and blobs it
// still holds.
func CacheStats(rs *Restorer) (peak, peakAll, held int64, blobs int) {
	l := rs.loader
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.peak, l.peakAll, l.bytes, len(l.slots)
}

// SetSyncFS replaces syncfs(2) until the test ends.
func SetSyncFS(t interface{ Cleanup(func()) }, f func(fd int) error) {
	old := syncFS
	syncFS = f
	t.Cleanup(func() { syncFS = old })
}

// WritebackRanges returns how many written ranges rs named to the kernel for write-back
// before the final sync.
func WritebackRanges(rs *Restorer) int64 { return rs.wbRanges.Load() }
