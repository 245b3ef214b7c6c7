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

// SetBeforeOpen has fn called with a file's path from the root just before the archiver
// opens it, until the test ends.
func SetBeforeOpen(t testing.TB, fn func(rel string)) {
	beforeOpen = fn
	t.Cleanup(func() { beforeOpen = nil })
}

// SetMaxDirFDs bounds the directory descriptors an archiver keeps open for its files to
// n until the test ends.
func SetMaxDirFDs(t testing.TB, n int64) {
	old := maxDirFDs
	maxDirFDs = n
	t.Cleanup(func() { maxDirFDs = old })
}

// DirFDs is how many directory descriptors a holds open.
func DirFDs(a *Archiver) int64 { return a.dirFDs.Load() }
