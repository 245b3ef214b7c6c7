package repo

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"

	"github.com/zeebo/blake3"
)

// Chunk sizes. Files smaller than MinChunkSize are one chunk. Chunks of random data
// average 0.82 MiB, nine in ten between 0.44 and 1.4 MiB; AvgChunkSize is the round figure.
const (
	MinChunkSize = 256 << 10
	AvgChunkSize = 1 << 20
	MaxChunkSize = 4 << 20
)

// Cut points are local maxima. The gear hash of the last 64 bytes makes a candidate where
// its top candBits bits are zero (every 64 KiB on average), and a candidate is a cut point
// when its hash is larger than that of every other candidate within cutRadius bytes on
// either side. Whether a place is a cut point so depends only on the content around it,
// never on where the chunk began: an edit can move only the cut points within cutRadius
// of it, and the chunking is back in step right after them. Cut points are more than
// cutRadius apart and long gaps are rare, so the chunks around an edit, which it costs,
// are small: a 1 MiB overwrite in the middle of a large file adds 2.1 MiB on average, less
// than 3.5 MiB in 99% of cases and 4 MiB or more in about 0.15% (repositories and edits
// vary). FastCDC's normalized chunking, used before, has as tight a size distribution,
// but whether a place is a cut point depends there on its distance from the chunk's start,
// so after an edit the chunking took several chunks to fall back in step: the same
// overwrite cost 4 MiB or more in 10–20% of repositories, up to 11 MiB.
//
// Chunks average about 1.9 cutRadius. A larger radius makes larger chunks and costlier
// edits (4 MiB or more for 0.3% of edits at 0.87 MiB chunks), a smaller one the reverse;
// variants (asymmetric windows, a softer max, filling long gaps, a minimum size above the
// radius) measured no better at the same chunk size.
//
// A cut point is taken when it is at least MinChunkSize from the chunk's start (that is,
// always but at the start of a file and after a MaxChunkSize chunk), and a chunk with none
// ends at MaxChunkSize.
const (
	cutRadius = 424 << 10
	candBits  = 16
	candMask  = uint64(1<<candBits-1) << (64 - candBits)
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
		w := binary.LittleEndian.Uint64(out[i*8:])
		// A run of one byte value b hashes to -gear[b] once 64 bytes are in. Were that a
		// candidate, such a run (zeros in a sparse file) would have one at every byte and
		// be chunked slowly; flipping the top bit makes it none.
		if -w&candMask == 0 {
			w ^= 1 << 63
		}
		g.gear[i] = w
		g.shifted[i] = w << 1
	}
	return g
}

// scan rolls the hash over b from i until the first candidate, and returns the hash, the
// offset just past the candidate's last byte (len(b) when there is none) and whether it
// found one.
//
// The hash shifts left, so the mask's high bits see the last 64 bytes; bits fall out after
// 64 bytes, which is why a candidate depends only on the bytes just before it. Two bytes
// are rolled per step (h<<2 + gear[a]<<1 + gear[b] is the same as rolling one at a time),
// which halves the dependency chain; the hash after the first byte is checked too.
func (g *gearTable) scan(b []byte, h uint64, i int) (uint64, int, bool) {
	gear, shifted := &g.gear, &g.shifted
	for ; i+1 < len(b); i += 2 {
		b0, b1 := b[i], b[i+1]
		if h1 := (h << 1) + gear[b0]; h1&candMask == 0 {
			return h1, i + 1, true
		}
		h = (h << 2) + shifted[b0] + gear[b1]
		if h&candMask == 0 {
			return h, i + 2, true
		}
	}
	if i < len(b) {
		h = (h << 1) + gear[b[i]]
		i++
		return h, i, h&candMask == 0
	}
	return h, i, false
}

// candidate is a place where a cut may be: the stream offset just past it, and its hash.
type candidate struct {
	pos  int64
	hash uint64
	// free is set when no candidate within cutRadius before it has a hash as large.
	free bool
}

// cutter finds the cut points of one stream. It hashes every byte once, carrying the
// hash from one chunk to the next, and keeps the candidates that may still matter: a
// stack of hashes decreasing from the oldest to the newest, since a candidate followed
// within cutRadius by one at least as large can be neither a cut point nor the largest
// before a later one.
type cutter struct {
	gear    *gearTable
	hash    uint64 // of the bytes before scanned
	scanned int64  // stream offset hashed up to
	stack   []candidate
}

// next returns the stream offset where the chunk that starts at start ends, or false when
// it must see further first. win holds the stream from offset base on (from start on, the
// same bytes at every call), and eof says whether the stream ends with it.
func (c *cutter) next(win []byte, base, start int64, eof bool) (int64, bool) {
	end := base + int64(len(win))
	if eof && end-start <= MinChunkSize {
		return end, true
	}
	limit := start + MaxChunkSize
	if eof {
		limit = min(limit, end)
	}
	c.trim(start)
	for {
		// The first free candidate in reach is the cut point once nothing larger
		// follows it within cutRadius; the stream's end counts as nothing.
		target := limit
		if p, ok := c.pending(start+MinChunkSize, limit); ok {
			target = p.pos + cutRadius
			if eof {
				target = min(target, end)
			}
			if c.scanned >= target {
				return p.pos, true
			}
		} else if c.scanned >= limit {
			return limit, true
		}
		if c.scanned == end {
			return 0, false // before eof only: at eof every target is within the window
		}
		c.scanTo(win, base, min(target, end))
	}
}

// pending returns the oldest free candidate on the stack between from and to.
func (c *cutter) pending(from, to int64) (candidate, bool) {
	for _, p := range c.stack {
		if p.pos > to {
			break
		}
		if p.free && p.pos >= from {
			return p, true
		}
	}
	return candidate{}, false
}

// scanTo hashes the window up to stream offset target, or up to its first candidate, which
// it pushes on the stack.
func (c *cutter) scanTo(win []byte, base, target int64) {
	h, i, found := c.gear.scan(win[:target-base], c.hash, int(c.scanned-base))
	c.hash, c.scanned = h, base+int64(i)
	if !found {
		return
	}
	p := candidate{pos: c.scanned, hash: h, free: true}
	for n := len(c.stack); n > 0; n-- {
		top := c.stack[n-1]
		if top.hash > h {
			break
		}
		if top.hash == h && top.pos >= p.pos-cutRadius {
			p.free = false
		}
		c.stack = c.stack[:n-1]
	}
	if n := len(c.stack); n > 0 && c.stack[n-1].pos >= p.pos-cutRadius {
		p.free = false
	}
	c.stack = append(c.stack, p)
}

// trim drops the candidates that can matter no more: before the chunk's start, and too far
// behind the scan to be within cutRadius of a candidate to come.
func (c *cutter) trim(start int64) {
	n := 0
	for n < len(c.stack) && c.stack[n].pos <= start && c.stack[n].pos < c.scanned-cutRadius {
		n++
	}
	if n > 0 {
		c.stack = append(c.stack[:0], c.stack[n:]...)
	}
}

// split returns the end offsets of the chunks of data, a whole stream.
func (g *gearTable) split(data []byte) []int {
	c := cutter{gear: g}
	var ends []int
	for start := int64(0); start < int64(len(data)); {
		start, _ = c.next(data, 0, start, true)
		ends = append(ends, int(start))
	}
	return ends
}

// chunkBufSize is the Chunker's read window: a whole chunk at most, the cutRadius beyond
// it that decides its cut point, and room to read ahead, so that the bytes left to move
// to the front when the window is refilled are few.
const chunkBufSize = 2 * MaxChunkSize

var chunkBufPool = sync.Pool{New: func() any { b := make([]byte, chunkBufSize); return &b }}

// Chunker splits a stream into content-defined chunks. It is not safe for concurrent use;
// make one per file.
type Chunker struct {
	cut      cutter
	rd       io.Reader
	buf      *[]byte
	base     int64 // stream offset of (*buf)[0]
	pos, end int
	eof      bool
	err      error
}

// NewChunker returns a Chunker that splits rd the way this repository always does.
func (r *Repository) NewChunker(rd io.Reader) *Chunker {
	return &Chunker{cut: cutter{gear: r.gear}, rd: rd}
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
	for {
		if c.eof && c.pos == c.end {
			c.release()
			c.err = io.EOF
			return nil, io.EOF
		}
		w := (*c.buf)[:c.end]
		start := c.base + int64(c.pos)
		if e, ok := c.cut.next(w, c.base, start, c.eof); ok {
			n := int(e - start)
			chunk := append(buf[:0], w[c.pos:c.pos+n]...)
			c.pos += n
			return chunk, nil
		}
		if err := c.fill(); err != nil {
			c.release()
			c.err = err
			return nil, err
		}
	}
}

// fill moves the unread bytes to the front of the window and reads until it is full or
// the input ends.
func (c *Chunker) fill() error {
	w := *c.buf
	copy(w, w[c.pos:c.end])
	c.base += int64(c.pos)
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
