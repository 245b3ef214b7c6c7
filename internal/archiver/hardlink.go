package archiver

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
)

// devIno identifies an inode: the links of one share it.
type devIno struct{ dev, ino uint64 }

// linkGroup holds the nodes that share one inode, so that a hardlink seen again gets the
// content read for the first one, once that is known.
type linkGroup struct {
	mu      sync.Mutex
	done    bool
	failed  bool
	class   *atomic.Int64 // the counter the first link was counted in: new, changed, unchanged
	content []repo.ID
	size    int64
	cache   *state.CachedFile // what the file cache may remember for every link; nil: nothing
	waiting []*fileJob
}

// joinLink gives job the content of the first link of its inode, now or when it is known.
func (a *Archiver) joinLink(ctx context.Context, g *linkGroup, job *fileJob) error {
	g.mu.Lock()
	if !g.done {
		g.waiting = append(g.waiting, job)
		g.mu.Unlock()
		return nil
	}
	g.mu.Unlock()
	a.resolveLink(g, job)
	return a.release(ctx, job.dir)
}

// linkDone records the outcome of the first link of g and resolves the links that wait.
func (a *Archiver) linkDone(ctx context.Context, g *linkGroup, content []repo.ID, size int64, ok bool, class *atomic.Int64, cache *state.CachedFile) error {
	g.mu.Lock()
	g.done, g.failed, g.content, g.size, g.class, g.cache = true, !ok, content, size, class, cache
	waiting := g.waiting
	g.waiting = nil
	g.mu.Unlock()
	for _, w := range waiting {
		a.resolveLink(g, w)
		if err := a.release(ctx, w.dir); err != nil {
			return err
		}
	}
	return nil
}

// resolveLink sets a later link's node from its group, which is done. Every link gets a
// file cache entry, so that whichever is met first next time is answered from the cache.
func (a *Archiver) resolveLink(g *linkGroup, job *fileJob) {
	if g.failed {
		a.dropFile(job.node) // the first link could not be read; drop this one too
		a.fileDone(0)
		return
	}
	job.node.Content = g.content
	if job.node.Size != g.size {
		a.bytes.Add(g.size - job.node.Size)
		job.node.Size = g.size
	}
	g.class.Add(1)
	a.fileDone(g.size)
	if g.cache != nil && !(job.known && sameCached(job.old, *g.cache)) {
		a.putCache(job.rel, *g.cache)
	}
}
