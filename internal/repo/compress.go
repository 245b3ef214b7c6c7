package repo

import (
	"fmt"

	"github.com/klauspost/compress/zstd"
)

// Every blob and object is encrypted with a one-byte prefix that says how the rest is stored.
const (
	formatRaw  byte = 0
	formatZstd byte = 1
)

// Compression is worth it only when it saves at least 1/minSavingDiv (about 3%).
const minSavingDiv = 32

// compressor holds the shared zstd coders. EncodeAll and DecodeAll are safe for concurrent
// use, so one of each serves every goroutine.
type compressor struct {
	enc    *zstd.Encoder // SpeedDefault: what the stored size is measured by
	sample *zstd.Encoder // SpeedFastest: a cheap look at whether data compresses at all
	dec    *zstd.Decoder
}

func newCompressor() (*compressor, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedDefault),
		zstd.WithEncoderCRC(false), // blobs are authenticated by GCM already
		zstd.WithZeroFrames(true),
		zstd.WithEncoderConcurrency(0),
		// A blob is at most MaxChunkSize (trees and index files, rarely larger, compress
		// a little less past it): a larger window finds nothing more. Each of the
		// encoders keeps a history of window plus a block with these two, instead of
		// twice the default 8 MiB window (32 MiB in all on 2 cores, 8 MiB now).
		zstd.WithWindowSize(MaxChunkSize),
		zstd.WithLowerEncoderMem(true))
	if err != nil {
		return nil, fmt.Errorf("new zstd encoder: %w", err)
	}
	sample, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderCRC(false),
		zstd.WithEncoderConcurrency(0))
	if err != nil {
		return nil, fmt.Errorf("new zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(0),
		zstd.IgnoreChecksum(true),
		zstd.WithDecoderMaxMemory(1<<30))
	if err != nil {
		return nil, fmt.Errorf("new zstd decoder: %w", err)
	}
	return &compressor{enc: enc, sample: sample, dec: dec}, nil
}

func (c *compressor) close() {
	c.enc.Close()
	c.sample.Close()
	c.dec.Close()
}

// minCompressSize: smaller data is stored as it is, never given to zstd. A zstd frame
// costs 5-15 µs of fixed work (tables, entropy coding setup) however small its input:
// more than all the system calls of reading a small file, for a few hundred bytes saved
// at best, when a blob's own cost in the repository (nonce, tag, pack header and index
// entries) is about 100 bytes. Readers take either form (the format byte says which), so
// this is a writer's choice: repositories written with another threshold read the same.
const (
	minCompressSize = 512
	sampleSize      = 16 << 10 // each of the samples taken from data larger than sampleLimit
	sampleLimit     = 4 * sampleSize
)

// worthTrying reports whether data looks compressible: for large data, two samples (the
// start and the middle) are compressed with the fastest level, so random or already
// compressed data costs a small fraction of a full compression. scratch is where the
// samples go (its capacity is used, its contents are clobbered).
func (c *compressor) worthTrying(data []byte, scratch []byte) bool {
	if len(data) < minCompressSize {
		return false
	}
	if len(data) <= sampleLimit {
		return true
	}
	mid := len(data)/2 - sampleSize/2
	in := 0
	out := 0
	for _, s := range [][]byte{data[:sampleSize], data[mid : mid+sampleSize]} {
		scratch = c.sample.EncodeAll(s, scratch[:0])
		in += len(s)
		out += len(scratch)
	}
	return out <= in-in/minSavingDiv
}

// pack appends the prefixed form of data to dst: formatZstd and the compressed bytes when
// that saves enough, else formatRaw and data. The attempt is compressed into dst itself
// (its spare capacity, grown if need be), not into a scratch buffer that would be copied:
// one buffer per blob instead of two.
func (c *compressor) pack(dst, data []byte) []byte {
	base := len(dst)
	if c.worthTrying(data, dst[base:]) {
		dst = append(dst, formatZstd)
		dst = c.enc.EncodeAll(data, dst)
		if len(dst)-base-1 <= len(data)-len(data)/minSavingDiv {
			return dst
		}
		dst = dst[:base]
	}
	dst = append(dst, formatRaw)
	return append(dst, data...)
}

// unpack appends the data that a prefixed plaintext stands for to dst.
func (c *compressor) unpack(dst, plain []byte) ([]byte, error) {
	if len(plain) == 0 {
		return nil, fmt.Errorf("empty plaintext: no format byte")
	}
	switch plain[0] {
	case formatRaw:
		return append(dst, plain[1:]...), nil
	case formatZstd:
		out, err := c.dec.DecodeAll(plain[1:], dst)
		if err != nil {
			return nil, fmt.Errorf("decompress: %w", err)
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown format byte %d", plain[0])
}
