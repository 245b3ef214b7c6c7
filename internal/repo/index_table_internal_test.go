package repo

import (
	"math/rand/v2"
	"slices"
	"testing"
)

// TestBlobTableMatchesMap adds, updates and looks up blobs in a blobTable whose tail is
// tiny (so that it has many runs, merged many times) and checks every answer against a
// Go map. Ids share prefixes and differ only in type, as the compact records must tell
// those apart.
func TestBlobTableMatchesMap(t *testing.T) {
	t.Run("16 bits", func(t *testing.T) { testBlobTable(t, 16) })
	t.Run("17 bits", func(t *testing.T) { testBlobTable(t, 17) }) // as in runs of millions of blobs
}

func testBlobTable(t *testing.T, bits uint) {
	old, oldBits, oldShare := tailMax, maxBits, prefixShare
	tailMax, maxBits = 7, bits
	if bits > minBits {
		prefixShare = 0
	}
	t.Cleanup(func() { tailMax, maxBits, prefixShare = old, oldBits, oldShare })

	rng := rand.New(rand.NewPCG(1, 2))
	var tab blobTable
	want := make(map[blobKey]indexEntry)
	var keys []blobKey
	randKey := func() blobKey {
		var k blobKey
		for i := range k.id {
			k.id[i] = byte(rng.Uint32())
		}
		if rng.IntN(4) == 0 { // a few prefixes shared by many blobs
			k.id[0], k.id[1] = 0xab, byte(rng.IntN(2))
		}
		k.t = DataBlob
		if rng.IntN(3) == 0 {
			k.t = TreeBlob
		}
		return k
	}
	randEntry := func() indexEntry {
		return indexEntry{pack: rng.Uint32N(maxPacks), offset: rng.Uint32(), length: rng.Uint32(), rawLength: rng.Uint32()}
	}
	for i := 0; i < 1200; i++ {
		switch {
		case len(keys) > 0 && rng.IntN(5) == 0: // update a known blob in place
			k := keys[rng.IntN(len(keys))]
			e := randEntry()
			tab.put(k, e)
			want[k] = e
		case len(keys) > 0 && rng.IntN(6) == 0: // the same id as another type
			k := keys[rng.IntN(len(keys))]
			k.t = DataBlob + TreeBlob - k.t
			e := randEntry()
			if _, ok := want[k]; !ok {
				keys = append(keys, k)
			}
			tab.put(k, e)
			want[k] = e
		default:
			k := randKey()
			e := randEntry()
			if _, ok := want[k]; !ok {
				keys = append(keys, k)
			}
			tab.put(k, e)
			want[k] = e
		}
		if i%400 == 0 {
			checkTable(t, &tab, want)
		}
	}
	checkTable(t, &tab, want)
	for _, r := range tab.runs {
		if r.bits != bits {
			t.Fatalf("a run has %d bits of prefix, want %d", r.bits, bits)
		}
	}
	if len(tab.runs) < 2 {
		t.Fatalf("the table has %d runs; the test wants several", len(tab.runs))
	}
	for i := 1; i < len(tab.runs); i++ {
		if 2*tab.runs[i].n >= tab.runs[i-1].n {
			t.Errorf("run %d has %d blobs, run %d %d: should have been merged", i, tab.runs[i].n, i-1, tab.runs[i-1].n)
		}
	}
	for i := 0; i < 1000; i++ {
		k := randKey()
		_, ok := tab.get(k)
		_, wok := want[k]
		if ok != wok {
			t.Fatalf("get of an unknown blob %v: found %v, want %v", k, ok, wok)
		}
	}
}

func checkTable(t *testing.T, tab *blobTable, want map[blobKey]indexEntry) {
	t.Helper()
	if tab.len() != len(want) {
		t.Fatalf("len %d, want %d", tab.len(), len(want))
	}
	for k, e := range want {
		got, ok := tab.get(k)
		if !ok || got != e {
			t.Fatalf("get %x/%v = %+v, %v; want %+v", k.id[:4], k.t, got, ok, e)
		}
	}
	seen := make(map[blobKey]bool)
	for k, e := range tab.all() {
		if seen[k] {
			t.Fatalf("all yields %x/%v twice", k.id[:4], k.t)
		}
		seen[k] = true
		if want[k] != e {
			t.Fatalf("all yields %x/%v = %+v, want %+v", k.id[:4], k.t, e, want[k])
		}
	}
	if len(seen) != len(want) {
		t.Fatalf("all yields %d blobs, want %d", len(seen), len(want))
	}
	for _, r := range tab.runs {
		for p := 0; p+1 < len(r.start); p++ {
			for i := r.start[p] + 1; i < r.start[p+1]; i++ {
				if cmpRec(r.rec(int(i-1)), r.rec(int(i))) >= 0 {
					t.Fatalf("run not sorted at prefix %d, record %d", p, i)
				}
			}
		}
	}
}

// TestIndexCanonicalCopyCompact checks the index's canonical-copy rule on blobs that sit
// in runs, not only in the tail: a blob first loaded from a dead pack moves to a live
// copy loaded later, and a live one stays where it is.
func TestIndexCanonicalCopyCompact(t *testing.T) {
	old := tailMax
	tailMax = 2
	t.Cleanup(func() { tailMax = old })

	x := newIndex()
	deadPack, livePack, other := ID{1}, ID{2}, ID{3}
	x.dead[deadPack] = true
	var ids []ID
	for i := 0; i < 50; i++ {
		ids = append(ids, ID{9, byte(i), byte(i * 7)})
	}
	entries := func(off uint32) []packEntry {
		var es []packEntry
		for _, id := range ids {
			es = append(es, packEntry{Type: DataBlob, ID: id, Offset: off, Length: 100, RawLength: 80})
		}
		return es
	}
	x.add(indexPack{ID: deadPack, Size: 1 << 20, Entries: entries(1)})
	if len(x.blobs.runs) == 0 {
		t.Fatal("no run: the test wants blobs in runs")
	}
	for _, id := range ids {
		if x.has(blobKey{id, DataBlob}) || !x.present(blobKey{id, DataBlob}) {
			t.Fatalf("blob %s: in a dead pack, want present and not reusable", id.Short())
		}
	}
	x.add(indexPack{ID: livePack, Size: 1 << 20, Entries: entries(2)})
	x.add(indexPack{ID: other, Size: 1 << 20, Entries: entries(3)})
	for _, id := range ids {
		pb, ok := x.lookup(blobKey{id, DataBlob})
		if !ok || pb.Pack != livePack || pb.Offset != 2 || !x.has(blobKey{id, DataBlob}) {
			t.Fatalf("blob %s: at %+v (%v), want the live pack's first copy", id.Short(), pb, ok)
		}
	}
	if x.blobs.len() != len(ids) {
		t.Fatalf("%d blobs, want %d", x.blobs.len(), len(ids))
	}
}

// TestIndexCanonicalCopyOneBatch loads a dead copy, a live one and another live one of
// the same blobs in one batch, as an index file naming all three packs is loaded, both
// into the tail (a small batch) and straight into a run (a big one): the first live copy
// wins either way.
func TestIndexCanonicalCopyOneBatch(t *testing.T) {
	old := tailMax
	t.Cleanup(func() { tailMax = old })
	for _, tm := range []int{1 << 20, 3} {
		tailMax = tm
		x := newIndex()
		deadPack, livePack, other := ID{1}, ID{2}, ID{3}
		x.dead[deadPack] = true
		var ids []ID
		for i := 0; i < 20; i++ {
			ids = append(ids, ID{7, byte(i), byte(i * 3)})
		}
		pack := func(id ID, off uint32) indexPack {
			p := indexPack{ID: id, Size: 1 << 20}
			for _, b := range ids {
				p.Entries = append(p.Entries, packEntry{Type: TreeBlob, ID: b, Offset: off, Length: 100, RawLength: 80})
			}
			return p
		}
		x.mu.Lock()
		x.record("file", []indexPack{pack(deadPack, 1), pack(livePack, 2), pack(other, 3)}, nil)
		x.mu.Unlock()
		if tm == 3 && len(x.blobs.runs) == 0 {
			t.Fatal("tailMax 3: no run; the test wants the batch in a run")
		}
		if tm > 3 && len(x.blobs.runs) != 0 {
			t.Fatal("big tailMax: a run; the test wants the batch in the tail")
		}
		for _, id := range ids {
			pb, ok := x.lookup(blobKey{id, TreeBlob})
			if !ok || pb.Pack != livePack || pb.Offset != 2 {
				t.Fatalf("tailMax %d: blob %s at %+v (%v), want the live pack's copy", tm, id.Short(), pb, ok)
			}
		}
		if x.blobs.len() != len(ids) {
			t.Fatalf("tailMax %d: %d blobs, want %d", tm, x.blobs.len(), len(ids))
		}
	}
}

// TestBlobTableManyChunks checks a table whose runs span many chunks against a Go map,
// after merges of two runs and of several, and with updates in place.
func TestBlobTableManyChunks(t *testing.T) {
	old := tailMax
	tailMax = 3000
	t.Cleanup(func() { tailMax = old })
	rng := rand.New(rand.NewPCG(3, 4))
	var tab blobTable
	want := make(map[blobKey]indexEntry)
	var keys []blobKey
	for i := 0; i < 20*chunkLen; i++ {
		k := blobKey{t: DataBlob}
		for j := range k.id {
			k.id[j] = byte(rng.Uint32())
		}
		e := indexEntry{pack: rng.Uint32N(maxPacks), offset: uint32(i), length: rng.Uint32(), rawLength: rng.Uint32()}
		tab.put(k, e)
		want[k] = e
		keys = append(keys, k)
		if i%5 == 0 {
			k := keys[rng.IntN(len(keys))]
			e.offset++
			tab.put(k, e)
			want[k] = e
		}
	}
	if tab.runs[0].n < 4*chunkLen {
		t.Fatalf("the first run has %d blobs; the test wants several chunks", tab.runs[0].n)
	}
	checkTable(t, &tab, want)
}

// TestMergeRunsReusesChunks checks that a merge takes its output's chunks from its inputs
// as it reads them, instead of holding inputs and output at once.
func TestMergeRunsReusesChunks(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	var ins []*blobRun
	inputs := make(map[*blobRec]bool)
	for range 3 {
		var sorted []tableEntry
		for range 10 * chunkLen {
			var k blobKey
			for j := range k.id {
				k.id[j] = byte(rng.Uint32())
			}
			sorted = append(sorted, tableEntry{k: k})
		}
		slices.SortFunc(sorted, func(a, b tableEntry) int { return cmpKey(&a.k, &b.k) })
		var tab blobTable
		tab.addRun(sorted)
		r := tab.runs[0]
		for _, c := range r.chunks {
			inputs[&c[0]] = true
		}
		ins = append(ins, r)
	}
	out := mergeRuns(ins...)
	fresh := 0
	for _, c := range out.chunks {
		if !inputs[&c[0]] {
			fresh++
		}
	}
	// One chunk of each input is read before any is given back, plus the last partial one.
	if fresh > len(ins)+1 {
		t.Fatalf("the merge made %d new chunks of %d; want the inputs' chunks reused", fresh, len(out.chunks))
	}
	for q := range 1 << minBits {
		lo, hi := out.span(q)
		for i := lo + 1; i < hi; i++ {
			if cmpRec(out.rec(i-1), out.rec(i)) >= 0 {
				t.Fatalf("merged run not sorted at %d", i)
			}
		}
	}
	if out.n != 30*chunkLen || int(out.start[len(out.start)-1]) != out.n {
		t.Fatalf("merged run of %d blobs, ending at %d; want %d", out.n, out.start[len(out.start)-1], 30*chunkLen)
	}
}
