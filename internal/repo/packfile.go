package repo

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"os"

	"github.com/zeebo/blake3"
)

// A pack being filled lives in a temporary file, not in memory: blobs are written to it
// as SaveBlob adds them, hashed on the way (the pack's name is the hash of its bytes),
// and the finished pack is saved from the file. So a pack costs a small write buffer in
// memory whatever Options.PackSize is, and the page cache, which the kernel can drop,
// holds the rest.
//
// The file is created 0600 in Options.TempDir and unlinked at once where the system
// allows it (not on Windows, where it is removed when closed): nothing is left behind by
// a crash, and no other process finds it by name.

// packWriteBuffer is the buffer between SaveBlob and a pack's temporary file: small blobs
// (trees, small files) go to the file in writes of this size.
const packWriteBuffer = 64 << 10

// packFilePrefix starts the name of a pack's temporary file.
const packFilePrefix = "brr-pack-"

// packBuf is a pack being filled.
type packBuf struct {
	f       *os.File // nil until the first blob
	name    string   // the file's name while it exists (not unlinked at creation)
	w       *bufio.Writer
	hash    *blake3.Hasher
	size    int64 // bytes written, buffered ones included
	entries []packEntry
	seq     uint64
}

// openPackFile gives p its temporary file.
func (r *Repository) openPackFile(p *packBuf) error {
	dir := r.opts.TempDir
	if dir == "" {
		dir = os.TempDir()
	}
	f, err := os.CreateTemp(dir, packFilePrefix+"*") // 0600
	if err != nil {
		return fmt.Errorf("create pack file in %s: %w", dir, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		p.name = f.Name() // an open file cannot be removed here: remove it when closed
	}
	if r.packFileHook != nil {
		r.packFileHook(f)
	}
	p.f = f
	p.w = bufio.NewWriterSize(f, packWriteBuffer)
	p.hash = blake3.New()
	return nil
}

// write appends b to the pack.
func (p *packBuf) write(b []byte) error {
	if _, err := p.w.Write(b); err != nil {
		return fmt.Errorf("write pack file: %w", err)
	}
	_, _ = p.hash.Write(b) // never fails
	p.size += int64(len(b))
	return nil
}

// finish appends the encrypted header and its length to the blobs, flushes the file and
// returns the pack's id.
func (r *Repository) finishPack(p *packBuf) (ID, error) {
	hdr := encrypt(r.aead, nil, encodePackHeader(p.entries), nil)
	hdr = binary.LittleEndian.AppendUint32(hdr, uint32(len(hdr)))
	if err := p.write(hdr); err != nil {
		return ID{}, err
	}
	if err := p.w.Flush(); err != nil {
		return ID{}, fmt.Errorf("write pack file: %w", err)
	}
	var id ID
	p.hash.Sum(id[:0])
	return id, nil
}

// discard closes and removes the pack's file, if it has one.
func (p *packBuf) discard() {
	if p.f == nil {
		return
	}
	_ = p.f.Close()
	if p.name != "" {
		_ = os.Remove(p.name)
	}
	p.f, p.w = nil, nil
}
