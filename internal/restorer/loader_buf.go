package restorer

import "math/bits"

// bufSize is the size of the buffer for a blob of n bytes: the power of two that fits it.
func bufSize(n uint32) int64 { return 1 << bits.Len32(max(n, 1)-1) }

// getBuf returns an empty buffer of size bytes, a power of two: a free one, or a new
// one. Buffers are kept for the whole restore rather than in a sync.Pool, which every
// second collection empties: with the worker's low GOGC, that is a fresh (and cleared)
// buffer for most blobs. The free buffers give way to new ones: mem stays within the
// bound, but for the buffers of blobs held (within it too) and of blobs the loader
// dropped that writers are still writing.
func (l *loader) getBuf(size int64) []byte {
	c := bits.Len64(uint64(size) - 1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := len(l.free[c]); n > 0 {
		b := l.free[c][n-1]
		l.free[c][n-1] = nil
		l.free[c] = l.free[c][:n-1]
		l.freeBytes -= int64(cap(b))
		return b[:0]
	}
	l.mem += size
	for k := len(l.free) - 1; k >= 0 && l.mem > l.limit; k-- {
		for len(l.free[k]) > 0 && l.mem > l.limit {
			n := len(l.free[k]) - 1
			l.freeBytes -= int64(cap(l.free[k][n]))
			l.mem -= int64(cap(l.free[k][n]))
			l.free[k][n] = nil
			l.free[k] = l.free[k][:n]
		}
	}
	l.peakAll = max(l.peakAll, l.mem)
	return make([]byte, 0, size)
}

// putBuf keeps b, one of getBuf's buffers, for getBuf when the loader's buffers stay
// within the bound; otherwise the collector has it. l.mu must be held.
func (l *loader) putBuf(b []byte) {
	c := bits.Len64(uint64(cap(b)) - 1)
	if cap(b) == 0 || cap(b) != 1<<c || c >= len(l.free) {
		return
	}
	if l.mem > l.limit {
		l.mem -= int64(cap(b))
		return
	}
	l.free[c] = append(l.free[c], b)
	l.freeBytes += int64(cap(b))
}
