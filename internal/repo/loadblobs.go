package repo

import (
	"context"
	"fmt"
)

// LoadBlobs reads several blobs of one pack with a single backend Load: the range from
// the start of the first to the end of the last, the gaps between them included. It is
// for readers that need many small blobs of a pack at once (a restore of many small
// files), where one Load per blob costs a round trip each on a remote backend. The
// caller chooses which blobs: close together, because everything between them is read,
// and few enough that the range fits in memory.
//
// ids must be blobs of type t that the index places in one pack, each after the end of
// the one before; LoadBlobs returns an error, and calls fn for none of them, when they
// are not, or when the range cannot be loaded. Otherwise it calls fn once for each blob,
// in the order of ids, as LoadBlob would return it: data is the blob's content, decrypted,
// decompressed and checked against its id, and the caller's to keep; or err, which wraps
// ErrDamaged and names the pack and the blob, for a blob that fails its check. The
// other blobs of the range are not affected by a damaged one.
//
// buf, when not nil, gives the buffer each blob is decoded into, as LoadBlob's buf: data
// is appended to buf(i)[:0], in place when it has room, so that a caller that reads many
// blobs can reuse their buffers instead of making garbage at the rate it reads.
func (r *Repository) LoadBlobs(ctx context.Context, t BlobType, ids []ID, buf func(i int) []byte, fn func(i int, data []byte, err error)) error {
	if len(ids) == 0 {
		return nil
	}
	pbs := make([]PackedBlob, len(ids))
	for i, id := range ids {
		pb, ok := r.LookupBlob(t, id)
		if !ok {
			return fmt.Errorf("load %s blobs: blob %s: %w", t, id, ErrNotInIndex)
		}
		if i > 0 {
			prev := pbs[i-1]
			if pb.Pack != prev.Pack {
				return fmt.Errorf("load %s blobs: blob %s is in pack %s, blob %s in pack %s: load each pack's blobs apart",
					t, ids[i-1].Short(), prev.Pack.Short(), id.Short(), pb.Pack.Short())
			}
			if pb.Offset < prev.Offset+prev.Length {
				return fmt.Errorf("load %s blobs: blob %s at offset %d of pack %s does not come after blob %s, which ends at %d: order them by offset",
					t, id.Short(), pb.Offset, pb.Pack.Short(), ids[i-1].Short(), prev.Offset+prev.Length)
			}
		}
		pbs[i] = pb
	}
	first, last := pbs[0], pbs[len(pbs)-1]
	start, end := int64(first.Offset), int64(last.Offset)+int64(last.Length)
	data, done, err := r.loadRange(ctx, Handle{Type: PackFile, Name: first.Pack.String()}, start, end-start)
	if err != nil {
		return fmt.Errorf("load %d %s blobs from pack %s: %w", len(ids), t, first.Pack, err)
	}
	defer done()
	if int64(len(data)) != end-start {
		return fmt.Errorf("load %d %s blobs from pack %s: %d bytes from offset %d, want %d", len(ids), t, first.Pack, len(data), start, end-start)
	}
	for i, pb := range pbs {
		// Each blob is decrypted in place: the blobs do not overlap, and the range is
		// this call's own.
		off := int64(pb.Offset) - start
		ct := data[off : off+int64(pb.Length) : off+int64(pb.Length)]
		var dst []byte
		if buf != nil {
			dst = buf(i)
		}
		out, err := r.openBlob(ct, dst, pb.RawLength)
		if err == nil && r.BlobID(out) != ids[i] {
			err = fmt.Errorf("content does not match the id")
		}
		if err != nil {
			fn(i, nil, fmt.Errorf("%w: %s blob %s in pack %s: %w", ErrDamaged, t, ids[i], pb.Pack, err))
			continue
		}
		fn(i, out, nil)
	}
	return nil
}
