package repo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/zeebo/blake3"
)

// An index file lists packs and the blobs in each. Every writer writes its own index files
// after its packs are saved, and never changes one, so writers need no coordination; the
// in-memory index is the union of all index files. Only garbage collection removes an
// index file, after writing one that names the packs it keeps (see GC).
//
// Packs that a plan condemns (see GC) are dead: their blobs are still read (a restore
// needs them until they are deleted) but never reused by deduplication, so that no new
// snapshot comes to depend on a pack that is about to be deleted.

// blobKey is a blob's place in the in-memory index.
type blobKey struct {
	id ID
	t  BlobType
}

// indexEntry is the compact in-memory form of where a blob is.
type indexEntry struct {
	pack      uint32 // position in index.packs
	offset    uint32
	length    uint32
	rawLength uint32
}

// indexPack is one pack of an index file.
type indexPack struct {
	ID      ID
	Size    uint64
	Entries []packEntry
}

// index is the in-memory index; safe for concurrent use. A blob named by several packs
// has one entry, its canonical copy: the first one loaded, unless that one is in a dead
// pack and another is not. Its blobs are in a compact table (see blobTable); its packs
// are numbered by their place in packs (fewer than maxPacks, 2³¹).
type index struct {
	mu       sync.RWMutex
	blobs    blobTable
	packs    []ID
	packSize []uint64
	packDead []bool // the pack is condemned by a known plan
	packIdx  map[ID]uint32
	files    map[string]bool // index files loaded (false: damaged)
	damaged  map[string]error
	plans    map[string]*planObject // plans known, by name
	dead     map[ID]bool            // packs the known plans condemn, indexed or not
}

func newIndex() *index {
	return &index{
		packIdx: make(map[ID]uint32),
		files:   make(map[string]bool),
		damaged: make(map[string]error),
		plans:   make(map[string]*planObject),
		dead:    make(map[ID]bool),
	}
}

func (x *index) lookup(k blobKey) (PackedBlob, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.blobs.get(k)
	if !ok {
		return PackedBlob{}, false
	}
	return PackedBlob{Pack: x.packs[e.pack], Type: k.t, Offset: e.offset, Length: e.length, RawLength: e.rawLength}, true
}

// has reports whether a writer may reuse the blob instead of storing it: it is in the
// index and its copy is not in a dead pack.
func (x *index) has(k blobKey) bool {
	x.mu.RLock()
	e, ok := x.blobs.get(k)
	ok = ok && !x.packDead[e.pack]
	x.mu.RUnlock()
	return ok
}

// present reports whether the index has the blob at all, dead pack or not: it can be read.
func (x *index) present(k blobKey) bool {
	x.mu.RLock()
	_, ok := x.blobs.get(k)
	x.mu.RUnlock()
	return ok
}

// add records the blobs of one pack; a blob already known keeps its place unless that is
// in a dead pack and this one is not.
func (x *index) add(p indexPack) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.addLocked(p)
}

func (x *index) addLocked(p indexPack) { x.addPacksLocked([]indexPack{p}) }

// addPacksLocked records the blobs of packs, as addLocked one by one would.
func (x *index) addPacksLocked(packs []indexPack) {
	var fresh []tableEntry // blobs the table does not have yet
	for _, p := range packs {
		pi, ok := x.packIdx[p.ID]
		if !ok {
			pi = uint32(len(x.packs))
			x.packs = append(x.packs, p.ID)
			x.packSize = append(x.packSize, p.Size)
			x.packDead = append(x.packDead, x.dead[p.ID])
			x.packIdx[p.ID] = pi
		}
		for _, e := range p.Entries {
			k := blobKey{e.ID, e.Type}
			ne := indexEntry{pack: pi, offset: e.Offset, length: e.Length, rawLength: e.RawLength}
			switch old, ok := x.blobs.get(k); {
			case !ok:
				fresh = append(fresh, tableEntry{k, ne})
			case x.packDead[old.pack] && !x.packDead[pi]:
				x.blobs.put(k, ne)
			}
		}
	}
	x.blobs.insertNew(fresh, func(kept, later indexEntry) bool {
		return x.packDead[kept.pack] && !x.packDead[later.pack]
	})
}

// setPlansLocked makes plans the known plans and their packs the dead ones.
func (x *index) setPlansLocked(plans map[string]*planObject) {
	x.plans = plans
	x.dead = make(map[ID]bool)
	for _, p := range plans {
		for _, id := range p.Packs {
			x.dead[id] = true
		}
	}
	for i, id := range x.packs {
		x.packDead[i] = x.dead[id]
	}
}

// addPlan makes a plan known and its packs dead at once.
func (x *index) addPlan(name string, p *planObject) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.plans[name] = p
	for _, id := range p.Packs {
		x.dead[id] = true
		if pi, ok := x.packIdx[id]; ok {
			x.packDead[pi] = true
		}
	}
}

// knownPlans returns the names of the plans known, sorted.
func (x *index) knownPlans() []string {
	x.mu.RLock()
	names := slices.Collect(maps.Keys(x.plans))
	x.mu.RUnlock()
	slices.Sort(names)
	return names
}

// stale reports whether the index must be rebuilt from scratch to match the backend's
// index files names and plans: an index file it loaded is gone (a prune rewrote it; its
// entries may point to deleted packs), or a new plan condemns an indexed pack (a blob
// whose canonical copy is there may have a live copy elsewhere, which a rebuild finds).
func (x *index) stale(names map[string]bool, plans map[string]*planObject) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	for name := range x.files {
		if !names[name] {
			return true
		}
	}
	for name, p := range plans {
		if x.plans[name] != nil {
			continue
		}
		for _, id := range p.Packs {
			if _, ok := x.packIdx[id]; ok && !x.dead[id] {
				return true
			}
		}
	}
	return false
}

const indexVersion = 1

// encodeIndex returns the plaintext of an index file.
func encodeIndex(packs []indexPack) []byte {
	n := 1 + binary.MaxVarintLen64
	for _, p := range packs {
		n += 32 + 2*binary.MaxVarintLen64 + len(p.Entries)*entrySize
	}
	b := make([]byte, 0, n)
	b = append(b, indexVersion)
	b = binary.AppendUvarint(b, uint64(len(packs)))
	for _, p := range packs {
		b = append(b, p.ID[:]...)
		b = binary.AppendUvarint(b, p.Size)
		b = binary.AppendUvarint(b, uint64(len(p.Entries)))
		for _, e := range p.Entries {
			b = appendEntry(b, e)
		}
	}
	return b
}

// decodeIndex parses the plaintext of an index file.
func decodeIndex(b []byte) ([]indexPack, error) {
	if len(b) < 1 || b[0] != indexVersion {
		return nil, fmt.Errorf("decode index: unknown version")
	}
	b = b[1:]
	np, n := binary.Uvarint(b)
	if n <= 0 || np > uint64(len(b))/34 {
		return nil, fmt.Errorf("decode index: bad pack count")
	}
	b = b[n:]
	packs := make([]indexPack, 0, np)
	for i := uint64(0); i < np; i++ {
		var p indexPack
		if len(b) < 32 {
			return nil, fmt.Errorf("decode index: truncated")
		}
		copy(p.ID[:], b)
		b = b[32:]
		size, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, fmt.Errorf("decode index: pack %s: bad size", p.ID.Short())
		}
		p.Size = size
		b = b[n:]
		ne, n := binary.Uvarint(b)
		if n <= 0 || ne > uint64(len(b)-n)/entrySize {
			return nil, fmt.Errorf("decode index: pack %s: bad blob count", p.ID.Short())
		}
		b = b[n:]
		p.Entries = make([]packEntry, ne)
		for j := range p.Entries {
			e, err := readEntry(b)
			if err != nil {
				return nil, fmt.Errorf("decode index: pack %s: %w", p.ID.Short(), err)
			}
			if uint64(e.Offset)+uint64(e.Length) > p.Size {
				return nil, fmt.Errorf("decode index: pack %s: blob %s ends past the pack's %d bytes", p.ID.Short(), e.ID.Short(), p.Size)
			}
			p.Entries[j] = e
			b = b[entrySize:]
		}
		packs = append(packs, p)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("decode index: %d bytes after the last pack", len(b))
	}
	return packs, nil
}

// maxIndexEntries is about how many blobs one index file names: a Flush or a prune that
// indexes more writes several files, so that no single file, as it is built, saved,
// read or rewritten, holds much more than this in memory (65,536 entries are about 3 MB).
// A variable only so that tests can make it small.
var maxIndexEntries = 1 << 16

// saveIndex writes index files naming packs, at most about maxIndexEntries blobs each (a
// pack with more goes alone), and records them as loaded. When one fails, those saved
// before it stay: a pack named by two index files is harmless.
func (r *Repository) saveIndex(ctx context.Context, packs []indexPack) error {
	for len(packs) > 0 {
		n, entries := 0, 0
		for n < len(packs) && (n == 0 || entries+len(packs[n].Entries) <= maxIndexEntries) {
			entries += len(packs[n].Entries)
			n++
		}
		if err := r.saveIndexFile(ctx, packs[:n]); err != nil {
			return err
		}
		packs = packs[n:]
	}
	return nil
}

// saveIndexFile writes one index file naming packs and records it as loaded.
func (r *Repository) saveIndexFile(ctx context.Context, packs []indexPack) error {
	data := r.sealObject(Handle{Type: IndexFile}, encodeIndex(packs))
	id := ID(blake3.Sum256(data))
	if err := r.be.Save(ctx, Handle{Type: IndexFile, Name: id.String()}, NewByteReader(data)); err != nil {
		return fmt.Errorf("save index %s: %w", id.Short(), err)
	}
	r.idx.mu.Lock()
	r.idx.files[id.String()] = true
	r.idx.mu.Unlock()
	return nil
}

// reloadRounds bounds how many times ReloadIndex lists the index files again because one
// it listed was removed before it could read it (a prune rewrote it meanwhile).
const reloadRounds = 3

// ReloadIndex brings the in-memory index up to date with the backend. It reads the plans
// of prunes in progress, whose condemned packs it stops reusing for deduplication, and the
// index files written since the last load (by other writers, or other processes). When an
// index file it had loaded is gone (a prune deleted packs and rewrote it) or a new plan
// condemns a pack it indexes, it rebuilds the index from every index file, off to the side,
// and swaps it in. An index file that is damaged is left out and remembered for Check;
// blobs only it names are then unknown, so a backup stores them again and a restore that
// needs them fails naming them. It returns an error when the backend cannot be read.
func (r *Repository) ReloadIndex(ctx context.Context) error {
	_, err := r.reloadIndex(ctx)
	return err
}

// reloadIndex is ReloadIndex; it returns the names of the plans known when it returns,
// whose packs are dead from then on until the plan is removed.
func (r *Repository) reloadIndex(ctx context.Context) ([]string, error) {
	// indexMu keeps this process's own index writes out of the way: a file saved between
	// the listing and the comparison below would look like a file that vanished, and a
	// rebuild must not lose packs a Flush is indexing.
	if err := r.refreshVersion(ctx); err != nil {
		return nil, err
	}
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	for round := 1; ; round++ {
		// Plans before index files: a prune removes a plan only after the index files
		// that name its deleted packs, so index files listed after the plans never name
		// a deleted pack without its plan being listed too.
		plans, err := r.loadPlans(ctx)
		if err != nil {
			return nil, err
		}
		names := make(map[string]bool)
		err = r.be.List(ctx, IndexFile, func(fi FileInfo) error {
			names[fi.Name] = true
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("list index files: %w", err)
		}
		var missed bool
		if r.idx.stale(names, plans) {
			missed, err = r.rebuildIndex(ctx, names, plans)
		} else {
			r.idx.mu.Lock()
			r.idx.setPlansLocked(plans)
			r.idx.mu.Unlock()
			missed, err = r.loadIndexFiles(ctx, names)
		}
		if err != nil {
			return nil, err
		}
		if !missed || round == reloadRounds {
			return r.idx.knownPlans(), nil
		}
	}
}

// readIndexFile loads and decodes one index file. A file that does not decrypt or decode
// gives an error wrapping ErrDamaged.
func (r *Repository) readIndexFile(ctx context.Context, name string) ([]indexPack, error) {
	plain, err := r.loadObject(ctx, Handle{Type: IndexFile, Name: name})
	if err != nil {
		return nil, err
	}
	packs, err := decodeIndex(plain)
	if err != nil {
		return nil, fmt.Errorf("%w: index %s: %w", ErrDamaged, name, err)
	}
	return packs, nil
}

// loadIndexFiles adds the index files of names not loaded yet to the index. It reports
// whether one of them was removed before it could be read.
func (r *Repository) loadIndexFiles(ctx context.Context, names map[string]bool) (missed bool, err error) {
	r.idx.mu.RLock()
	var todo []string
	for n := range names {
		if !r.idx.files[n] {
			todo = append(todo, n)
		}
	}
	r.idx.mu.RUnlock()
	for _, name := range todo {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		packs, err := r.readIndexFile(ctx, name)
		if IsNotExist(err) {
			missed = true
			continue
		}
		if err != nil && !errors.Is(err, ErrDamaged) {
			return false, err
		}
		r.idx.mu.Lock()
		r.idx.record(name, packs, err)
		r.idx.mu.Unlock()
	}
	return missed, nil
}

// record adds the packs of index file name, or remembers it as damaged when err is set.
func (x *index) record(name string, packs []indexPack, err error) {
	if err != nil {
		x.damaged[name] = err
	} else {
		delete(x.damaged, name)
		x.addPacksLocked(packs)
	}
	x.files[name] = err == nil
}

// rebuildIndex builds a new index from the index files of names and the packs this
// Repository saved but has not indexed yet, and swaps it in. r.indexMu must be held. It
// reports whether an index file was removed before it could be read.
func (r *Repository) rebuildIndex(ctx context.Context, names map[string]bool, plans map[string]*planObject) (missed bool, err error) {
	nx := newIndex()
	nx.setPlansLocked(plans)
	for name := range names {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		packs, err := r.readIndexFile(ctx, name)
		if IsNotExist(err) {
			missed = true
			continue
		}
		if err != nil && !errors.Is(err, ErrDamaged) {
			return false, err
		}
		nx.record(name, packs, err)
	}
	// r.mu keeps the pack writer from adding a pack between this and the swap: a pack it
	// added before is in r.unindexed, one it adds after goes into the new index.
	r.mu.Lock()
	defer r.mu.Unlock()
	nx.addPacksLocked(r.unindexed)
	x := r.idx
	x.mu.Lock()
	x.blobs, x.packs, x.packSize, x.packDead, x.packIdx = nx.blobs, nx.packs, nx.packSize, nx.packDead, nx.packIdx
	x.files, x.damaged, x.plans, x.dead = nx.files, nx.damaged, nx.plans, nx.dead
	x.mu.Unlock()
	return missed, nil
}
