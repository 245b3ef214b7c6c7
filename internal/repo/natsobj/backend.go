// Package natsobj stores a repository in a JetStream object store (nats://BUCKET) on the
// worker's own NATS. It exists so that a cluster of workers can share a repository with no
// storage but NATS: objects are named "<type>/<name>" in one bucket, replicated as the
// bucket is, and a Put is atomic (its metadata is written after all its chunks, so a
// reader never sees part of an object). The object store's API can only stream an object
// from its start, but its chunks are messages of a stream that can be read one by one:
// a range of a pack is read as the chunks that hold it (ranged.go), in parallel. Where
// the stream cannot be read so (Options.WholePacks, or no access to the stream's info), a
// backend given a cache directory keeps the packs it reads ranges of whole on local disk
// (cache.go): a restore then reads each pack from the server about once, not once per
// blob.
package natsobj

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr/internal/repo"
)

// MaxObjectSize is the largest object Save accepts: pack files are at most 64 MiB.
const MaxObjectSize = 64 << 20

// maxChunkSize is the chunk size used when the server's max payload allows it: large
// chunks move bulk data several times faster than the object store's 128 KiB default.
const maxChunkSize = 1 << 20

// Backend is a repository in a JetStream object store. It is safe for concurrent use.
type Backend struct {
	bucket    string
	os        jetstream.ObjectStore
	chunkSize uint32
	// timeout, plus a second per 2 MiB (transferTimeout), bounds a save or load whose
	// context has no deadline: the object store would otherwise use the JetStream default
	// timeout for a whole transfer, which a large pack on a slow link exceeds.
	timeout time.Duration
	// cache holds whole packs for range reads; nil when there is none.
	cache *cache
	// ranged reads ranges of packs chunk by chunk; nil when the stream cannot be read by
	// sequence or Options.WholePacks says not to (ranges go through cache then).
	ranged *ranger
	// fetched counts the bytes read from the server by Load, for tests.
	fetched atomic.Int64
}

var _ repo.Backend = (*Backend)(nil)

// Options are the settings of a Backend besides its bucket.
type Options struct {
	// Replicas is the number of replicas of a bucket Open creates (0 means 1); an
	// existing bucket is used as it is.
	Replicas int
	// CacheDir, when set, is a directory (created 0700 if needed) where the backend keeps
	// the packs it reads ranges of when it cannot read them by chunk (WholePacks, or no
	// access to the stream), so that reading a pack blob by blob fetches it from the
	// server once; with ranged reads it is emptied at open and not used. One backend uses
	// it at a time; what it holds from an earlier run is used once checked. Empty means no
	// cache: every range read streams the pack from its start.
	CacheDir string
	// CacheSize bounds the bytes of packs in CacheDir; 0 means DefaultCacheSize. A pack
	// larger than the bound is not cached.
	CacheSize int64
	// CacheRecheck is how long after the server confirmed a cached pack (same NUID and
	// size) reads of it are served without asking again; 0 means DefaultCacheRecheck,
	// negative means every read asks. Asking costs a round trip per blob read; not asking
	// means a pack replaced or removed by another worker may be served for that long
	// (packs are named by their content, so a replaced pack has the same bytes). Saves and
	// removes through this backend are seen at once.
	CacheRecheck time.Duration
	// WholePacks reads a range of a pack the way the backend did before ranged reads: by
	// streaming the pack from its start, into CacheDir when set. By default a range of a
	// pack is read as the chunks of the object store's stream that hold it (see
	// ranged.go), and CacheDir only serves packs an earlier run left there.
	WholePacks bool
}

// Open returns the backend for the object store bucket, creating the bucket with
// replicas replicas (0 means 1) where it does not exist. An existing bucket is used as
// it is. The backend has no pack cache; see OpenWithOptions.
func Open(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*Backend, error) {
	return OpenWithOptions(ctx, js, bucket, Options{Replicas: replicas})
}

// OpenWithOptions is Open with the settings in opts.
func OpenWithOptions(ctx context.Context, js jetstream.JetStream, bucket string, opts Options) (*Backend, error) {
	if bucket == "" {
		return nil, errors.New("open nats repository: no bucket given (want nats://BUCKET)")
	}
	replicas := opts.Replicas
	if replicas <= 0 {
		replicas = 1
	}
	if opts.CacheSize < 0 {
		return nil, fmt.Errorf("open nats repository %q: negative cache size %d", bucket, opts.CacheSize)
	}
	os, err := js.ObjectStore(ctx, bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		os, err = js.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{
			Bucket:      bucket,
			Description: "brr repository",
			Replicas:    replicas,
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // another worker was first
			os, err = js.ObjectStore(ctx, bucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("open object store %q: %w", bucket, err)
	}
	chunk := int64(maxChunkSize)
	if mp := js.Conn().MaxPayload(); mp > 0 && mp-4096 < chunk {
		chunk = mp - 4096 // leave room for the message's headers
	}
	b := &Backend{bucket: bucket, os: os, chunkSize: uint32(chunk), timeout: 5 * time.Second}
	if !opts.WholePacks {
		// The object store's stream, to read chunks by sequence; without it (no
		// permission to see it, say), ranges are read as before.
		if st, err := js.Stream(ctx, "OBJ_"+bucket); err == nil {
			recheck := opts.CacheRecheck
			if recheck == 0 {
				recheck = DefaultCacheRecheck
			}
			b.ranged = newRanger(st, bucket, recheck, b.transferTimeout, func(n int) { b.fetched.Add(int64(n)) })
			b.ranged.setBatch(js.Conn(), apiPrefix(js.Options()), st.CachedInfo().Config.AllowDirect)
		}
	}
	if opts.CacheDir != "" {
		size := opts.CacheSize
		if size == 0 {
			size = DefaultCacheSize
		}
		recheck := opts.CacheRecheck
		if recheck == 0 {
			recheck = DefaultCacheRecheck
		}
		if b.cache, err = openCache(opts.CacheDir, size, recheck); err != nil {
			return nil, fmt.Errorf("open nats repository %q: %w", bucket, err)
		}
	}
	if b.ranged != nil && b.cache != nil {
		// Ranged reads never fill the pack cache: what an earlier run left there would
		// only take disk space.
		b.cache.purge()
	}
	return b, nil
}

// Location returns the repository's URL.
func (b *Backend) Location() string { return "nats://" + b.bucket }

// Close stops the pack downloads under way; the connection belongs to the caller, and the
// cache directory is left as it is for the next Open.
func (b *Backend) Close() error {
	if b.cache != nil {
		b.cache.close()
	}
	if b.ranged != nil {
		b.ranged.running.Wait()
	}
	return nil
}

func objectName(h repo.Handle) (string, error) {
	if h.Name == "" || strings.ContainsAny(h.Name, "/\x00") {
		return "", fmt.Errorf("%s: invalid object name %q", h, h.Name)
	}
	switch h.Type {
	case repo.ConfigFile:
		if h.Name != "config" {
			return "", fmt.Errorf("%s: the config object is named \"config\", not %q", h, h.Name)
		}
	case repo.KeyFile, repo.PackFile, repo.IndexFile, repo.SnapshotFile, repo.PinFile, repo.PlanFile, repo.LockFile:
	default:
		return "", fmt.Errorf("%s: unknown object type %q", h, h.Type)
	}
	return string(h.Type) + "/" + h.Name, nil
}

// forget tells the caches that h was saved or removed (or may have been).
func (b *Backend) forget(h repo.Handle) {
	if b.cache != nil && h.Type == repo.PackFile {
		b.cache.forget(h.Name)
	}
	if b.ranged != nil && h.Type == repo.PackFile {
		b.ranged.forget(h.Name)
	}
}

// withTimeout gives ctx a deadline proportional to size when it has none.
func (b *Backend) withTimeout(ctx context.Context, size int64) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, b.transferTimeout(size))
}

// transferTimeout bounds the transfer of size bytes: b.timeout plus a second per 2 MiB,
// far below what loopback or a LAN does, and what a busy machine (two cores running the
// race detector under load) still does. It is the bound of a read whose object was
// replaced meanwhile, which the object store's reader would wait for forever.
func (b *Backend) transferTimeout(size int64) time.Duration {
	return b.timeout + time.Duration(size/(2<<20))*time.Second
}

func mapErr(err error) error {
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return fmt.Errorf("%w (%w)", repo.ErrNotExist, err)
	}
	return err
}

// Save puts rd's bytes under h; the object store replaces an existing object atomically,
// and keeps the old one when the new one's reader fails.
func (b *Backend) Save(ctx context.Context, h repo.Handle, rd repo.RewindReader) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	name, err := objectName(h)
	if err != nil {
		return fmt.Errorf("save %w", err)
	}
	size := rd.Length()
	if size > MaxObjectSize {
		return fmt.Errorf("save %s: %d bytes is more than the %d an object may hold", h, size, MaxObjectSize)
	}
	if err := rd.Rewind(); err != nil {
		return fmt.Errorf("save %s: rewind: %w", h, err)
	}
	ctx, cancel := b.withTimeout(ctx, size)
	defer cancel()
	meta := jetstream.ObjectMeta{Name: name, Opts: &jetstream.ObjectMetaOptions{ChunkSize: b.chunkSize}}
	_, err = b.os.Put(ctx, meta, &exactReader{rd: rd, left: size})
	b.forget(h)
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
		return fmt.Errorf("save %s: %w", h, err)
	}
	return nil
}

// exactReader reads the left bytes of rd that the object store reads until EOF, and fails
// the Put when rd ends before them.
type exactReader struct {
	rd   io.Reader
	left int64
}

func (r *exactReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n, err := r.rd.Read(p)
	r.left -= int64(n)
	if err == io.EOF && r.left > 0 {
		err = io.ErrUnexpectedEOF
	}
	return n, err
}

// Load returns length bytes of h from offset; length 0 means to the end. A range of a
// pack is read as the chunks that hold it (ranged.go). Otherwise (whole objects, objects
// other than packs, and every read with Options.WholePacks or without access to the
// stream) Load streams the object from its start, discards the bytes before offset and
// stops after length, so a small read near the end of a large pack costs a transfer of
// everything before it. With a cache (Options.CacheDir) and no ranged reads, a range read
// of a pack fetches the whole pack into the cache once, concurrent reads sharing the
// download, and reads the range from there (from the download itself when the range has
// arrived); Options.CacheRecheck says how often it asks the server whether the pack is
// still the one cached. Other objects, and whole objects, are read from the server.
//
// An object replaced while it is read loses its old chunks, and the object store's reader
// then waits for chunks that never come; Load bounds each attempt by a timeout that grows
// with the object's size and, when the object was replaced meanwhile, reads the new one.
func (b *Backend) Load(ctx context.Context, h repo.Handle, offset, length int64) ([]byte, error) {
	return b.loadTo(ctx, h, offset, length, nil)
}

// loadTo is Load, into dst when dst is not nil and has length bytes (a ranged read uses
// it; the other ways allocate).
func (b *Backend) loadTo(ctx context.Context, h repo.Handle, offset, length int64, dst []byte) ([]byte, error) {
	if err := repo.CheckLoad(ctx, h, offset, length); err != nil {
		return nil, err
	}
	name, err := objectName(h)
	if err != nil {
		return nil, fmt.Errorf("load %w", err)
	}
	if b.cache != nil && h.Type == repo.PackFile && length > 0 {
		if data, ok := b.cache.readRecent(h.Name, offset, length); ok {
			return data, nil
		}
	}
	ranged := b.ranged != nil && h.Type == repo.PackFile && length > 0
	if ranged {
		// A pack whose chunk map is known is read without asking for its info: a chunk
		// that is not where the map says sends the read the long way below.
		if m := b.ranged.known(name); m != nil && offset+length <= m.size() {
			if dst == nil {
				dst = make([]byte, length)
			}
			err := b.ranged.read(ctx, m, offset, dst)
			if err == nil {
				return dst, nil
			}
			if ctx.Err() != nil {
				return nil, fmt.Errorf("load %s: %w", h, err)
			}
			b.ranged.forget(name)
		}
	}
	for attempt := 1; ; attempt++ {
		var ck check
		if b.cache != nil {
			ck = b.cache.begin()
		}
		info, err := b.os.GetInfo(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", h, mapErr(err))
		}
		var data []byte
		var nuid string
		if ranged {
			data, nuid, err = b.loadRanged(ctx, name, info, offset, length, dst)
			if errors.Is(err, errNoMap) {
				ranged = false // read as if there were no ranged reads
				data, nuid, err = b.load(ctx, name, int64(info.Size), offset, length)
			}
		} else if b.cached(h, info, offset, length) {
			data, nuid, err = b.loadCached(ctx, name, h.Name, info, ck, offset, length)
		} else {
			data, nuid, err = b.load(ctx, name, int64(info.Size), offset, length)
		}
		if err == nil || errors.Is(err, errRange) || ctx.Err() != nil || attempt == 3 {
			if err != nil {
				return nil, fmt.Errorf("load %s: %w", h, err)
			}
			return data, nil
		}
		now, ierr := b.os.GetInfo(ctx, name)
		if ierr == nil && now.NUID != nuid || errors.Is(ierr, jetstream.ErrObjectNotFound) {
			continue // replaced or removed while read: look again
		}
		return nil, fmt.Errorf("load %s: %w", h, err)
	}
}

var errRange = errors.New("past the end of the object")

// cached reports whether a read of length bytes at offset of h, which info describes,
// goes through the cache: a range of a pack that fits in it.
func (b *Backend) cached(h repo.Handle, info *jetstream.ObjectInfo, offset, length int64) bool {
	return b.cache != nil && h.Type == repo.PackFile && (offset != 0 || length != 0) &&
		info.Size > 0 && int64(info.Size) <= b.cache.max && cacheable(h.Name)
}

// loadCached is load through the cache: it reads the range from the cached pack, first
// fetching the pack when the cache does not have this version of it. When the cache
// cannot serve the range (a disk error, a file that fails its checksums, a pack dropped
// before it was read), it reads from the server.
func (b *Backend) loadCached(ctx context.Context, name, pack string, info *jetstream.ObjectInfo, ck check, offset, length int64) (_ []byte, nuid string, _ error) {
	size := int64(info.Size)
	if length == 0 {
		length = size - offset
	}
	if offset > size || offset+length > size {
		return nil, info.NUID, fmt.Errorf("bytes %d to %d are %w (%d bytes)", offset, offset+length, errRange, size)
	}
	if length == 0 {
		return []byte{}, info.NUID, nil
	}
	if data, ok := b.cache.read(pack, info, ck, offset, length); ok {
		return data, info.NUID, nil
	}
	data, err := b.cache.fetch(ctx, b, name, pack, info, ck, offset, length)
	if data != nil {
		return data, info.NUID, nil
	}
	var le *localError
	if err != nil && !errors.As(err, &le) {
		return nil, info.NUID, err
	}
	if err == nil {
		if data, ok := b.cache.read(pack, info, ck, offset, length); ok {
			return data, info.NUID, nil
		}
	}
	return b.load(ctx, name, size, offset, length)
}

// load makes one attempt at reading an object whose size was size a moment ago; it
// returns the object's NUID, which changes when the object is replaced.
func (b *Backend) load(ctx context.Context, name string, size, offset, length int64) (_ []byte, nuid string, _ error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.transferTimeout(size))
		defer cancel()
	}
	res, err := b.os.Get(ctx, name)
	if err != nil {
		return nil, "", mapErr(err)
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		return nil, "", err
	}
	size = int64(info.Size)
	if length == 0 {
		length = size - offset
	}
	if offset > size || offset+length > size {
		return nil, info.NUID, fmt.Errorf("bytes %d to %d are %w (%d bytes)", offset, offset+length, errRange, size)
	}
	buf := make([]byte, length)
	if length == 0 {
		return buf, info.NUID, nil
	}
	r := &counter{r: res, n: &b.fetched}
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, r, offset); err != nil {
			return nil, info.NUID, fmt.Errorf("skip to %d: %w", offset, readErr(ctx, res, err))
		}
	}
	if _, err := io.ReadFull(r, buf); err != nil {
		return nil, info.NUID, fmt.Errorf("read %d bytes at %d: %w", length, offset, readErr(ctx, res, err))
	}
	if offset+length == size {
		// Reading to the end lets the object store check the object's digest.
		if _, err := io.Copy(io.Discard, r); err != nil {
			return nil, info.NUID, readErr(ctx, res, err)
		}
		if err := res.Error(); err != nil {
			return nil, info.NUID, err
		}
	}
	return buf, info.NUID, nil
}

// counter counts the bytes read through it.
type counter struct {
	r io.Reader
	n *atomic.Int64
}

func (c *counter) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// readErr prefers the object store's own error, then the context's, to the pipe's.
func readErr(ctx context.Context, res jetstream.ObjectResult, err error) error {
	if rerr := res.Error(); rerr != nil {
		return rerr
	}
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("%w (%w)", cerr, err)
	}
	return err
}

// Stat returns the size of h.
func (b *Backend) Stat(ctx context.Context, h repo.Handle) (repo.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return repo.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	name, err := objectName(h)
	if err != nil {
		return repo.FileInfo{}, fmt.Errorf("stat %w", err)
	}
	info, err := b.os.GetInfo(ctx, name)
	if err != nil {
		return repo.FileInfo{}, fmt.Errorf("stat %s: %w", h, mapErr(err))
	}
	return repo.FileInfo{Name: h.Name, Size: int64(info.Size)}, nil
}

// Remove deletes h. The object store's Delete does not fail for an object that is
// already deleted, so Remove looks first.
func (b *Backend) Remove(ctx context.Context, h repo.Handle) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	name, err := objectName(h)
	if err != nil {
		return fmt.Errorf("remove %w", err)
	}
	if _, err := b.os.GetInfo(ctx, name); err != nil {
		return fmt.Errorf("remove %s: %w", h, mapErr(err))
	}
	err = b.os.Delete(ctx, name)
	b.forget(h)
	if err != nil {
		return fmt.Errorf("remove %s: %w", h, mapErr(err))
	}
	return nil
}

// List calls fn for every object of type t. The object store lists every object of the
// bucket (its metadata only); List keeps those of type t.
func (b *Backend) List(ctx context.Context, t repo.FileType, fn func(repo.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	prefix := string(t) + "/"
	infos, err := b.os.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	for _, info := range infos {
		name, ok := strings.CutPrefix(info.Name, prefix)
		if !ok || info.Deleted {
			continue
		}
		if err := fn(repo.FileInfo{Name: name, Size: int64(info.Size)}); err != nil {
			return err
		}
	}
	return nil
}
