// Package s3 stores a repository in an S3 bucket (s3://HOST[:PORT]/BUCKET/PREFIX) on
// Amazon S3 or any server that speaks its API (MinIO, Ceph, Garage, versitygw...). It
// exists so that snapshots can leave the site for storage that is cheap, durable and
// run by someone else. Objects have the file backend's layout under the prefix, so a
// repository can be copied between the two with `aws s3 sync`:
//
//	PREFIX/config
//	PREFIX/keys/<name>, index/<name>, snapshots/<name>, pins/, plans/, locks/
//	PREFIX/data/<first two hex digits of name>/<name>
//
// A PUT is atomic (an object appears complete or not at all, also when it goes up in
// parts), so Save writes objects in place. A multipart upload that fails is aborted; one
// cut short by a crash keeps its parts on the server until a lifecycle rule
// (AbortIncompleteMultipartUpload) removes them, so set one on the bucket.
//
// Requests go through minio-go, which retries them itself (v7.4.1: retry.go, and
// executeMethod in api.go): up to Config.MaxRetries attempts (10 by default), with
// exponential backoff from 200 ms capped at 1 s and full jitter, after a network error,
// an HTTP 408, 429, 499, 500, 502, 503, 504 or 520, or the S3 codes RequestTimeout,
// Throttling, SlowDown, InternalError, ExpiredToken and the like. It does not retry other
// answers (NoSuchKey, a refused key; except once with the right region when the server
// names another), nor once the context has ended, nor a body that breaks off after the
// answer's headers. An upload's body is replayed on retry (Save hands it a seekable
// reader). So this package has no retry loop of its own: a failure that outlasts those
// attempts is returned, and the job that met it is retried.
package s3

import (
	"context"
	"crypto/md5"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/brr-dev/brr/internal/repo"
)

// Backend is a repository under a prefix of an S3 bucket. It is safe for concurrent use.
type Backend struct {
	cfg    Config // without keys: Credentials.Source says where they came from
	prefix string // cfg.Prefix without leading and trailing slashes
	client *minio.Client
	core   minio.Core // the same client; its GetObject answers with the response headers
	own    *http.Transport
}

var _ repo.Backend = (*Backend)(nil)

// Open connects to the server cfg names and checks that the bucket exists and the keys
// may list it, with one request whose refusal is explained: a missing bucket, an unknown
// key, a wrong secret, a denied access, a clock too far off, an unreachable server or a
// tls setting that does not match it. Open creates neither the bucket nor any object.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	if err := cfg.check(); err != nil {
		return nil, fmt.Errorf("open s3 repository: %w", err)
	}
	creds, keysFrom, err := cfg.credentials()
	if err != nil {
		return nil, fmt.Errorf("open s3 repository %s: %w", cfg.location(strings.Trim(cfg.Prefix, "/")), err)
	}
	lookup, _ := cfg.bucketLookup() // checked
	b := &Backend{cfg: cfg, prefix: strings.Trim(cfg.Prefix, "/")}
	b.cfg.Credentials = Credentials{Source: keysFrom}
	if b.cfg.PartSize == 0 {
		b.cfg.PartSize = DefaultPartSize
	}
	tr := cfg.Transport
	if tr == nil {
		b.own, err = newTransport(cfg.TLS)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", b.Location(), err)
		}
		tr = b.own
	}
	b.client, err = minio.New(cfg.Endpoint, &minio.Options{
		Creds:        creds,
		Secure:       cfg.TLS,
		Transport:    tr,
		Region:       cfg.Region,
		BucketLookup: lookup,
		MaxRetries:   cfg.MaxRetries,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", b.Location(), err)
	}
	b.core = minio.Core{Client: b.client}
	if err := b.probe(ctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("open %s: %w", b.Location(), err)
	}
	return b, nil
}

// newTransport is minio-go's transport (timeouts on dialling, the TLS handshake and the
// response headers, none on a whole transfer) with a shorter dial timeout, so that an
// unreachable server fails a request in seconds rather than half a minute per attempt.
func newTransport(secure bool) (*http.Transport, error) {
	tr, err := minio.DefaultTransport(secure)
	if err != nil {
		return nil, err
	}
	tr.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	return tr, nil
}

// probe lists at most one object under the prefix. It is a GET rather than a HEAD of the
// bucket (BucketExists) because the server explains a refused GET in its answer's body
// (SignatureDoesNotMatch, RequestTimeTooSkewed) and a refused HEAD only with a status.
func (b *Backend) probe(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	prefix := b.prefix
	if prefix != "" {
		prefix += "/"
	}
	for obj := range b.client.ListObjectsIter(lctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: prefix, MaxKeys: 1}) {
		if obj.Err != nil {
			return b.explain(obj.Err)
		}
		break
	}
	return ctx.Err() // the listing ends without an error when ctx does
}

// Location returns the repository's URL, without credentials: s3://HOST/BUCKET/PREFIX,
// or s3:http://HOST/BUCKET/PREFIX when TLS is off.
func (b *Backend) Location() string { return b.cfg.location(b.prefix) }

// Close releases the idle connections of the backend's own transport.
func (b *Backend) Close() error {
	if b.own != nil {
		b.own.CloseIdleConnections()
	}
	return nil
}

// typeDir returns the key prefix of t's objects, ending in "/".
func (b *Backend) typeDir(t repo.FileType) string {
	if b.prefix == "" {
		return string(t) + "/"
	}
	return b.prefix + "/" + string(t) + "/"
}

// key returns the object key of h (see repo.Handle.Path), under the prefix.
func (b *Backend) key(h repo.Handle) (string, error) {
	rel, err := h.Path()
	if err != nil {
		return "", err
	}
	if b.prefix == "" {
		return rel, nil
	}
	return b.prefix + "/" + rel, nil
}

// Save PUTs rd's bytes under h's key, in parts of Config.PartSize when it is larger;
// either way the object appears only when complete, and every request carries the MD5 of
// its body (Content-MD5), so that the server refuses one damaged on the way (and so that
// Object Lock buckets, which require an integrity header, take it).
//
// Neither way copies the object into memory when rd is an io.ReaderAt, as both repo
// readers are: a single PUT is hashed, then sent, from rd (minio-go v7.4.1, putObject,
// seeks back); the parts of a larger object are each hashed, then sent, from their
// section of rd (putParts). minio-go's own multipart upload with Content-MD5 would read
// each part into a buffer of PartSize first.
func (b *Backend) Save(ctx context.Context, h repo.Handle, rd repo.RewindReader) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	key, err := b.key(h)
	if err != nil {
		return fmt.Errorf("save %w", err)
	}
	if err := rd.Rewind(); err != nil {
		return fmt.Errorf("save %s: rewind: %w", h, err)
	}
	size := rd.Length()
	if ra, ok := rd.(io.ReaderAt); ok && uint64(size) > b.cfg.PartSize {
		if err := b.putParts(ctx, key, ra, size); err != nil {
			return b.opError("save", h.String(), err)
		}
		return nil
	}
	_, err = b.client.PutObject(ctx, b.cfg.Bucket, key, rd, size, minio.PutObjectOptions{
		ContentType:    "application/octet-stream",
		PartSize:       b.cfg.PartSize,
		SendContentMd5: true,
		// Over plain http minio-go signs the body in chunks (aws-chunked). For an empty
		// body (v7.4.1, signer.StreamingSignV4) it still sends the final signed chunk,
		// which the announced length of 0 does not count, and versitygw answers the
		// leftover as a malformed next request on the connection. An empty body has
		// nothing to sign.
		DisableContentSha256: size == 0,
	})
	if err != nil {
		return b.opError("save", h.String(), err)
	}
	return nil
}

// putParts uploads the size bytes of ra under key in parts of Config.PartSize, one after
// the other, each with its MD5, and completes the upload; an upload that fails is
// aborted. A part that minio-go retries is read again from ra.
func (b *Backend) putParts(ctx context.Context, key string, ra io.ReaderAt, size int64) (err error) {
	opts := minio.PutObjectOptions{ContentType: "application/octet-stream"}
	id, err := b.core.NewMultipartUpload(ctx, b.cfg.Bucket, key, opts)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			_ = b.core.AbortMultipartUpload(actx, b.cfg.Bucket, key, id)
		}
	}()
	partSize := int64(b.cfg.PartSize)
	var parts []minio.CompletePart
	for n, off := 1, int64(0); off < size; n, off = n+1, off+partSize {
		if err := ctx.Err(); err != nil {
			return err
		}
		sr := io.NewSectionReader(ra, off, min(partSize, size-off))
		sum := md5.New()
		if _, err := io.Copy(sum, sr); err != nil {
			return fmt.Errorf("read part %d: %w", n, err)
		}
		if _, err := sr.Seek(0, io.SeekStart); err != nil {
			return err
		}
		part, err := b.core.PutObjectPart(ctx, b.cfg.Bucket, key, id, n, sr, sr.Size(), minio.PutObjectPartOptions{
			Md5Base64: base64.StdEncoding.EncodeToString(sum.Sum(nil)),
		})
		if err != nil {
			return err
		}
		parts = append(parts, minio.CompletePart{PartNumber: n, ETag: part.ETag})
	}
	_, err = b.core.CompleteMultipartUpload(ctx, b.cfg.Bucket, key, id, parts, minio.PutObjectOptions{})
	return err
}

// Load GETs length bytes of h from offset (to the end when length is 0) with a ranged
// request, so that only those bytes cross the network. Reading past the end is an
// error: the server refuses a range that starts past it (416) and shortens one that
// ends past it, which Load tells from the answer's Content-Range.
func (b *Backend) Load(ctx context.Context, h repo.Handle, offset, length int64) ([]byte, error) {
	if err := repo.CheckLoad(ctx, h, offset, length); err != nil {
		return nil, err
	}
	key, err := b.key(h)
	if err != nil {
		return nil, fmt.Errorf("load %w", err)
	}
	var opts minio.GetObjectOptions
	ranged := offset > 0 || length > 0
	if length > 0 {
		err = opts.SetRange(offset, offset+length-1)
	} else if offset > 0 {
		err = opts.SetRange(offset, 0) // bytes=offset-
	}
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", h, err)
	}
	body, info, hdr, err := b.core.GetObject(ctx, b.cfg.Bucket, key, opts)
	if code(err) == codeInvalidRange {
		return b.loadPastEnd(ctx, h, key, offset, length)
	}
	if err != nil {
		return nil, b.opError("load", h.String(), err)
	}
	defer body.Close()
	want := info.Size
	if ranged {
		var start, end, total int64
		cr := hdr.Get("Content-Range")
		if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &start, &end, &total); err != nil || start != offset {
			return nil, fmt.Errorf("load %s: s3 server %s answered a range from byte %d with Content-Range %q", h, b.cfg.Endpoint, offset, cr)
		}
		if length > 0 && end-start+1 != length {
			return nil, fmt.Errorf("load %s: bytes %d to %d are past the end of the %d-byte object", h, offset, offset+length, total)
		}
		want = end - start + 1
	}
	if want < 0 { // no Content-Length
		buf, err := io.ReadAll(body)
		if err != nil {
			return nil, fmt.Errorf("load %s: read: %w", h, b.explain(err))
		}
		return buf, nil
	}
	buf := make([]byte, want)
	if _, err := io.ReadFull(body, buf); err != nil {
		return nil, fmt.Errorf("load %s: read: %w", h, b.explain(err))
	}
	return buf, nil
}

// loadPastEnd answers a Load whose range the server refused: the range starts at or past
// the end, which is no error only for the empty range at the very end.
func (b *Backend) loadPastEnd(ctx context.Context, h repo.Handle, key string, offset, length int64) ([]byte, error) {
	info, err := b.client.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return nil, b.opError("load", h.String(), err)
	}
	if length == 0 && offset == info.Size {
		return []byte{}, nil
	}
	return nil, fmt.Errorf("load %s: bytes %d to %d are past the end of the %d-byte object", h, offset, offset+length, info.Size)
}

// Stat HEADs h's object.
func (b *Backend) Stat(ctx context.Context, h repo.Handle) (repo.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return repo.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	key, err := b.key(h)
	if err != nil {
		return repo.FileInfo{}, fmt.Errorf("stat %w", err)
	}
	info, err := b.client.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{})
	if err != nil {
		return repo.FileInfo{}, b.opError("stat", h.String(), err)
	}
	return repo.FileInfo{Name: h.Name, Size: info.Size}, nil
}

// Remove deletes h's object. S3 answers a DELETE of a missing key with success, so Remove
// HEADs the object first to report a missing one as repo.ErrNotExist.
func (b *Backend) Remove(ctx context.Context, h repo.Handle) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	key, err := b.key(h)
	if err != nil {
		return fmt.Errorf("remove %w", err)
	}
	if _, err := b.client.StatObject(ctx, b.cfg.Bucket, key, minio.StatObjectOptions{}); err != nil {
		return b.opError("remove", h.String(), err)
	}
	if err := b.client.RemoveObject(ctx, b.cfg.Bucket, key, minio.RemoveObjectOptions{}); err != nil {
		return b.opError("remove", h.String(), err)
	}
	return nil
}

// List lists the keys under t's prefix, a page of up to 1000 at a time, and calls fn for
// each that is a valid object name of t; other keys (an upload tool's leftovers, a
// "directory" marker) are skipped. It stops at fn's first error and returns it.
func (b *Backend) List(ctx context.Context, t repo.FileType, fn func(repo.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	switch t {
	case repo.ConfigFile:
		fi, err := b.Stat(ctx, repo.Handle{Type: t, Name: "config"})
		if repo.IsNotExist(err) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %w", err)
		}
		return fn(fi)
	case repo.KeyFile, repo.PackFile, repo.IndexFile, repo.SnapshotFile, repo.PinFile, repo.PlanFile, repo.LockFile:
	default:
		return fmt.Errorf("list: unknown object type %q", t)
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the listing when fn stops it
	dir := b.typeDir(t)
	for obj := range b.client.ListObjectsIter(lctx, b.cfg.Bucket, minio.ListObjectsOptions{Prefix: dir, Recursive: true}) {
		if obj.Err != nil {
			return b.opError("list", string(t), obj.Err)
		}
		name, ok := nameOf(t, strings.TrimPrefix(obj.Key, dir))
		if !ok {
			continue
		}
		if err := fn(repo.FileInfo{Name: name, Size: obj.Size}); err != nil {
			return err
		}
	}
	// The listing ends without an error when the context does: say so rather than
	// pass a partial listing off as complete.
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	return nil
}

// nameOf returns the object name of rel, a key under a type's prefix, and whether it is
// one: "<name>", or "<first two characters of name>/<name>" for packs.
func nameOf(t repo.FileType, rel string) (string, bool) {
	if t != repo.PackFile {
		return rel, repo.ValidName(rel)
	}
	dir, name, ok := strings.Cut(rel, "/")
	if want, pack := repo.PackDir(name); !ok || !pack || want != dir {
		return "", false
	}
	return name, true
}
