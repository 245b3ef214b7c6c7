package repo

import "context"

// Prefetcher is a Backend that can start reading an object before anyone loads from it:
// a hint that ranges of the object will be loaded soon, which the backend may act on
// in the background or ignore. A restore reads its packs in an order it knows from the
// start, and tells the backend which come next (Repository.PrefetchPack), so that the
// next pack is on its way while the blobs of this one are written: the nats backend
// downloads it into its pack cache, the file backend asks the kernel to read it ahead.
// Prefetch returns at once; whatever goes wrong is left for the Load that follows to
// find and report.
type Prefetcher interface {
	Prefetch(ctx context.Context, h Handle)
}

// PrefetchPack tells the backend that blobs of pack will be loaded soon, when it takes
// such hints (Prefetcher); otherwise it does nothing.
func (r *Repository) PrefetchPack(ctx context.Context, pack ID) {
	if p, ok := r.be.(Prefetcher); ok {
		p.Prefetch(ctx, Handle{Type: PackFile, Name: pack.String()})
	}
}
