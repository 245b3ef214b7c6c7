package repo

import (
	"context"
	"fmt"
	"slices"
)

// repackRange is the most bytes of a pack that repack reads at once (the blobs it copies
// and the gaps between them): LoadBlobs reads a group of blobs with one backend Load.
// A variable only so that tests can make it small.
var repackRange = 4 << 20

// repackFlushEvery is how many blobs repack copies between two flushes: until a flush
// indexes them, the write path holds every copied blob (its claim and its index entry,
// about 80 bytes), so a repack of millions of blobs flushes as it goes. Each flush ends
// the open pack early, so it is rare. A variable only so that tests can make it small.
var repackFlushEvery = 1 << 18

// repackBlob is a live blob of a pack being repacked, and where it is.
type repackBlob struct {
	k blobKey
	e indexEntry
}

// repack copies the live blobs of packs into new packs. The packs are dead already, so
// SaveBlob stores new copies instead of finding the old ones.
//
// The blobs are read pack by pack in offset order, in groups of at most repackRange bytes
// of pack, each with one backend Load (LoadBlobs), by a loader goroutine one group ahead
// of the saves: reading, authenticating, decompressing and hashing a group overlaps
// compressing, encrypting and writing the one before. Every blob is checked as LoadBlob
// checks it; one that fails stops the repack, as before.
func (g *gcRun) repack(ctx context.Context, packs []ID) error {
	if len(packs) == 0 {
		return nil
	}
	r := g.r
	x := r.idx
	var blobs []repackBlob
	x.mu.RLock()
	in := make([]bool, len(x.packs))
	for _, id := range packs {
		if pi, ok := x.packIdx[id]; ok {
			in[pi] = true
		}
	}
	for k, e := range x.blobs.all() {
		if in[e.pack] && g.used.has(k) {
			blobs = append(blobs, repackBlob{k: k, e: e})
		}
	}
	x.mu.RUnlock()
	slices.SortFunc(blobs, func(a, b repackBlob) int {
		if a.e.pack != b.e.pack {
			return int(a.e.pack) - int(b.e.pack)
		}
		return int(a.e.offset) - int(b.e.offset)
	})
	// Only the failures of this repack's own writes count (see Writer).
	r.mu.Lock()
	since := r.failures
	r.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	groups := make(chan []loadedBlob, 1)
	loadErr := make(chan error, 1)
	go func() {
		defer close(groups)
		loadErr <- g.loadRepackGroups(ctx, blobs, groups)
	}()
	done := 0
	var err error
	for group := range groups {
		if err != nil {
			continue // drain, so that the loader ends
		}
		for _, b := range group {
			if err = r.failedSince(since); err != nil {
				break
			}
			var added bool
			var stored int
			added, stored, err = r.SaveBlob(ctx, b.k.t, b.k.id, b.data)
			if err != nil {
				break
			}
			if added {
				g.report.BytesRepacked += int64(stored)
			}
			done++
			g.progress.report("repack", int64(done), int64(len(blobs)))
			if done%repackFlushEvery == 0 {
				if err = r.flush(ctx, since); err != nil {
					break
				}
			}
		}
		if err != nil {
			cancel()
		}
	}
	if lerr := <-loadErr; err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("gc: repack: %w", err)
	}
	if err := r.flush(ctx, since); err != nil {
		return fmt.Errorf("gc: repack: %w", err)
	}
	return nil
}

// loadedBlob is a blob read for repack: its key and content.
type loadedBlob struct {
	k    blobKey
	data []byte
}

// loadRepackGroups reads blobs (sorted by pack and offset) in groups of one type, one pack
// and at most repackRange bytes, and sends each group's contents to out.
func (g *gcRun) loadRepackGroups(ctx context.Context, blobs []repackBlob, out chan<- []loadedBlob) error {
	var ids []ID
	for len(blobs) > 0 {
		n := 1
		first := blobs[0]
		for n < len(blobs) {
			b := blobs[n]
			if b.e.pack != first.e.pack || b.k.t != first.k.t || int64(b.e.offset)+int64(b.e.length)-int64(first.e.offset) > int64(repackRange) {
				break
			}
			n++
		}
		ids = ids[:0]
		for _, b := range blobs[:n] {
			ids = append(ids, b.k.id)
		}
		group := make([]loadedBlob, n)
		var firstErr error
		err := g.r.LoadBlobs(ctx, first.k.t, ids, nil, func(i int, data []byte, err error) {
			if err != nil && firstErr == nil {
				firstErr = err
			}
			group[i] = loadedBlob{k: blobs[i].k, data: data}
		})
		if err != nil && ctx.Err() == nil {
			// Not one Load: the index moved a blob meanwhile (a reload found a live
			// copy elsewhere). Read each where the index has it now.
			firstErr = nil
			for i, b := range blobs[:n] {
				data, lerr := g.r.LoadBlob(ctx, b.k.t, b.k.id, nil)
				if lerr != nil {
					return lerr
				}
				group[i] = loadedBlob{k: b.k, data: data}
			}
		} else if err != nil {
			return err
		}
		if firstErr != nil {
			return firstErr
		}
		select {
		case out <- group:
		case <-ctx.Done():
			return ctx.Err()
		}
		blobs = blobs[n:]
	}
	return nil
}
