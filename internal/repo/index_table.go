package repo

import (
	"bytes"
	"encoding/binary"
	"iter"
	"slices"
	"sort"
)

// blobTable is the in-memory index's map from blob to where it is, kept compact: about 46
// bytes a blob where a Go map took over 100 (issue 14). Blobs added lately sit in a small
// map, the tail; when it fills up, its blobs are sorted into a run, and a run at least half
// the size of the one before it is merged into it, so that there are few runs (about
// log₂ of blobs / tailMax) and most blobs sit in the first, biggest one.
//
// A run is a sorted array of fixed-size records and a table of where each 16-bit id
// prefix starts in it (ids are keyed hashes, so prefixes are even). The record leaves the
// prefix out: 30 bytes of id, then the pack (its top bit set for a tree blob), offset,
// length and raw length, 4 bytes each. A lookup reads the prefix's range of the table and
// binary-searches it, in each run and the tail.
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

const (
	prefixBuckets = 1 << 16
	sfxLen        = 32 - 2
	recSize       = sfxLen + 16
	treeFlag      = 1 << 31 // in a record's pack field: the blob is a tree
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

func prefixOf(id *ID) int { return int(id[0])<<8 | int(id[1]) }

// blobRun is a sorted run: the records of prefix p are recs[start[p]:start[p+1]].
type blobRun struct {
	start []uint32 // prefixBuckets+1
	recs  []blobRec
}

// find returns the position of k's record in the run, if it has one.
func (r *blobRun) find(k blobKey) (int, bool) {
	p := prefixOf(&k.id)
	lo, hi := int(r.start[p]), int(r.start[p+1])
	var key blobRec
	copy(key[:], k.id[2:])
	key.set(k.t == TreeBlob, indexEntry{})
	i, ok := sort.Find(hi-lo, func(j int) int { return cmpRec(&key, &r.recs[lo+j]) })
	return lo + i, ok
}

// all yields the run's blobs in order.
func (r *blobRun) all(yield func(blobKey, indexEntry) bool) bool {
	var k blobKey
	for p := 0; p < prefixBuckets; p++ {
		k.id[0], k.id[1] = byte(p>>8), byte(p)
		for i := r.start[p]; i < r.start[p+1]; i++ {
			rec := &r.recs[i]
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
	if e, ok := t.tail[k]; ok {
		return e, true
	}
	for _, r := range t.runs {
		if i, ok := r.find(k); ok {
			return r.recs[i].entry(), true
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
			r.recs[i].set(k.t == TreeBlob, e)
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
	slices.SortStableFunc(fresh, func(a, b tableEntry) int { return cmpKey(&a.k, &b.k) })
	out := fresh[:0]
	for _, f := range fresh {
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
	r := &blobRun{start: make([]uint32, prefixBuckets+1), recs: make([]blobRec, len(sorted))}
	for i := range sorted {
		f := &sorted[i]
		r.start[prefixOf(&f.k.id)+1]++
		copy(r.recs[i][:], f.k.id[2:])
		r.recs[i].set(f.k.t == TreeBlob, f.e)
	}
	for p := 1; p <= prefixBuckets; p++ {
		r.start[p] += r.start[p-1]
	}
	t.runs = append(t.runs, r)
	for n := len(t.runs); n >= 2 && 2*len(t.runs[n-1].recs) >= len(t.runs[n-2].recs); n = len(t.runs) {
		t.runs[n-2] = mergeRuns(t.runs[n-2], t.runs[n-1])
		t.runs[n-1] = nil
		t.runs = t.runs[:n-1]
	}
}

// mergeRuns returns the run of the records of a and b, which have no blob in common.
func mergeRuns(a, b *blobRun) *blobRun {
	out := &blobRun{start: make([]uint32, prefixBuckets+1), recs: make([]blobRec, len(a.recs)+len(b.recs))}
	o := 0
	for p := 0; p < prefixBuckets; p++ {
		i, ie := int(a.start[p]), int(a.start[p+1])
		j, je := int(b.start[p]), int(b.start[p+1])
		for i < ie && j < je {
			if cmpRec(&a.recs[i], &b.recs[j]) <= 0 {
				out.recs[o] = a.recs[i]
				i++
			} else {
				out.recs[o] = b.recs[j]
				j++
			}
			o++
		}
		o += copy(out.recs[o:], a.recs[i:ie])
		o += copy(out.recs[o:], b.recs[j:je])
		out.start[p+1] = uint32(o)
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
