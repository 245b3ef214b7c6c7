package repo

import (
	"context"
	"fmt"
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
	u := &usedSet{data: make(map[uint64]struct{}), trees: make(map[ID]struct{})}
	for i, sn := range sns {
		if err := g.markTree(ctx, u, sn.Tree); err != nil {
			return nil, fmt.Errorf("gc: snapshot %s: %w; GC deletes nothing while a tree cannot be read; run verify", sn.ID.Short(), err)
		}
		g.progress.report("mark", int64(i+1), int64(len(sns)))
	}
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
					u.data[dataKey(b)] = struct{}{}
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
