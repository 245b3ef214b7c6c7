package repo

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"

	"github.com/zeebo/blake3"
)

// Chunk sizes. Files smaller than MinChunkSize are one chunk.
const (
	MinChunkSize = 256 << 10
	AvgChunkSize = 1 << 20
	MaxChunkSize = 4 << 20
)

// Normalized chunking (FastCDC): before normalSize a cut needs 22 zero bits, after it 18,
// which pulls chunk sizes toward the average. normalSize is below AvgChunkSize because
// MinChunkSize bytes are skipped and the 18-bit tail adds about 256 KiB: measured, these
// give about 1 MiB on average and keep the chunks a 1 MiB overwrite changes to 2–4 MiB.
const (
	normalSize = 768 << 10
	maskSmall  = uint64(1<<22-1) << (64 - 22) // 22 bits: hard to cut before the average
	maskLarge  = uint64(1<<18-1) << (64 - 18) // 18 bits: easy to cut after it
)

// gearTable is the per-repository gear: 256 random words derived from the secret chunker
// seed, so chunk boundaries (and so chunk sizes) do not fingerprint known content. shifted
// holds the same words shifted left by one, to roll the hash two bytes per step.
type gearTable struct {
	gear    [256]uint64
	shifted [256]uint64
}

func newGearTable(seed []byte) *gearTable {
	var out [256 * 8]byte
	blake3.DeriveKey("brr chunker gear table v1", seed, out[:])
	g := new(gearTable)
	for i := range g.gear {
		g.gear[i] = binary.LittleEndian.Uint64(out[i*8:])
		g.shifted[i] = g.gear[i] << 1
	}
	return g
}

// cut returns the length of the first chunk of data: where the gear hash of the last
// 64 bytes, masked, is zero, between MinChunkSize and MaxChunkSize. data is everything
// that is left when the caller is at the end of its input.
func (g *gearTable) cut(data []byte) int {
	n := len(data)
	if n <= MinChunkSize {
		return n
	}
	if n > MaxChunkSize {
		n = MaxChunkSize
	}
	normal := normalSize
	if normal > n {
		normal = n
	}
	// The hash shifts left, so the mask's high bits see the last 64 bytes; bits fall out
	// after 64 bytes, which is why a boundary resynchronises after an edit. Two bytes are
	// rolled per step (h<<2 + gear[a]<<1 + gear[b] is the same as rolling one at a time),
	// which halves the dependency chain; the hash after the first byte is checked too.
	h, i := g.scan(data[:normal], 0, MinChunkSize, maskSmall)
	if h == 0 {
		return i
	}
	_, i = g.scan(data[:n], h, i, maskLarge)
	return i
}

// scan rolls the hash over b from i and returns (0, end of chunk) at the first boundary,
// or (hash, len(b)) when there is none. A hash that happens to be 0 at the end is a
// boundary too, which is correct: 0 passes any mask.
func (g *gearTable) scan(b []byte, h uint64, i int, mask uint64) (uint64, int) {
	gear, shifted := &g.gear, &g.shifted
	for ; i+1 < len(b); i += 2 {
		b0, b1 := b[i], b[i+1]
		if ((h<<1)+gear[b0])&mask == 0 {
			return 0, i + 1
		}
		h = (h << 2) + shifted[b0] + gear[b1]
		if h&mask == 0 {
			return 0, i + 2
		}
	}
	if i < len(b) {
		h = (h << 1) + gear[b[i]]
		i++
		if h&mask == 0 {
			return 0, i
		}
	}
	return h, i
}

// chunkBufSize is the Chunker's read window: a whole chunk at most plus room to read ahead.
const chunkBufSize = 2 * MaxChunkSize

var chunkBufPool = sync.Pool{New: func() any { b := make([]byte, chunkBufSize); return &b }}

// Chunker splits a stream into content-defined chunks. It is not safe for concurrent use;
// make one per file.
type Chunker struct {
	gear     *gearTable
	rd       io.Reader
	buf      *[]byte
	pos, end int
	eof      bool
	err      error
}

// NewChunker returns a Chunker that splits rd the way this repository always does.
func (r *Repository) NewChunker(rd io.Reader) *Chunker {
	return &Chunker{gear: r.gear, rd: rd}
}

// Next returns the next chunk, stored in buf when its capacity allows (give it
// MaxChunkSize), and io.EOF after the last one. The chunk is valid until the next call
// with the same buf.
func (c *Chunker) Next(buf []byte) ([]byte, error) {
	if c.err != nil {
		return nil, c.err
	}
	if c.buf == nil {
		c.buf = chunkBufPool.Get().(*[]byte)
	}
	if !c.eof && c.end-c.pos < MaxChunkSize {
		if err := c.fill(); err != nil {
			c.release()
			c.err = err
			return nil, err
		}
	}
	if c.pos == c.end {
		c.release()
		c.err = io.EOF
		return nil, io.EOF
	}
	b := (*c.buf)[c.pos:c.end]
	n := c.gear.cut(b)
	chunk := append(buf[:0], b[:n]...)
	c.pos += n
	return chunk, nil
}

// fill moves the unread bytes to the front of the window and reads until it is full or
// the input ends.
func (c *Chunker) fill() error {
	w := *c.buf
	copy(w, w[c.pos:c.end])
	c.end -= c.pos
	c.pos = 0
	for c.end < len(w) {
		n, err := c.rd.Read(w[c.end:])
		c.end += n
		if errors.Is(err, io.EOF) {
			c.eof = true
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (c *Chunker) release() {
	if c.buf != nil {
		chunkBufPool.Put(c.buf)
		c.buf = nil
	}
}
