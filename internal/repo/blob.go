package repo

import (
	"context"
	"fmt"
	"sync"

	"github.com/zeebo/blake3"
)

// BlobID returns the id of a blob with content data: BLAKE3 keyed with the repository's id
// key, so that ids reveal nothing about content to someone without the key.
func (r *Repository) BlobID(data []byte) ID {
	h := r.idPool.Get().(*blake3.Hasher)
	h.Reset()
	_, _ = h.Write(data)
	var id ID
	h.Sum(id[:0])
	r.idPool.Put(h)
	return id
}

// HasBlob reports whether the repository has the blob: in the index, or claimed by a
// SaveBlob of this Repository (by any caller, possibly one still compressing it) and not
// yet flushed. A Flush called after HasBlob returns true makes the blob durable or fails.
func (r *Repository) HasBlob(t BlobType, id ID) bool {
	k := blobKey{id, t}
	if r.idx.has(k) {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.pending[k]; ok {
		return true
	}
	return r.idx.has(k)
}

// LookupBlob returns where the blob is stored, if the index has it.
func (r *Repository) LookupBlob(t BlobType, id ID) (PackedBlob, bool) {
	return r.idx.lookup(blobKey{id, t})
}

// SaveBlob stores a blob whose id is BlobID(data) unless the repository has it: a known
// blob, or one another SaveBlob has claimed, returns (false, 0, nil) at once. Otherwise it
// claims the blob, compresses data (when that pays) and encrypts it in the caller's
// goroutine, then appends it to the open pack; stored is the number of bytes it takes in
// the pack. A full pack is saved by a background writer; the blob is durable after a
// Flush. The caller may reuse data when SaveBlob returns.
//
// A SaveBlob that fails after claiming the blob releases the claim and counts as a
// failure, like a failed pack write: whoever relied on the claim gets an error from its
// Flush (see Writer) instead of a snapshot that names a missing blob.
func (r *Repository) SaveBlob(ctx context.Context, t BlobType, id ID, data []byte) (added bool, stored int, err error) {
	if !t.valid() {
		return false, 0, fmt.Errorf("save blob %s: unknown blob type %d", id.Short(), t)
	}
	k := blobKey{id, t}
	if r.idx.has(k) {
		return false, 0, nil
	}
	if err := ctx.Err(); err != nil {
		return false, 0, err
	}
	r.mu.Lock()
	if _, ok := r.pending[k]; ok || r.idx.has(k) {
		r.mu.Unlock()
		return false, 0, nil
	}
	c := &claim{done: make(chan struct{})}
	r.pending[k] = struct{}{}
	r.inflight[k] = c
	r.mu.Unlock()
	if r.afterClaim != nil {
		r.afterClaim(id)
	}

	bp := r.getBlobBuf(len(data))
	ct := sealInPlace(r.aead, r.comp.pack((*bp)[:nonceSize], data), nil)

	err = r.appendToPack(k, ct, len(data))
	stored = len(ct)
	*bp = ct[:0]
	r.putBlobBuf(bp)

	r.mu.Lock()
	delete(r.inflight, k)
	if err != nil {
		delete(r.pending, k)
		err = fmt.Errorf("save blob %s: %w", id.Short(), err)
		c.err = err
		r.failLocked(err)
	}
	r.mu.Unlock()
	close(c.done)
	if err != nil {
		return false, 0, err
	}
	return true, stored, nil
}

// Blobs up to smallBlob take a buffer from smallBlobBufs, by size class (1, 4, 16, 64,
// 256 KiB and 1 MiB, each with room for the sealing), rather than Repository.blobPool's,
// whose buffers fit MaxChunkSize: a backup of many small files (each one blob) would
// otherwise keep 4 MiB buffers busy for blobs of 200 bytes, and a tree of 100 KiB would
// take (and, when the pool was emptied by a collection, clear) a buffer of MaxChunkSize.
const (
	smallBlob        = 1 << 20
	smallBlobShift   = 10 // the first class, 1 KiB
	smallBlobClasses = 6
	blobSlack        = 1024 // nonce, format byte, tag, and a compression that did not pay
)

var smallBlobBufs [smallBlobClasses]sync.Pool

func smallBlobCap(c int) int { return 1<<(smallBlobShift+2*c) + blobSlack }

// getBlobBuf returns a buffer for the sealed form of a blob of n bytes (it may still grow
// when compression does not pay); putBlobBuf takes it back.
func (r *Repository) getBlobBuf(n int) *[]byte {
	for c := range smallBlobClasses {
		if n+blobSlack <= smallBlobCap(c) {
			if bp, ok := smallBlobBufs[c].Get().(*[]byte); ok {
				return bp
			}
			b := make([]byte, 0, smallBlobCap(c))
			return &b
		}
	}
	return r.blobPool.Get().(*[]byte)
}

func (r *Repository) putBlobBuf(bp *[]byte) {
	// The largest class the buffer (grown or not) still fits.
	for c := smallBlobClasses - 1; c >= 0; c-- {
		if cap(*bp) >= smallBlobCap(c) && cap(*bp) < smallBlobCap(c+1) {
			*bp = (*bp)[:0]
			smallBlobBufs[c].Put(bp)
			return
		}
	}
	if cap(*bp) < smallBlobCap(0) {
		return
	}
	r.blobPool.Put(bp)
}

// failLocked counts a failed pack write or blob save. Every writer that began before it
// hears of it (Writer.Flush, Writer.Err); one that begins after starts clean. r.mu must
// be held.
func (r *Repository) failLocked(err error) {
	r.failures++
	r.lastErr = err
	close(r.progress)
	r.progress = make(chan struct{})
}

// failedSince returns the latest failure when there were more than since.
func (r *Repository) failedSince(since uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.failures > since {
		return r.lastErr
	}
	return nil
}

// waitClaims waits until every blob claimed so far is in a pack (in the open pack at
// worst), and returns the error of a claim that failed.
func (r *Repository) waitClaims(ctx context.Context) error {
	r.mu.Lock()
	claims := make([]*claim, 0, len(r.inflight))
	for _, c := range r.inflight {
		claims = append(claims, c)
	}
	r.mu.Unlock()
	if len(claims) > 0 && r.flushWaits != nil {
		r.flushWaits()
	}
	for _, c := range claims {
		select {
		case <-c.done:
			if c.err != nil {
				return c.err
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// appendToPack writes an encrypted blob to the open pack and hands the pack to the writer
// when it is full.
func (r *Repository) appendToPack(k blobKey, ct []byte, rawLen int) error {
	r.packMu.Lock()
	defer r.packMu.Unlock()
	if r.closed {
		return errClosed
	}
	p := r.cur
	if p.f == nil {
		if err := r.openPackFile(p); err != nil {
			return err
		}
	}
	off := p.size
	if err := p.write(ct); err != nil {
		r.dropPackLocked(err)
		return err
	}
	p.entries = append(p.entries, packEntry{Type: k.t, ID: k.id, Offset: uint32(off), Length: uint32(len(ct)), RawLength: uint32(rawLen)})
	if p.size >= int64(r.opts.PackSize) {
		r.submitLocked()
	}
	return nil
}

// dropPackLocked gives up the open pack after its file failed (a full disk): its blobs
// are forgotten and count as a failed pack write, as when the writer fails to save it.
// r.packMu must be held.
func (r *Repository) dropPackLocked(err error) {
	p := r.cur
	p.discard()
	r.cur = &packBuf{}
	r.mu.Lock()
	for _, e := range p.entries {
		delete(r.pending, blobKey{e.ID, e.Type})
	}
	r.failLocked(err)
	r.mu.Unlock()
}

// submitLocked hands the open pack to the writer and opens a new one; it blocks while the
// writer is busy with the previous pack. r.packMu must be held.
func (r *Repository) submitLocked() {
	p := r.cur
	r.submitted++
	p.seq = r.submitted
	r.writeCh <- p
	r.cur = &packBuf{}
}

// writePacks saves the packs it is handed, in order, until Close.
func (r *Repository) writePacks(ctx context.Context) {
	defer close(r.done)
	for p := range r.writeCh {
		ip, err := r.savePack(ctx, p)
		p.discard()
		r.mu.Lock()
		if err != nil {
			// The pack's blobs are forgotten below: a writer that relied on them hears
			// of it, and later ones save them again.
			r.failLocked(err)
		} else {
			r.idx.add(ip)
			r.unindexed = append(r.unindexed, ip)
			r.stats.PacksAdded++
			for _, e := range ip.Entries {
				r.stats.BlobsAdded++
				r.stats.BytesAdded += int64(e.Length)
				r.stats.RawBytesAdded += int64(e.RawLength)
			}
		}
		for _, e := range p.entries {
			delete(r.pending, blobKey{e.ID, e.Type})
		}
		r.written = p.seq
		close(r.progress)
		r.progress = make(chan struct{})
		full := unindexedBlobs(r.unindexed) >= maxIndexEntries
		r.mu.Unlock()
		if full {
			// A backup of a million small files would otherwise hold 48 bytes per blob
			// here until its Flush. Failing is not a failed write: the packs stay
			// unindexed and the next Flush saves their index or fails.
			_ = r.saveUnindexed(ctx, maxIndexEntries)
		}
	}
}

// unindexedBlobs counts the blobs of packs.
func unindexedBlobs(packs []indexPack) int {
	n := 0
	for _, p := range packs {
		n += len(p.Entries)
	}
	return n
}

// saveUnindexed saves index files naming the saved packs that none names yet, when they
// hold at least least blobs. On error the packs stay unindexed, for the next try.
func (r *Repository) saveUnindexed(ctx context.Context, least int) error {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	r.mu.Lock()
	packs := r.unindexed
	if len(packs) == 0 || unindexedBlobs(packs) < least {
		r.mu.Unlock()
		return nil
	}
	r.unindexed = nil
	r.mu.Unlock()
	if err := r.saveIndex(ctx, packs); err != nil {
		r.mu.Lock()
		r.unindexed = append(packs, r.unindexed...)
		r.mu.Unlock()
		return err
	}
	return nil
}

// savePack finishes a pack in its temporary file and saves it from there.
func (r *Repository) savePack(ctx context.Context, p *packBuf) (indexPack, error) {
	id, err := r.finishPack(p)
	if err != nil {
		return indexPack{}, fmt.Errorf("save pack: %w", err)
	}
	if err := r.be.Save(ctx, Handle{Type: PackFile, Name: id.String()}, NewFileReader(p.f, p.size)); err != nil {
		return indexPack{}, fmt.Errorf("save pack %s: %w", id.Short(), err)
	}
	return indexPack{ID: id, Size: uint64(p.size), Entries: p.entries}, nil
}

// Flush saves the open pack and an index file naming every pack saved since the last
// index file. (The pack writer also saves an index file whenever the packs no index file
// names hold maxIndexEntries blobs, so that a large backup does not keep them all in
// memory until its Flush; GC's two phases keep those packs as they keep any indexed
// before their snapshot is saved.) After Flush returns nil, every blob the Repository had before Flush was
// called is in a saved pack that a saved index file names: every blob whose SaveBlob
// returned, and every blob for which HasBlob returned true or SaveBlob returned
// added=false, even when the SaveBlob that claimed it (another job's) is still running;
// Flush waits for it. Several jobs sharing one Repository may Flush at once.
//
// This Flush returns an error when any pack write or blob save of this Repository ever
// failed: it cannot know what its caller relied on. Jobs write through a Writer, whose
// Flush hears only of the failures since the writer began, so that one failed write
// (a full disk, a network blip) fails the jobs it touched and not every later one.
func (r *Repository) Flush(ctx context.Context) error {
	return r.flush(ctx, 0)
}

// flush is Flush, failing when more than since pack writes or blob saves failed.
func (r *Repository) flush(ctx context.Context, since uint64) error {
	if err := r.waitClaims(ctx); err != nil {
		return err
	}
	r.packMu.Lock()
	if r.closed {
		r.packMu.Unlock()
		return errClosed
	}
	if len(r.cur.entries) > 0 {
		r.submitLocked()
	}
	target := r.submitted
	r.packMu.Unlock()

	// Wait for every pack handed to the writer so far, then say whether one failed: a
	// failed pack's blobs are forgotten by the time Flush returns.
	for {
		r.mu.Lock()
		failures, err, written, ch := r.failures, r.lastErr, r.written, r.progress
		r.mu.Unlock()
		if written >= target {
			if failures > since {
				return err
			}
			break
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	return r.saveUnindexed(ctx, 1)
}

// LoadBlob reads the blob from its pack, decrypts and decompresses it, and checks that its
// content matches its id; the result is appended to buf[:0]. Data that fails authentication
// or does not match gives an error wrapping ErrDamaged that names the pack and the blob.
func (r *Repository) LoadBlob(ctx context.Context, t BlobType, id ID, buf []byte) ([]byte, error) {
	pb, ok := r.LookupBlob(t, id)
	if !ok {
		if r.HasBlob(t, id) {
			return nil, fmt.Errorf("load %s blob %s: saved but not flushed yet", t, id)
		}
		return nil, fmt.Errorf("load %s blob %s: %w: not in the index", t, id, ErrNotInIndex)
	}
	data, done, err := r.loadRange(ctx, Handle{Type: PackFile, Name: pb.Pack.String()}, int64(pb.Offset), int64(pb.Length))
	if err != nil {
		return nil, fmt.Errorf("load %s blob %s from pack %s: %w", t, id, pb.Pack, err)
	}
	defer done()
	out, err := r.openBlob(data, buf, pb.RawLength)
	if err == nil && r.BlobID(out) != id {
		err = fmt.Errorf("content does not match the id")
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %s blob %s in pack %s: %w", ErrDamaged, t, id, pb.Pack, err)
	}
	return out, nil
}

// openBlob decrypts ct in place and appends the blob's content to buf[:0].
func (r *Repository) openBlob(ct, buf []byte, rawLen uint32) ([]byte, error) {
	plain, err := decrypt(r.aead, ct, nil)
	if err != nil {
		return nil, err
	}
	if cap(buf) < int(rawLen) {
		buf = make([]byte, 0, rawLen)
	}
	out, err := r.comp.unpack(buf[:0], plain)
	if err != nil {
		return nil, err
	}
	if len(out) != int(rawLen) {
		return nil, fmt.Errorf("%d bytes, the index says %d", len(out), rawLen)
	}
	return out, nil
}
