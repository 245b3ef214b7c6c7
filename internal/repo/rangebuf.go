package repo

import (
	"context"
	"math/bits"
	"sync"
)

// rangeBufs hold the buffers of ranges read from packs, by power-of-two size class:
// rangeBufs[c] holds buffers of 1<<c bytes.
var rangeBufs [34]sync.Pool

// maxPooledRange is the largest range read into a pooled buffer; a larger one is read
// into a buffer of its own, which the collector takes back.
const maxPooledRange = 16 << 20

// loadRange reads length bytes of h from offset. When the backend can read into a
// buffer (LoaderInto) and the range is not too large, the bytes are in a pooled buffer,
// and done puts it back: the caller calls done once it no longer uses the bytes
// (decrypting in place and decompressing into another buffer, as openBlob does, is
// using them). done is never nil.
func (r *Repository) loadRange(ctx context.Context, h Handle, offset, length int64) (data []byte, done func(), err error) {
	li, ok := r.be.(LoaderInto)
	if !ok || length <= 0 || length > maxPooledRange {
		data, err = r.be.Load(ctx, h, offset, length)
		return data, func() {}, err
	}
	c := bits.Len64(uint64(length) - 1)
	var bp *[]byte
	if p, ok := rangeBufs[c].Get().(*[]byte); ok {
		bp = p
	} else {
		b := make([]byte, 1<<c)
		bp = &b
	}
	done = func() { rangeBufs[c].Put(bp) }
	buf := (*bp)[:length]
	if err := li.LoadInto(ctx, h, offset, buf); err != nil {
		done()
		return nil, func() {}, err
	}
	return buf, done, nil
}
