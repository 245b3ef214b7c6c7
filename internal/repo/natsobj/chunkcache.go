package natsobj

import (
	"container/list"
	"sync"
)

// chunkKey names chunk i of the object version nuid.
type chunkKey struct {
	nuid string
	i    int
}

// chunkCache keeps chunks that reads used only part of, at most max bytes, the least
// recently used dropped first; a chunk is dropped once as many bytes of it were read
// from the cache as it has.
type chunkCache struct {
	mu      sync.Mutex
	max     int64
	used    int64
	entries map[chunkKey]*cachedChunk
	lru     list.List // of *cachedChunk, most recently used at the front
}

type cachedChunk struct {
	key  chunkKey
	data []byte
	left int64 // bytes not read yet
	elem *list.Element
}

func (c *chunkCache) init(max int64) {
	c.max = max
	c.entries = make(map[chunkKey]*cachedChunk)
}

// read copies bytes [lo, lo+len(dst)) of the chunk into dst when the cache has it.
func (c *chunkCache) read(key chunkKey, lo int64, dst []byte) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil {
		return false
	}
	copy(dst, e.data[lo:])
	if e.left -= int64(len(dst)); e.left <= 0 {
		c.dropLocked(e)
	} else {
		c.lru.MoveToFront(e.elem)
	}
	return true
}

// keep caches data, of which a read used n bytes, for the reads of the rest.
func (c *chunkCache) keep(key chunkKey, data []byte, n int64) {
	size := int64(len(data))
	if size > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.entries[key]; e != nil {
		// Two reads fetched it at once: count this one's bytes as read.
		if e.left -= n; e.left <= 0 {
			c.dropLocked(e)
		}
		return
	}
	for c.used+size > c.max && c.lru.Len() > 0 {
		c.dropLocked(c.lru.Back().Value.(*cachedChunk))
	}
	e := &cachedChunk{key: key, data: data, left: size - n}
	e.elem = c.lru.PushFront(e)
	c.entries[key] = e
	c.used += size
}

func (c *chunkCache) dropLocked(e *cachedChunk) {
	delete(c.entries, e.key)
	c.lru.Remove(e.elem)
	c.used -= int64(len(e.data))
}

// dropObject drops the n chunks of object version nuid.
func (c *chunkCache) dropObject(nuid string, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range n {
		if e := c.entries[chunkKey{nuid, i}]; e != nil {
			c.dropLocked(e)
		}
	}
}

// usedBytes returns the bytes of the chunks cached.
func (c *chunkCache) usedBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}
