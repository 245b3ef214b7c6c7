package natsobj

import (
	"context"
	"strings"

	"github.com/brr-dev/brr/internal/repo"
)

// Prefetch starts downloading pack h into the cache in the background, unless the cache
// has it or a download of it is under way (repo.Prefetcher): a restore names the pack it
// will read next while it writes the blobs of this one, so that the next pack is on its
// way, or here, when the first range of it is loaded. It does nothing without a cache,
// for an object that is not a pack, and for a pack too large for the cache. The download
// is the one a Load starts (checked against the object's digest before it is renamed
// into the cache), and a Load of the pack joins it; what goes wrong is left for that
// Load to find.
//
// With ranged reads (the default), Prefetch only makes the pack's chunk map in the
// background, so that the first range read of it goes straight to its chunks: no data is
// read ahead, and none is held.
func (b *Backend) Prefetch(ctx context.Context, h repo.Handle) {
	if h.Type != repo.PackFile || !cacheable(h.Name) {
		return
	}
	name, err := objectName(h)
	if err != nil {
		return
	}
	if b.ranged != nil {
		b.ranged.prefetch(ctx, b, name)
		return
	}
	if b.cache == nil {
		return
	}
	b.cache.prefetch(ctx, b, name, h.Name)
}

// prefetch makes the chunk map of object name in the background, unless it is known.
func (r *ranger) prefetch(ctx context.Context, b *Backend, name string) {
	if r.known(name) != nil {
		return
	}
	r.mu.Lock()
	_, making := r.maps[name]
	r.mu.Unlock()
	if making {
		return
	}
	r.running.Add(1)
	go func() {
		defer r.running.Done()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.transferTimeout(0))
		defer cancel()
		info, err := b.os.GetInfo(ctx, name)
		if err != nil {
			return
		}
		_, _ = r.chunkMap(ctx, name, info)
	}()
}

// prefetch starts, in the background, a download of the pack name (object objName) into
// the cache, unless the cache has some version of it, or one is being downloaded. The
// download runs until it ends, whoever waits for it.
func (c *cache) prefetch(ctx context.Context, b *Backend, objName, name string) {
	c.mu.Lock()
	if c.closed || c.entries[name] != nil || c.fillingLocked(name) {
		c.mu.Unlock()
		return
	}
	c.running.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.running.Done()
		ck := c.begin()
		info, err := b.os.GetInfo(ctx, objName)
		if err != nil || info.Size == 0 || int64(info.Size) > c.max {
			return
		}
		key := name + "." + info.NUID
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.closed || c.entries[name] != nil || c.fills[key] != nil {
			return
		}
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f := &fill{done: make(chan struct{}), cancel: cancel, progress: make(chan struct{})}
		c.fills[key] = f
		c.running.Add(1)
		go c.run(fctx, b, f, key, objName, name, info, ck)
	}()
}

// fillingLocked reports whether a version of pack name is being downloaded. c.mu must be
// held.
func (c *cache) fillingLocked(name string) bool {
	for key := range c.fills {
		if n, _, ok := strings.Cut(key, "."); ok && n == name {
			return true
		}
	}
	return false
}
