package restorer

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"sort"
	"sync"

	"github.com/brr-dev/brr/internal/repo"
)

// A restore of many small files needs many small blobs, and reading each with its own
// backend Load costs a round trip per file on a remote backend: about 15,000 ranged
// GETs for the Go source tree, one after the other in each writer. The writers ask for
// the blobs one by one, in the order their tasks are queued (files ordered by where
// their first blob is, see groupFiles), so consecutive asks are mostly for neighbours
// in one pack.
// The loader knows that order from the start (a position is the place of one blob in
// it). When a writer asks for a blob the loader does not hold, the loader looks ahead in
// the order for the blobs of the same pack that follow it and reads them all with one
// Load of the range that covers them (repo.LoadBlobs): blobs less than coalesceGap
// apart, at most maxRangeRead bytes in all. It keeps each blob it read for the writers
// that will ask for it, until the last of them has, and a writer that asks for a blob
// being read waits for that read instead of starting another.
//
// It also reads ahead, so that the writers do not wait for each round trip: while
// fewer than readAhead of its reads are running and the blobs it holds leave room for
// an eighth of its bound below half of it, each ask starts a read, in the background,
// of the first blobs in the order that no read covers yet.
//
// What it holds is bounded: at most limit bytes (cacheLimit, 8 MiB) of buffers for
// blobs read or being read, each a power of two that fits its blob. A read that would
// take more reads fewer blobs, down to the one asked for, which the writer then reads
// alone as before. Beyond that bound, each writer and each read ahead holds at most the
// range it is reading (maxRangeRead bytes), and each writer the blob it is writing. A
// blob's buffer is kept for the next reads once its last writer is done with it (free
// buffers and those of blobs held together within the bound), so that a restore does not make garbage at the rate
// it reads: the worker's collector runs with a low GOGC, and fresh buffers for every
// blob cost a file:// restore a tenth of its time in collections and clearing.
//
// A blob the coalesced read could not give (the range failed to load, or the blob
// failed its check) is read again alone, with repo.LoadBlob, by each writer that asks
// for it, and a blob read alone that fails its check is read once more: a blob damaged
// on its way (one bad read) is read right the second time, one damaged in storage fails
// with LoadBlob's error, which wraps repo.ErrDamaged and names the pack and the blob,
// and fails only the files that need it. No blob is read more than twice for one ask,
// and every blob the second read gave is reported to reread, with the error of the
// first, so that a damaged read does not go unnoticed (Restorer.Rereads).
type loader struct {
	r      *repo.Repository
	reread func(id repo.ID, first error) // a blob read right the second time
	writes []*fileWrite                  // in the order their tasks are queued; w.seq is w's index
	limit  int64
	wg     sync.WaitGroup // the reads ahead

	mu    sync.Mutex
	state []uint8 // of each position (fileWrite.base + content index): pending, counted or asked
	slots map[repo.ID]*slot
	// failed are the blobs a read could not give, and why: a writer reads them alone,
	// once, and reports a success to reread.
	failed map[repo.ID]error
	bytes  int64 // of the buffers of the slots in slots, read or being read
	peak   int64 // the most bytes ever
	// cursor is where the reads ahead look for the next pending position: before it,
	// every position was asked for, is covered by a read, or was left out of one (and
	// is read when asked for).
	cursor  int
	reading int // reads ahead running
	// free holds the buffers of blobs no writer needs any more, for the next reads:
	// free[c] holds buffers of 1<<c bytes, freeBytes of them in all; bytes + freeBytes
	// stay within limit.
	free      [33][][]byte
	freeBytes int64
	// mem is the bytes of the buffers getBuf made that are not the collector's yet (free,
	// or holding a blob), peakAll the most ever.
	mem, peakAll int64
	// packs are the packs of the positions in the order they are first needed, packAt
	// the place of each in it, and hinted how many of them were named to the backend
	// (prefetch).
	packs  []repo.ID
	packAt map[repo.ID]int
	hinted int
}

// The state of a position: no read covers it yet; a slot counts it in want; its writer
// asked for it, or will not.
const (
	pending uint8 = iota
	counted
	asked
)

const (
	// coalesceGap is the gap between two needed blobs of a pack from which they are
	// read apart: below it, reading the bytes between costs less than another request.
	coalesceGap = 256 << 10
	// maxRangeRead bounds the bytes of one coalesced read, gaps included. Each writer
	// and each read ahead holds a range being read (in a pooled buffer, repo.loadRange),
	// so this times six is a restore's other large item: at 4 MiB, the ranges (22 MiB)
	// and the loader's 16 MiB were most of what took the worker's peak RSS from the
	// backup's ~113 MiB to ~137 MiB in bench-backup; at 2 MiB and 8 MiB, the restore
	// stays within the backup's peak (docs/performance.md, "Session 21: restore"). The
	// bench corpus's restore then makes ~2× as many Loads, each still large.
	maxRangeRead = 2 << 20
	// cacheLimit is the bound on the bytes of blobs the loader holds. It is what a
	// restore adds to the worker's peak (bench-backup: 64 MiB took the worker from 140
	// MiB after the backups to 190 MiB in the restore); a few ranges of a pack are
	// enough to keep the writers busy.
	cacheLimit = 8 << 20
	// readAhead is how many reads ahead of the writers may run at once.
	readAhead = 2
	// lookahead bounds the positions a read looks through for neighbours; maxStray ends
	// the look once that many positions in a row are of no use to the read.
	lookahead = 4096
	maxStray  = 64
	// prefetchPacks is how many packs after the one a read is in are named to the
	// backend ahead of their reads (repo.Repository.PrefetchPack): the nats backend
	// downloads them into its cache, the file backend has the kernel read them ahead,
	// while the writers write the blobs of this one. Each is a pack of up to 16 MiB
	// read early into the backend's cache or the page cache, not into the loader's
	// buffers: the loader's bound is unchanged.
	prefetchPacks = 2
)

// slot is a blob the loader read, or is reading, for the asks still to come.
type slot struct {
	done chan struct{} // closed when data is set, or the read could not give it
	data []byte        // nil when the read could not give the blob
	err  error         // why not, when data is nil
	buf  []byte        // getBuf's buffer for data, given back when the read fails
	want int           // counted positions not asked for yet
	// refs counts the writers that took the slot and are not done with it, and the
	// loader while the slot is in slots: at 0, data goes back to the free buffers.
	refs int
	size int64 // of data's buffer
}

// newLoader returns a loader for the blobs of writes, in that order, and numbers the
// writes' positions.
func newLoader(r *repo.Repository, writes []*fileWrite, limit int64, reread func(repo.ID, error)) *loader {
	n := 0
	packAt := make(map[repo.ID]int)
	var packs []repo.ID
	for i, w := range writes {
		w.seq, w.base = i, n
		n += len(w.content)
		for _, id := range w.content {
			if pb, ok := r.LookupBlob(repo.DataBlob, id); ok {
				if _, seen := packAt[pb.Pack]; !seen {
					packAt[pb.Pack] = len(packs)
					packs = append(packs, pb.Pack)
				}
			}
		}
	}
	return &loader{r: r, reread: reread, writes: writes, limit: limit, state: make([]uint8, n), slots: make(map[repo.ID]*slot), failed: make(map[repo.ID]error),
		packs: packs, packAt: packAt}
}

// prefetch names to the backend the packs up to prefetchPacks after pack, which a read
// is about to load, in the order the restore needs them, each once.
func (l *loader) prefetch(ctx context.Context, pack repo.ID) {
	l.mu.Lock()
	k, ok := l.packAt[pack]
	var next []repo.ID
	if ok && l.hinted <= k+prefetchPacks {
		end := min(k+prefetchPacks+1, len(l.packs))
		next = l.packs[l.hinted:end]
		l.hinted = end
	}
	l.mu.Unlock()
	for _, p := range next {
		l.r.PrefetchPack(ctx, p)
	}
}

// blob returns content[i] of w. With s nil, the data is in buf (reused when it has
// room); otherwise it is s's, which other writers may share: the caller must not change
// it, and calls release(s) once done with it.
func (l *loader) blob(ctx context.Context, w *fileWrite, i int, buf []byte) (data []byte, s *slot, err error) {
	id := w.content[i]
	pos := w.base + i
	l.mu.Lock()
	wasCounted := l.state[pos] == counted
	l.state[pos] = asked
	s = l.slots[id]
	var members []*member
	first := l.failed[id] // why a read of the blob did not give it
	if s != nil {
		s.refs++
		if wasCounted {
			l.releaseLocked(id, s)
		}
	} else if first == nil {
		members = l.planLocked(w, i, l.limit-l.bytes, false)
		if len(members) > 0 && members[0].slot != nil {
			members[0].slot.refs++ // other positions need it too: this writer takes it
		}
	}
	l.readAheadLocked(ctx, pos)
	l.mu.Unlock()

	switch {
	case s != nil:
		select {
		case <-s.done:
		case <-ctx.Done():
			l.release(s)
			return nil, nil, ctx.Err()
		}
		if s.data != nil {
			return s.data, s, nil
		}
		first = s.err
		l.release(s)
	case members != nil:
		data, err := l.read(ctx, members, buf)
		if data != nil {
			return data, members[0].slot, nil
		}
		first = err
		l.release(members[0].slot)
	}
	if err := ctx.Err(); err != nil {
		return nil, nil, err
	}
	if pb, ok := l.r.LookupBlob(repo.DataBlob, id); ok {
		l.prefetch(ctx, pb.Pack)
	}
	data, err = l.r.LoadBlob(ctx, repo.DataBlob, id, buf[:0])
	if first == nil && errors.Is(err, repo.ErrDamaged) && ctx.Err() == nil {
		first = err
		data, err = l.r.LoadBlob(ctx, repo.DataBlob, id, buf[:0]) // damaged on its way?
	}
	if err == nil && first != nil && l.reread != nil {
		l.reread(id, first)
	}
	return data, nil, err
}

// release says that a writer is done with the data of s that blob returned; nil is
// no slot.
func (l *loader) release(s *slot) {
	if s == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	s.refs--
	l.recycleLocked(s)
}

// recycleLocked puts the buffer of s back with the free buffers once nothing refers to s. l.mu
// must be held.
func (l *loader) recycleLocked(s *slot) {
	if s.refs == 0 && s.data != nil {
		l.putBuf(s.data)
		s.data = nil
	}
}

// member is a blob of a coalesced read; slot is nil for the blob a writer asked for
// when no other position needs it.
type member struct {
	id        repo.ID
	pb        repo.PackedBlob
	slot      *slot
	positions []int // pending positions that need it, counted once the read is planned
}

// planLocked plans the read of content[i] of w, which the loader does not hold, with the
// blobs of the same pack that follow it in the order, as many as budget bytes allow,
// and makes their slots. For a read ahead, the position of content[i] itself counts
// (no writer has asked for it yet) and nil means that the blob does not fit. For a
// writer's read, nil means the blob is best read alone. l.mu must be held.
func (l *loader) planLocked(w *fileWrite, i int, budget int64, ahead bool) []*member {
	x := &member{id: w.content[i]}
	var ok bool
	if x.pb, ok = l.r.LookupBlob(repo.DataBlob, x.id); !ok {
		return nil // LoadBlob says why
	}
	if ahead {
		if bufSize(x.pb.RawLength) > budget {
			return nil
		}
		x.positions = []int{w.base + i}
	}
	start := int64(x.pb.Offset)
	byID := map[repo.ID]*member{x.id: x}
	var found []*member
	scanned, stray := 0, 0
	// Look through the positions after (w, i), in order.
	for s, k := w.seq, i+1; s < len(l.writes) && scanned < lookahead && stray < maxStray; s, k = s+1, 0 {
		ww := l.writes[s]
		for ; k < len(ww.content) && scanned < lookahead && stray < maxStray; k++ {
			scanned++
			pos := ww.base + k
			if l.state[pos] != pending {
				continue
			}
			id := ww.content[k]
			if m := byID[id]; m != nil {
				m.positions = append(m.positions, pos)
				continue
			}
			if sl := l.slots[id]; sl != nil {
				// Read or being read: keep it for this ask too.
				sl.want++
				l.state[pos] = counted
				continue
			}
			pb, ok := l.r.LookupBlob(repo.DataBlob, id)
			if !ok || pb.Pack != x.pb.Pack || int64(pb.Offset) < start || int64(pb.Offset)+int64(pb.Length)-start > maxRangeRead {
				stray++
				continue
			}
			stray = 0
			m := &member{id: id, pb: pb, positions: []int{pos}}
			byID[id] = m
			found = append(found, m)
		}
	}
	slices.SortFunc(found, func(a, b *member) int { return cmp.Compare(a.pb.Offset, b.pb.Offset) })

	if len(x.positions) > 0 {
		if bufSize(x.pb.RawLength) <= budget {
			budget -= bufSize(x.pb.RawLength)
			l.addSlotLocked(x)
		} else if ahead {
			return nil
		}
	}
	members := []*member{x}
	end := start + int64(x.pb.Length)
	for _, m := range found {
		off := int64(m.pb.Offset)
		if off < end {
			continue // overlaps the one before: only a damaged index says so
		}
		if off-end >= coalesceGap || bufSize(m.pb.RawLength) > budget {
			break
		}
		budget -= bufSize(m.pb.RawLength)
		l.addSlotLocked(m)
		members = append(members, m)
		end = off + int64(m.pb.Length)
	}
	if len(members) == 1 && x.slot == nil {
		return nil
	}
	return members
}

// readAheadLocked starts reads of the first positions after pos that no read covers,
// while fewer than readAhead run and the blobs held leave an eighth of the bound free
// below half of it: the other half is for the writers' own reads. l.mu must be held.
func (l *loader) readAheadLocked(ctx context.Context, pos int) {
	l.cursor = max(l.cursor, pos+1)
	for l.reading < readAhead && ctx.Err() == nil {
		for l.cursor < len(l.state) && l.state[l.cursor] != pending {
			l.cursor++
		}
		// A read ahead waits for room for a good many blobs, rather than read a few
		// each time a writer frees some.
		budget := l.limit/2 - l.bytes
		if l.cursor == len(l.state) || budget < max(l.limit/8, 1) {
			return
		}
		s := sort.Search(len(l.writes), func(s int) bool {
			w := l.writes[s]
			return w.base+len(w.content) > l.cursor
		})
		w := l.writes[s]
		members := l.planLocked(w, l.cursor-w.base, budget, true)
		if members == nil {
			if _, ok := l.r.LookupBlob(repo.DataBlob, w.content[l.cursor-w.base]); !ok {
				l.cursor++ // a writer's LoadBlob will say what is wrong with it
				continue
			}
			return // it does not fit yet
		}
		l.reading++
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			_, _ = l.read(ctx, members, nil)
			l.mu.Lock()
			l.reading--
			l.mu.Unlock()
		}()
	}
}

// addSlotLocked makes m's slot, counting its positions. l.mu must be held.
func (l *loader) addSlotLocked(m *member) {
	m.slot = &slot{done: make(chan struct{}), want: len(m.positions), refs: 1, size: bufSize(m.pb.RawLength)}
	for _, pos := range m.positions {
		l.state[pos] = counted
	}
	l.slots[m.id] = m.slot
	l.bytes += m.slot.size
	l.peak = max(l.peak, l.bytes)
}

// releaseLocked counts one ask of s done, and drops s after its last. l.mu must be held.
func (l *loader) releaseLocked(id repo.ID, s *slot) {
	s.want--
	if s.want <= 0 {
		l.dropLocked(id, s)
	}
}

// dropLocked takes s out of slots; its data goes back to the free buffers once the writers
// that took it are done. l.mu must be held.
func (l *loader) dropLocked(id repo.ID, s *slot) {
	if l.slots[id] == s {
		delete(l.slots, id)
		l.bytes -= s.size
		s.refs--
		l.recycleLocked(s)
	}
}

// read reads members with one Load, fills their slots and returns the first member's
// content, or nil and why the read could not give it. A member without a slot (the
// blob a writer asked for) is decoded into own.
func (l *loader) read(ctx context.Context, members []*member, own []byte) ([]byte, error) {
	ids := make([]repo.ID, len(members))
	for i, m := range members {
		ids[i] = m.id
	}
	l.prefetch(ctx, members[0].pb.Pack)
	var first []byte
	var firstErr error
	err := l.r.LoadBlobs(ctx, repo.DataBlob, ids, func(i int) []byte {
		if s := members[i].slot; s != nil {
			s.buf = l.getBuf(s.size)
			return s.buf
		}
		return own
	}, func(i int, data []byte, err error) {
		if i == 0 {
			first, firstErr = data, err
		}
		if s := members[i].slot; s != nil {
			l.fill(ids[i], s, data, err)
		}
	})
	if err != nil {
		for i, m := range members {
			if m.slot != nil {
				l.fill(ids[i], m.slot, nil, err)
			}
		}
		return nil, err
	}
	return first, firstErr
}

// fill gives s its data, or nil and err when the read could not give it: s is dropped
// and each of its writers reads the blob alone.
func (l *loader) fill(id repo.ID, s *slot, data []byte, err error) {
	l.mu.Lock()
	s.data, s.err = data, err
	if data == nil && err != nil {
		l.failed[id] = err
	}
	if data == nil && s.buf != nil {
		l.putBuf(s.buf)
	}
	s.buf = nil
	if data == nil {
		l.dropLocked(id, s)
	}
	l.recycleLocked(s) // dropped before it was read, and taken by no writer
	l.mu.Unlock()
	close(s.done)
}

// skip says that content[i:j] of w will not be asked for (its files failed).
func (l *loader) skip(w *fileWrite, i, j int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for k := i; k < j; k++ {
		pos := w.base + k
		if l.state[pos] == counted {
			if s := l.slots[w.content[k]]; s != nil {
				l.releaseLocked(w.content[k], s)
			}
		}
		l.state[pos] = asked
	}
}

// wait waits for the reads ahead to end; they end soon once ctx is done.
func (l *loader) wait() { l.wg.Wait() }
