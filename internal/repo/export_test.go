package repo

import (
	"context"
	"os"
	"testing"
	"time"
)

// SetTestHooks makes SaveBlob call afterClaim between claiming a blob and compressing it,
// and Flush call flushWaits when it is about to wait for blobs other SaveBlobs claimed.
// Set them before the Repository is used.
func SetTestHooks(r *Repository, afterClaim func(ID), flushWaits func()) {
	r.afterClaim = afterClaim
	r.flushWaits = flushWaits
}

// WithGCStep makes GC call step after each step that changes the repository ("plan
// saved", "repacked", "index rewritten", "index removed", "pack removed"); an error it
// returns stops GC there, as a crash would.
func WithGCStep(o GCOptions, step func(string) error) GCOptions {
	o.step = step
	return o
}

// SetLockRefresh makes writer locks taken from now on refresh every d, and returns a
// function that restores the default. Tests using it must not run in parallel.
func SetLockRefresh(d time.Duration) (restore func()) {
	old := lockRefreshEvery
	lockRefreshEvery = d
	return func() { lockRefreshEvery = old }
}

// KnownPlans returns the names of the plans r knows.
func KnownPlans(r *Repository) []string { return r.idx.knownPlans() }

// LockInfo is a writer lock as tests read it.
type LockInfo = lockObject

// Locks reads r's writer locks; one that cannot be read is an error.
func Locks(ctx context.Context, r *Repository) ([]*LockInfo, error) {
	ls, err := r.listLocks(ctx)
	if err != nil {
		return nil, err
	}
	var out []*LockInfo
	for _, l := range ls {
		if l.err != nil {
			return nil, l.err
		}
		out = append(out, l.obj)
	}
	return out, nil
}

// SavePlan saves a plan condemning packs, as GC's phase 1 does, and returns its name.
func SavePlan(ctx context.Context, r *Repository, packs []ID) (string, error) {
	return r.savePlan(ctx, &planObject{V: planVersion, Time: time.Now().UTC(), Packs: packs})
}

// PackDead reports whether r takes pack id for condemned.
func PackDead(r *Repository, id ID) bool {
	r.idx.mu.RLock()
	defer r.idx.mu.RUnlock()
	return r.idx.dead[id]
}

// SetMaxIndexEntries makes index files name at most about n blobs until the test ends.
func SetMaxIndexEntries(t testing.TB, n int) {
	old := maxIndexEntries
	maxIndexEntries = n
	t.Cleanup(func() { maxIndexEntries = old })
}

// WriteFormat1 makes repositories created and objects saved from now on format 1, as an
// older brr wrote them: objects not bound to their names. It returns a function that
// restores format 2. Tests using it must not run in parallel.
func WriteFormat1() (restore func()) {
	initVersion, unboundWrites = legacyVersion, true
	return func() { initVersion, unboundWrites = formatVersion, false }
}

// SetPackFileHook makes r call fn with each pack's temporary file when it creates it. Set
// it before the Repository is used.
func SetPackFileHook(r *Repository, fn func(*os.File)) { r.packFileHook = fn }
