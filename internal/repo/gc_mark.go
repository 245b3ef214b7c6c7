package repo

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"sync"
)

// markWorkers is how many trees mark loads and decodes at once: enough to keep two cores
// busy on a local repository and to hide some of a remote backend's latency.
const markWorkers = 8

// mark walks the trees of every snapshot and returns the blobs they use. Each tree is
// loaded once, however many snapshots reach it; the trees of one snapshot are loaded by
// markWorkers goroutines at once, and the snapshots one after the other (so that the
// progress counts snapshots).
func (g *gcRun) mark(ctx context.Context, sns []*Snapshot) (*usedSet, error) {
	u := &usedSet{trees: make(map[ID]struct{})}
	for i, sn := range sns {
		if err := g.markTree(ctx, u, sn.Tree); err != nil {
			return nil, fmt.Errorf("gc: snapshot %s: %w; GC deletes nothing while a tree cannot be read; run verify", sn.ID.Short(), err)
		}
		g.progress.report("mark", int64(i+1), int64(len(sns)))
	}
	u.seal()
	return u, nil
}

// markTree adds the trees and data blobs reachable from tree root to u, skipping the
// trees u has already.
func (g *gcRun) markTree(ctx context.Context, u *usedSet, root ID) error {
	if _, ok := u.trees[root]; ok {
		return nil
	}
	var (
		mu      sync.Mutex
		cond    = sync.NewCond(&mu)
		queue   = []ID{root}
		pending = 1 // trees queued or being loaded
		failed  error
		wg      sync.WaitGroup
	)
	u.trees[root] = struct{}{}
	worker := func() {
		defer wg.Done()
		mu.Lock()
		defer mu.Unlock()
		for {
			for len(queue) == 0 && pending > 0 && failed == nil {
				cond.Wait()
			}
			if pending == 0 || failed != nil {
				return
			}
			id := queue[len(queue)-1]
			queue = queue[:len(queue)-1]
			mu.Unlock()
			err := ctx.Err()
			var t *Tree
			if err == nil {
				t, err = g.r.LoadTree(ctx, id)
			}
			mu.Lock()
			pending--
			if err != nil {
				if failed == nil {
					failed = err
				}
				cond.Broadcast()
				return
			}
			for _, n := range t.Nodes {
				for _, b := range n.Content {
					u.addData(b)
				}
				if n.Type == NodeDir {
					if _, ok := u.trees[n.Subtree]; !ok {
						u.trees[n.Subtree] = struct{}{}
						queue = append(queue, n.Subtree)
						pending++
						cond.Signal()
					}
				}
			}
			if pending == 0 {
				cond.Broadcast()
			}
		}
	}
	wg.Add(markWorkers)
	for range markWorkers {
		go worker()
	}
	wg.Wait()
	return failed
}

// usedSet is the blobs the snapshots use. Data blobs are kept by the first 8 bytes of
// their id, a quarter of the memory of whole ids: ids are keyed hashes, so two blobs
// share a key with a chance of about n²/2⁶⁵, and then an unused blob is taken for used,
// which only keeps it. Trees are kept whole, as a tree taken for seen would not be walked.
//
// The data keys are a sorted slice, 8 bytes a blob where a Go map took about 33: mark
// appends every key it meets, and sorts out the duplicates whenever the slice has doubled
// since the last time (a blob many trees name is appended once per tree), so that it
// stays within about twice the blobs used; seal sorts it for has.
type usedSet struct {
	data      []uint64
	compactAt int
	trees     map[ID]struct{}
}

func dataKey(id ID) uint64 { return binary.LittleEndian.Uint64(id[:8]) }

// minCompact is the least length of usedSet.data at which addData sorts it.
const minCompact = 1 << 16

func (u *usedSet) addData(id ID) {
	u.data = append(u.data, dataKey(id))
	if len(u.data) >= max(u.compactAt, minCompact) {
		u.compact()
	}
}

func (u *usedSet) compact() {
	slices.Sort(u.data)
	u.data = slices.Compact(u.data)
	u.compactAt = 2 * len(u.data)
}

// seal sorts the data keys, and gives back the slice's spare room when it is large.
func (u *usedSet) seal() {
	u.compact()
	if cap(u.data) > len(u.data)+len(u.data)/4 {
		u.data = slices.Clone(u.data)
	}
}

func (u *usedSet) has(k blobKey) bool {
	if k.t == TreeBlob {
		_, ok := u.trees[k.id]
		return ok
	}
	_, ok := slices.BinarySearch(u.data, dataKey(k.id))
	return ok
}
