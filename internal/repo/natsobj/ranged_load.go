package natsobj

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr/internal/repo"
)

// LoadInto reads len(buf) bytes of h from offset into buf (repo.LoaderInto): a range of
// a pack goes from the chunks straight into buf, a buffer the repository reuses.
func (b *Backend) LoadInto(ctx context.Context, h repo.Handle, offset int64, buf []byte) error {
	if len(buf) == 0 {
		if err := repo.CheckLoad(ctx, h, offset, 0); err != nil {
			return err
		}
		return nil
	}
	data, err := b.loadTo(ctx, h, offset, int64(len(buf)), buf)
	if err != nil {
		return err
	}
	if len(data) != len(buf) {
		return fmt.Errorf("load %s: %d bytes at %d, want %d", h, len(data), offset, len(buf))
	}
	if &data[0] != &buf[0] {
		copy(buf, data)
	}
	return nil
}

// errNoMap wraps an error in making a chunk map other than the context's or a stale
// object's: a ranged read then streams the object instead.
var errNoMap = errors.New("no chunk map")

// loadRanged reads length bytes at offset of the object info describes by chunk, into
// dst when not nil.
func (b *Backend) loadRanged(ctx context.Context, name string, info *jetstream.ObjectInfo, offset, length int64, dst []byte) (_ []byte, nuid string, _ error) {
	size := int64(info.Size)
	if offset > size || offset+length > size {
		return nil, info.NUID, fmt.Errorf("bytes %d to %d are %w (%d bytes)", offset, offset+length, errRange, size)
	}
	m, err := b.ranged.chunkMap(ctx, name, info)
	if err != nil {
		if ctx.Err() == nil && !errors.Is(err, errStale) {
			err = fmt.Errorf("%w: %w", errNoMap, err)
		}
		return nil, info.NUID, err
	}
	if dst == nil {
		dst = make([]byte, length)
	}
	if err := b.ranged.read(ctx, m, offset, dst); err != nil {
		b.ranged.forget(name)
		return nil, info.NUID, err
	}
	return dst, info.NUID, nil
}
