package repo

import (
	"context"
	"math/rand/v2"
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

// SaveSyntheticIndex writes index files naming packs made-up packs of perPack made-up
// blobs each (random ids, 1 in 20 a tree, 100 to 16,100 bytes; no pack is stored), as
// make bench-index loads them.
func SaveSyntheticIndex(ctx context.Context, r *Repository, packs, perPack int, seed uint64) error {
	rng := rand.New(rand.NewPCG(seed, 1))
	var batch []indexPack
	entries := 0
	for i := 0; i < packs; i++ {
		p := indexPack{Entries: make([]packEntry, perPack)}
		for j := range p.ID {
			p.ID[j] = byte(rng.Uint32())
		}
		var off uint32
		for j := range p.Entries {
			e := &p.Entries[j]
			for k := 0; k < len(e.ID); k += 8 {
				v := rng.Uint64()
				for b := 0; b < 8; b++ {
					e.ID[k+b] = byte(v >> (8 * b))
				}
			}
			e.Type = DataBlob
			if rng.IntN(20) == 0 {
				e.Type = TreeBlob
			}
			e.Offset, e.Length = off, 100+rng.Uint32N(16000)
			e.RawLength = e.Length - Overhead
			off += e.Length
		}
		p.Size = uint64(off)
		batch = append(batch, p)
		if entries += perPack; entries >= maxIndexEntries || i == packs-1 {
			if err := r.saveIndex(ctx, batch); err != nil {
				return err
			}
			batch, entries = batch[:0], 0
		}
	}
	return nil
}

// SetRepackLimits makes GC's repack read at most rangeBytes of a pack at once and flush
// every flushEvery blobs, and returns a function that restores the defaults. Tests using
// it must not run in parallel.
func SetRepackLimits(rangeBytes, flushEvery int) (restore func()) {
	oldRange, oldFlush := repackRange, repackFlushEvery
	repackRange, repackFlushEvery = rangeBytes, flushEvery
	return func() { repackRange, repackFlushEvery = oldRange, oldFlush }
}
