package repo

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"sync"

	"github.com/zeebo/blake3"
)

// An index file lists packs and the blobs in each. Every writer writes its own index files
// after its packs are saved, and never changes one, so writers need no coordination; the
// in-memory index is the union of all index files.

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

// index is the in-memory index; safe for concurrent use.
type index struct {
	mu       sync.RWMutex
	blobs    map[blobKey]indexEntry
	packs    []ID
	packSize []uint64
	packIdx  map[ID]uint32
	files    map[string]bool // index files loaded
	damaged  map[string]error
}

func newIndex() *index {
	return &index{
		blobs:   make(map[blobKey]indexEntry),
		packIdx: make(map[ID]uint32),
		files:   make(map[string]bool),
		damaged: make(map[string]error),
	}
}

func (x *index) lookup(k blobKey) (PackedBlob, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, ok := x.blobs[k]
	if !ok {
		return PackedBlob{}, false
	}
	return PackedBlob{Pack: x.packs[e.pack], Type: k.t, Offset: e.offset, Length: e.length, RawLength: e.rawLength}, true
}

func (x *index) has(k blobKey) bool {
	x.mu.RLock()
	_, ok := x.blobs[k]
	x.mu.RUnlock()
	return ok
}

// add records the blobs of one pack; a blob already known keeps its first place.
func (x *index) add(p indexPack) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.addLocked(p)
}

func (x *index) addLocked(p indexPack) {
	pi, ok := x.packIdx[p.ID]
	if !ok {
		pi = uint32(len(x.packs))
		x.packs = append(x.packs, p.ID)
		x.packSize = append(x.packSize, p.Size)
		x.packIdx[p.ID] = pi
	}
	for _, e := range p.Entries {
		k := blobKey{e.ID, e.Type}
		if _, ok := x.blobs[k]; ok {
			continue
		}
		x.blobs[k] = indexEntry{pack: pi, offset: e.Offset, length: e.Length, rawLength: e.RawLength}
	}
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

// saveIndex writes one index file naming packs and records it as loaded.
func (r *Repository) saveIndex(ctx context.Context, packs []indexPack) error {
	data := r.sealObject(encodeIndex(packs))
	id := ID(blake3.Sum256(data))
	if err := r.be.Save(ctx, Handle{Type: IndexFile, Name: id.String()}, data); err != nil {
		return fmt.Errorf("save index %s: %w", id.Short(), err)
	}
	r.idx.mu.Lock()
	r.idx.files[id.String()] = true
	r.idx.mu.Unlock()
	return nil
}

// ReloadIndex reads the index files written since the last load (by other writers, or
// other processes). An index file that is damaged is left out and remembered for Check;
// blobs only it names are then unknown, so a backup stores them again and a restore that
// needs them fails naming them. It returns an error when the backend cannot be read.
func (r *Repository) ReloadIndex(ctx context.Context) error {
	var names []string
	err := r.be.List(ctx, IndexFile, func(fi FileInfo) error {
		names = append(names, fi.Name)
		return nil
	})
	if err != nil {
		return fmt.Errorf("list index files: %w", err)
	}
	r.idx.mu.RLock()
	todo := names[:0]
	for _, n := range names {
		if !r.idx.files[n] {
			todo = append(todo, n)
		}
	}
	r.idx.mu.RUnlock()
	for _, name := range todo {
		if err := ctx.Err(); err != nil {
			return err
		}
		plain, err := r.loadObject(ctx, Handle{Type: IndexFile, Name: name})
		if IsNotExist(err) {
			continue // removed since listed
		}
		var packs []indexPack
		if err == nil {
			packs, err = decodeIndex(plain)
			if err != nil {
				err = fmt.Errorf("%w: index %s: %w", ErrDamaged, name, err)
			}
		}
		if err != nil && !errors.Is(err, ErrDamaged) {
			return err
		}
		r.idx.mu.Lock()
		if err != nil {
			r.idx.damaged[name] = err
		} else {
			delete(r.idx.damaged, name)
			for _, p := range packs {
				r.idx.addLocked(p)
			}
		}
		r.idx.files[name] = err == nil
		r.idx.mu.Unlock()
	}
	return nil
}
