package repo

import (
	"bytes"
	"encoding/binary"
	"iter"
	"slices"
)

// blobTable is the in-memory index's map from blob to where it is, kept compact: about 46
// bytes a blob where a Go map took over 100 (issue 14). Blobs added lately sit in a small
// map, the tail; when it fills up, its blobs are sorted into a run, and a run at least half
// the size of the one before it is merged into it, so that there are few runs (about
// log₂ of blobs / tailMax) and most blobs sit in the first, biggest one.
//
// A run is a sorted array of fixed-size records and a table of where each id prefix of 16
// bits or more (more in bigger runs, about 32 blobs a prefix at most) starts in it: ids
// are keyed hashes, so prefixes are even. The record leaves the first 2 bytes of the id
// out, as the table has them: 30 bytes of id, then the pack (its top bit set for a tree
// blob), offset, length and raw length, 4 bytes each. A lookup reads the prefix's range of
// the table and binary-searches it, in each run and the tail.
//
// A blob is in one place only: the tail or one run. Records are sorted by id, then type;
// their entries (not their keys) may be changed in place.
type blobTable struct {
	tail map[blobKey]indexEntry
	runs []*blobRun
	n    int // blobs in all
}

// tailMax is how many blobs the tail holds before they are sorted into a run. A variable
// only so that tests can make it small.
var tailMax = 1 << 15

// maxBits and prefixShare set the prefixes of a run of n blobs: 16 bits, more while
// there are over prefixShare blobs a prefix, at most maxBits. Variables only so that
// tests can change them.
var maxBits, prefixShare uint = 24, 32

const (
	minBits  = 16 // the 2 bytes records leave out
	sfxLen   = 32 - 2
	recSize  = sfxLen + 16
	treeFlag = 1 << 31 // in a record's pack field: the blob is a tree
	// maxPacks is how many packs an index can number: the pack field's other 31 bits.
	maxPacks = treeFlag
)

// blobRec is one blob of a run: id without its 2-byte prefix, pack|treeFlag, offset,
// length, raw length.
type blobRec [recSize]byte

func (r *blobRec) entry() indexEntry {
	return indexEntry{
		pack:      binary.LittleEndian.Uint32(r[sfxLen:]) &^ treeFlag,
		offset:    binary.LittleEndian.Uint32(r[sfxLen+4:]),
		length:    binary.LittleEndian.Uint32(r[sfxLen+8:]),
		rawLength: binary.LittleEndian.Uint32(r[sfxLen+12:]),
	}
}

func (r *blobRec) tree() bool { return binary.LittleEndian.Uint32(r[sfxLen:])&treeFlag != 0 }

func (r *blobRec) set(tree bool, e indexEntry) {
	p := e.pack
	if tree {
		p |= treeFlag
	}
	binary.LittleEndian.PutUint32(r[sfxLen:], p)
	binary.LittleEndian.PutUint32(r[sfxLen+4:], e.offset)
	binary.LittleEndian.PutUint32(r[sfxLen+8:], e.length)
	binary.LittleEndian.PutUint32(r[sfxLen+12:], e.rawLength)
}

// cmpRec orders two records of the same prefix: by the rest of the id, then data before
// tree.
func cmpRec(a, b *blobRec) int {
	if x, y := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(b[:8]); x != y {
		if x < y {
			return -1
		}
		return 1
	}
	if c := bytes.Compare(a[8:sfxLen], b[8:sfxLen]); c != 0 {
		return c
	}
	switch at, bt := a.tree(), b.tree(); {
	case at == bt:
		return 0
	case bt:
		return -1
	}
	return 1
}

// blobRun is a sorted run: the records of the ids whose first bits bits are p are
// records start[p] to start[p+1]. The records are kept in chunks of chunkLen, so that a
// merge can give an input's chunks back as it has read them and take them for its output:
// merging runs of n blobs in all takes n records of memory and a few chunks, not 2n.
type blobRun struct {
	bits   uint
	start  []uint32 // 1<<bits + 1
	n      int
	chunks [][]blobRec
}

// chunkBits sets chunkLen, the records of a run's chunk: 4,096 records are 184 KiB.
const (
	chunkBits = 12
	chunkLen  = 1 << chunkBits
	chunkMask = chunkLen - 1
)

// rec returns record i of the run.
func (r *blobRun) rec(i int) *blobRec { return &r.chunks[i>>chunkBits][i&chunkMask] }

// chunkPool holds chunks given back by merges, for the next ones to take.
type chunkPool struct{ free [][]blobRec }

func (p *chunkPool) get() []blobRec {
	if n := len(p.free); n > 0 {
		c := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return c
	}
	return make([]blobRec, chunkLen)
}

func (p *chunkPool) put(c []blobRec) { p.free = append(p.free, c) }

// bitsFor returns how many bits of prefix a run of n blobs has.
func bitsFor(n int) uint {
	b := uint(minBits)
	for b < maxBits && uint(n) > prefixShare<<b {
		b++
	}
	return b
}

// newRun returns a run of n records with no chunks yet (see grow).
func newRun(n int) *blobRun {
	b := bitsFor(n)
	return &blobRun{bits: b, start: make([]uint32, 1<<b+1), n: n}
}

// grow makes sure the run has chunks for its records up to i, taking them from pool when
// it is not nil.
func (r *blobRun) grow(i int, pool *chunkPool) {
	for len(r.chunks) <= i>>chunkBits {
		if pool != nil {
			r.chunks = append(r.chunks, pool.get())
		} else {
			r.chunks = append(r.chunks, make([]blobRec, min(chunkLen, r.n-len(r.chunks)*chunkLen)))
		}
	}
}

// prefix returns the first r.bits bits of id.
func (r *blobRun) prefix(id *ID) int { return int(binary.BigEndian.Uint32(id[:4]) >> (32 - r.bits)) }

// recPrefix returns the first r.bits bits of the id of record rec, whose first 16 are q.
func (r *blobRun) recPrefix(q int, rec *blobRec) int {
	return int((uint32(q)<<16 | uint32(rec[0])<<8 | uint32(rec[1])) >> (32 - r.bits))
}

// span returns where the records of the ids whose first 16 bits are q are.
func (r *blobRun) span(q int) (int, int) {
	sh := r.bits - minBits
	return int(r.start[q<<sh]), int(r.start[(q+1)<<sh])
}

// countStarts turns start[p+1] = the records of prefix p into start[p] = where they begin.
func (r *blobRun) countStarts() {
	for p := 1; p < len(r.start); p++ {
		r.start[p] += r.start[p-1]
	}
}

// find returns the position of k's record in the run, if it has one.
func (r *blobRun) find(k blobKey) (int, bool) {
	p := r.prefix(&k.id)
	lo, hi := int(r.start[p]), int(r.start[p+1])
	// A binary search, as sort.Find with cmpRec would do, but with the key's first 8
	// bytes after the prefix read once: it runs for every blob an index file adds.
	k0 := binary.BigEndian.Uint64(k.id[2:10])
	tree := k.t == TreeBlob
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		rec := r.rec(m)
		c := 0
		switch x := binary.BigEndian.Uint64(rec[:8]); {
		case k0 < x:
			c = -1
		case k0 > x:
			c = 1
		default:
			if c = bytes.Compare(k.id[10:], rec[8:sfxLen]); c == 0 {
				switch rt := rec.tree(); {
				case tree == rt:
					return m, true
				case rt:
					c = -1
				default:
					c = 1
				}
			}
		}
		if c < 0 {
			hi = m
		} else {
			lo = m + 1
		}
	}
	return lo, false
}

// all yields the run's blobs in order.
func (r *blobRun) all(yield func(blobKey, indexEntry) bool) bool {
	var k blobKey
	for q := 0; q < 1<<minBits; q++ {
		k.id[0], k.id[1] = byte(q>>8), byte(q)
		lo, hi := r.span(q)
		for i := lo; i < hi; i++ {
			rec := r.rec(i)
			copy(k.id[2:], rec[:sfxLen])
			k.t = DataBlob
			if rec.tree() {
				k.t = TreeBlob
			}
			if !yield(k, rec.entry()) {
				return false
			}
		}
	}
	return true
}

func (t *blobTable) len() int { return t.n }

func (t *blobTable) get(k blobKey) (indexEntry, bool) {
	if len(t.tail) > 0 {
		if e, ok := t.tail[k]; ok {
			return e, true
		}
	}
	for _, r := range t.runs {
		if i, ok := r.find(k); ok {
			return r.rec(i).entry(), true
		}
	}
	return indexEntry{}, false
}

// put sets where blob k is, in place when the table has it already.
func (t *blobTable) put(k blobKey, e indexEntry) {
	if _, ok := t.tail[k]; ok {
		t.tail[k] = e
		return
	}
	for _, r := range t.runs {
		if i, ok := r.find(k); ok {
			r.rec(i).set(k.t == TreeBlob, e)
			return
		}
	}
	t.insert(k, e)
}

// insert adds blob k, which the table does not have.
func (t *blobTable) insert(k blobKey, e indexEntry) {
	if t.tail == nil {
		t.tail = make(map[blobKey]indexEntry)
	}
	t.tail[k] = e
	t.n++
	if len(t.tail) >= tailMax {
		t.flushTail()
	}
}

// tableEntry is a blob and where it is.
type tableEntry struct {
	k blobKey
	e indexEntry
}

func cmpKey(a, b *blobKey) int {
	if x, y := binary.BigEndian.Uint64(a.id[:8]), binary.BigEndian.Uint64(b.id[:8]); x != y {
		if x < y {
			return -1
		}
		return 1
	}
	if c := bytes.Compare(a.id[8:], b.id[8:]); c != 0 {
		return c
	}
	return int(a.t) - int(b.t)
}

// insertNew adds blobs the table does not have. A blob listed more than once is added
// once: its first entry, replaced by a later one whenever replace(kept, later) says so.
// Many blobs at once become a run of their own; a few go into the tail.
func (t *blobTable) insertNew(fresh []tableEntry, replace func(kept, later indexEntry) bool) {
	if len(t.tail)+len(fresh) < tailMax {
		for _, f := range fresh {
			if kept, ok := t.tail[f.k]; ok {
				if replace(kept, f.e) {
					t.tail[f.k] = f.e
				}
				continue
			}
			t.insert(f.k, f.e)
		}
		return
	}
	// Sorted by key, then by place in fresh: an unstable sort with the place as the
	// tie-break is much faster than a stable one.
	order := make([]uint32, len(fresh))
	for i := range order {
		order[i] = uint32(i)
	}
	slices.SortFunc(order, func(a, b uint32) int {
		if c := cmpKey(&fresh[a].k, &fresh[b].k); c != 0 {
			return c
		}
		return int(a) - int(b)
	})
	out := make([]tableEntry, 0, len(fresh))
	for _, i := range order {
		f := fresh[i]
		if n := len(out); n > 0 && out[n-1].k == f.k {
			if replace(out[n-1].e, f.e) {
				out[n-1].e = f.e
			}
			continue
		}
		out = append(out, f)
	}
	t.n += len(out)
	t.addRun(out)
}

// flushTail sorts the tail into a new run.
func (t *blobTable) flushTail() {
	if len(t.tail) == 0 {
		return
	}
	sorted := make([]tableEntry, 0, len(t.tail))
	for k, e := range t.tail {
		sorted = append(sorted, tableEntry{k, e})
	}
	slices.SortFunc(sorted, func(a, b tableEntry) int { return cmpKey(&a.k, &b.k) })
	t.tail = nil
	t.addRun(sorted)
}

// addRun adds a run of sorted, blobs the table does not have, then merges runs while the
// last one is at least half the size of the one before it.
func (t *blobTable) addRun(sorted []tableEntry) {
	r := newRun(len(sorted))
	r.grow(len(sorted)-1, nil)
	for i := range sorted {
		f := &sorted[i]
		r.start[r.prefix(&f.k.id)+1]++
		rec := r.rec(i)
		copy(rec[:], f.k.id[2:])
		rec.set(f.k.t == TreeBlob, f.e)
	}
	r.countStarts()
	t.runs = append(t.runs, r)
	// Merging the last two runs while the last is at least half the one before it can
	// cascade; the runs it would merge are merged in one go instead, so that the runs in
	// between are never built (a peak of memory, as they are garbage at once).
	first, total := len(t.runs)-1, r.n
	for first > 0 && 2*total >= t.runs[first-1].n {
		first--
		total += t.runs[first].n
	}
	if first < len(t.runs)-1 {
		t.runs[first] = mergeRuns(t.runs[first:]...)
		clear(t.runs[first+1:])
		t.runs = t.runs[:first+1]
	}
}

// mergeRuns returns the run of the records of runs, which have no blob in common. It
// consumes runs: it gives each input chunk back to a pool as soon as it has read it, and
// takes the output's chunks from there, so that the merge takes about the memory of its
// output (and the inputs are left without chunks).
func mergeRuns(runs ...*blobRun) *blobRun {
	n := 0
	for _, r := range runs {
		n += r.n
	}
	out := newRun(n)
	var pool chunkPool
	read := make([]int, len(runs)) // chunks of each input given back
	var scratch []blobRec
	o := 0
	for q := 0; q < 1<<minBits; q++ {
		scratch = scratch[:0]
		if len(runs) == 2 {
			scratch = merge2(scratch, runs[0], runs[1], q)
		} else {
			// A few runs' records of one 16-bit prefix (about n/65,536): sorting them
			// is as quick as a k-way merge and simpler.
			for _, r := range runs {
				i, ie := r.span(q)
				for ; i < ie; i++ {
					scratch = append(scratch, *r.rec(i))
				}
			}
			slices.SortFunc(scratch, func(a, b blobRec) int { return cmpRec(&a, &b) })
		}
		// Give back the input chunks read in full.
		for ri, r := range runs {
			_, ie := r.span(q)
			for ; read[ri] < ie>>chunkBits; read[ri]++ {
				pool.put(r.chunks[read[ri]])
				r.chunks[read[ri]] = nil
			}
		}
		for x := range scratch {
			out.grow(o, &pool)
			rec := out.rec(o)
			*rec = scratch[x]
			out.start[out.recPrefix(q, rec)+1]++
			o++
		}
	}
	for _, r := range runs {
		r.chunks = nil
	}
	// The last chunk may be longer than the records it holds; that is at most one chunk.
	out.countStarts()
	return out
}

// merge2 appends the records of 16-bit prefix q of a and b to out, in order.
func merge2(out []blobRec, a, b *blobRun, q int) []blobRec {
	i, ie := a.span(q)
	j, je := b.span(q)
	for i < ie && j < je {
		if x, y := a.rec(i), b.rec(j); cmpRec(x, y) <= 0 {
			out = append(out, *x)
			i++
		} else {
			out = append(out, *y)
			j++
		}
	}
	for ; i < ie; i++ {
		out = append(out, *a.rec(i))
	}
	for ; j < je; j++ {
		out = append(out, *b.rec(j))
	}
	return out
}

// all yields every blob of the table: the runs', in order, then the tail's.
func (t *blobTable) all() iter.Seq2[blobKey, indexEntry] {
	return func(yield func(blobKey, indexEntry) bool) {
		for _, r := range t.runs {
			if !r.all(yield) {
				return
			}
		}
		for k, e := range t.tail {
			if !yield(k, e) {
				return
			}
		}
	}
}
