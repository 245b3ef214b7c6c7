// Package natsobj stores a repository in a JetStream object store (nats://BUCKET) on the
// worker's own NATS. It exists so that a cluster of workers can share a repository with no
// storage but NATS: objects are named "<type>/<name>" in one bucket, replicated as the
// bucket is, and a Put is atomic (its metadata is written after all its chunks, so a
// reader never sees part of an object).
package natsobj

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
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
	// timeout, plus a second per 4 MiB (8 MiB for reads), bounds a save or load whose
	// context has no deadline: the object store would otherwise use the JetStream default
	// timeout for a whole transfer, which a large pack on a slow link exceeds.
	timeout time.Duration
}

var _ repo.Backend = (*Backend)(nil)

// Open returns the backend for the object store bucket, creating the bucket with
// replicas replicas (0 means 1) where it does not exist. An existing bucket is used as
// it is.
func Open(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*Backend, error) {
	if bucket == "" {
		return nil, errors.New("open nats repository: no bucket given (want nats://BUCKET)")
	}
	if replicas <= 0 {
		replicas = 1
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
	return &Backend{bucket: bucket, os: os, chunkSize: uint32(chunk), timeout: 5 * time.Second}, nil
}

// Location returns the repository's URL.
func (b *Backend) Location() string { return "nats://" + b.bucket }

// Close does nothing: the connection belongs to the caller.
func (b *Backend) Close() error { return nil }

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

// withTimeout gives ctx a deadline proportional to size when it has none.
func (b *Backend) withTimeout(ctx context.Context, size int64) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	// Allow for 4 MiB/s, far below what loopback or a LAN does.
	return context.WithTimeout(ctx, b.timeout+time.Duration(size/(4<<20))*time.Second)
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
	if _, err := b.os.Put(ctx, meta, &exactReader{rd: rd, left: size}); err != nil {
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

// Load returns length bytes of h from offset; length 0 means to the end. The object
// store has no range reads: Load streams the object from its start, discards the bytes
// before offset and stops after length, so a small read near the end of a large pack
// costs a transfer of everything before it. The repository core keeps pack headers small
// and reads whole packs when it can.
//
// An object replaced while it is read loses its old chunks, and the object store's reader
// then waits for chunks that never come; Load bounds each attempt by a timeout that grows
// with the object's size and, when the object was replaced meanwhile, reads the new one.
func (b *Backend) Load(ctx context.Context, h repo.Handle, offset, length int64) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("load %s: %w", h, err)
	}
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("load %s: negative offset %d or length %d", h, offset, length)
	}
	name, err := objectName(h)
	if err != nil {
		return nil, fmt.Errorf("load %w", err)
	}
	for attempt := 1; ; attempt++ {
		info, err := b.os.GetInfo(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", h, mapErr(err))
		}
		data, nuid, err := b.load(ctx, name, int64(info.Size), offset, length)
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

// load makes one attempt at reading an object whose size was size a moment ago; it
// returns the object's NUID, which changes when the object is replaced.
func (b *Backend) load(ctx context.Context, name string, size, offset, length int64) (_ []byte, nuid string, _ error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, b.timeout+time.Duration(size/(8<<20))*time.Second)
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
	if offset > 0 {
		if _, err := io.CopyN(io.Discard, res, offset); err != nil {
			return nil, info.NUID, fmt.Errorf("skip to %d: %w", offset, readErr(ctx, res, err))
		}
	}
	if _, err := io.ReadFull(res, buf); err != nil {
		return nil, info.NUID, fmt.Errorf("read %d bytes at %d: %w", length, offset, readErr(ctx, res, err))
	}
	if offset+length == size {
		// Reading to the end lets the object store check the object's digest.
		if _, err := io.Copy(io.Discard, res); err != nil {
			return nil, info.NUID, readErr(ctx, res, err)
		}
		if err := res.Error(); err != nil {
			return nil, info.NUID, err
		}
	}
	return buf, info.NUID, nil
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
	if err := b.os.Delete(ctx, name); err != nil {
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
