package archiver

import "testing"

// SetCacheBatch makes Options.PutCache get batches of n entries until the test ends.
func SetCacheBatch(t testing.TB, n int) {
	old := cacheBatch
	cacheBatch = n
	t.Cleanup(func() { cacheBatch = old })
}

// Queued counts the blobs the archiver holds as queued but not saved yet.
func Queued(a *Archiver) int {
	n := 0
	a.seen.Range(func(any, any) bool { n++; return true })
	return n
}
