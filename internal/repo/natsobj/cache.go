package natsobj

import (
	"bytes"
	"container/list"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// DefaultCacheSize is the pack cache's bound when Options.CacheSize is 0: sixteen packs of
// the default 16 MiB, more than the packs a restore or a replication reads at once.
const DefaultCacheSize = 256 << 20

// DefaultCacheRecheck is how long a cached pack the server confirmed is served without
// asking again when Options.CacheRecheck is 0: far longer than a restore takes to read the
// blobs of one pack, far shorter than the grace period before a prune removes one.
const DefaultCacheRecheck = time.Second

// sumBlock is the unit a cached pack's checksums cover: a range read reads and checks the
// blocks around it, so a small block keeps the extra read small.
const sumBlock = 16 << 10

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// cache keeps whole packs in files on local disk, so that reading the blobs of a pack one
// by one (as restores and replications do) fetches the pack from the server once instead
// of once per blob: the object store can only stream an object from its start.
//
// A cached pack is the file "<name>.<nuid>": packs are immutable and named by their
// content, but an object that is replaced gets a new NUID. A read compares the NUID and
// size the server gives now with the cached ones, so a replaced pack is not served from
// the cache, except within recheck of the last such comparison: asking the server costs a
// round trip per blob, which is most of the time of a restore from the cache. A pack
// saved or removed through this backend is compared again at its next read whatever the
// time; one replaced or removed by another process may be served for up to recheck more
// (being named by its content, a replaced pack has the same bytes).
//
// A pack is written to a temporary file and renamed into place once the object store has
// checked its digest, so a crash never leaves a partial file under a cached name. Each
// block of a cached file has a CRC-32C kept in memory and checked on every read; a file
// found at open (from an earlier run) is checked against the object's SHA-256 digest
// before its first use. A file that fails a check is removed and the read goes to the
// server.
//
// The cache holds at most max bytes, dropping the least recently used packs, plus the
// packs being downloaded. It assumes it is the only user of its directory.
type cache struct {
	dir     string
	max     int64
	recheck time.Duration    // negative: compare at every read
	now     func() time.Time // the clock of recheck

	mu      sync.Mutex
	entries map[string]*cacheEntry // by pack name
	lru     list.List              // of *cacheEntry, most recently used at the front
	used    int64
	fills   map[string]*fill // downloads under way, by file name
	running sync.WaitGroup   // the goroutines of the downloads, even those abandoned
	closed  bool
	// epoch counts the packs saved or removed through the backend: a comparison with the
	// server that began before one of them does not vouch for what is cached.
	epoch uint64
}

// check is when a comparison with the server began, and the cache's epoch then.
type check struct {
	at    time.Time
	epoch uint64
}

type cacheEntry struct {
	name, nuid string
	size       int64
	sums       []uint32  // of each sumBlock bytes; nil until checked against the digest
	checked    time.Time // when the last comparison with the server that matched began
	elem       *list.Element
}

func (e *cacheEntry) file() string { return e.name + "." + e.nuid }

// fill is one download of a pack into the cache, shared by every Load that needs it. A
// Load whose range has arrived reads it from the temporary file at once: a restore reads
// a pack front to back, and its first blobs need not wait for the last.
type fill struct {
	done    chan struct{}
	cancel  context.CancelFunc
	waiters int
	err     error // set before done is closed; a *localError when the disk failed

	// Under cache.mu: the temporary file, the bytes in it (whole blocks but at the end
	// of the pack) and their checksums; progress is closed when they grow.
	tmp      string
	have     int64
	sums     []uint32
	progress chan struct{}
}

// openCache opens the cache in dir, creating dir (0700) if needed, and takes in the packs
// an earlier run left there.
func openCache(dir string, max int64, recheck time.Duration) (*cache, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open pack cache: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("open pack cache: %w", err)
	}
	c := &cache{dir: dir, max: max, recheck: recheck, now: time.Now, entries: make(map[string]*cacheEntry), fills: make(map[string]*fill)}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("open pack cache: %w", err)
	}
	type found struct {
		e   *cacheEntry
		mod time.Time
	}
	var old []found
	for _, de := range des {
		n := de.Name()
		if strings.HasPrefix(n, "fill-") && strings.HasSuffix(n, ".tmp") {
			_ = os.Remove(filepath.Join(dir, n)) // a download cut short
			continue
		}
		name, nuid, ok := strings.Cut(n, ".")
		if !ok || !cacheable(name) || !isNUID(nuid) || !de.Type().IsRegular() {
			continue // not ours
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		if fi.Size() > max {
			_ = os.Remove(filepath.Join(dir, n)) // from a run with a larger bound
			continue
		}
		old = append(old, found{&cacheEntry{name: name, nuid: nuid, size: fi.Size()}, fi.ModTime()})
	}
	slices.SortFunc(old, func(a, b found) int { return a.mod.Compare(b.mod) })
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range old {
		if prev := c.entries[f.e.name]; prev != nil {
			c.dropLocked(prev) // an older NUID of the same pack
		}
		c.insertLocked(f.e)
	}
	return c, nil
}

// cacheable reports whether name looks like a pack's id: lower-case hex.
func cacheable(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// isNUID reports whether s can be an object's NUID (22 letters and digits).
func isNUID(s string) bool {
	if len(s) != 22 {
		return false
	}
	for _, r := range s {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

// insertLocked adds e as the most recently used pack and drops the least recently used
// others until the cache is within its bound.
func (c *cache) insertLocked(e *cacheEntry) {
	c.entries[e.name] = e
	e.elem = c.lru.PushFront(e)
	c.used += e.size
	for c.used > c.max && c.lru.Len() > 1 {
		c.dropLocked(c.lru.Back().Value.(*cacheEntry))
	}
}

// dropLocked forgets e and removes its file. The removal happens under the lock, so that
// it cannot remove a file a later download of the same pack renamed into place; a reader
// that has the file open reads on.
func (c *cache) dropLocked(e *cacheEntry) {
	if c.entries[e.name] != e {
		return
	}
	delete(c.entries, e.name)
	c.lru.Remove(e.elem)
	c.used -= e.size
	_ = os.Remove(filepath.Join(c.dir, e.file()))
}

func (c *cache) drop(e *cacheEntry) {
	c.mu.Lock()
	c.dropLocked(e)
	c.mu.Unlock()
}

// begin notes the start of a comparison with the server.
func (c *cache) begin() check {
	c.mu.Lock()
	defer c.mu.Unlock()
	return check{c.now(), c.epoch}
}

// vouchedLocked returns when the comparison ck, which matched, tells that a cached pack
// was current: never, when a pack was saved or removed through the backend meanwhile.
func (c *cache) vouchedLocked(ck check) time.Time {
	if ck.epoch != c.epoch {
		return time.Time{}
	}
	return ck.at
}

// forget makes the next read of pack name compare it with the server: it was saved or
// removed through the backend.
func (c *cache) forget(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.epoch++
	if e := c.entries[name]; e != nil {
		e.checked = time.Time{}
	}
}

// readRecent returns bytes [off, off+n) of pack name when the cache has it and compared
// it with the server less than recheck ago.
func (c *cache) readRecent(name string, off, n int64) ([]byte, bool) {
	c.mu.Lock()
	e := c.entries[name]
	if e == nil || e.sums == nil || c.recheck < 0 || c.now().Sub(e.checked) >= c.recheck || off+n > e.size {
		c.mu.Unlock()
		return nil, false
	}
	c.lru.MoveToFront(e.elem)
	sums := e.sums
	c.mu.Unlock()
	return c.readFile(e, sums, off, n)
}

// read returns bytes [off, off+n) of the pack name as info, from the comparison ck,
// describes it, or false when the cache does not have that version of it or its file
// fails a check.
func (c *cache) read(name string, info *jetstream.ObjectInfo, ck check, off, n int64) ([]byte, bool) {
	c.mu.Lock()
	e := c.entries[name]
	if e == nil {
		c.mu.Unlock()
		return nil, false
	}
	if e.nuid != info.NUID || e.size != int64(info.Size) {
		c.dropLocked(e) // replaced on the server
		c.mu.Unlock()
		return nil, false
	}
	c.lru.MoveToFront(e.elem)
	if at := c.vouchedLocked(ck); at.After(e.checked) {
		e.checked = at
	}
	sums := e.sums
	c.mu.Unlock()

	if sums == nil {
		f, err := os.Open(filepath.Join(c.dir, e.file()))
		if err != nil {
			c.drop(e)
			return nil, false
		}
		sums, err = checkDigest(f, e.size, info.Digest)
		f.Close()
		if err != nil {
			c.drop(e)
			return nil, false
		}
		c.mu.Lock()
		e.sums = sums
		c.mu.Unlock()
	}
	return c.readFile(e, sums, off, n)
}

// readFile reads bytes [off, off+n) of e's file and checks them against sums; a file
// that fails is dropped.
func (c *cache) readFile(e *cacheEntry, sums []uint32, off, n int64) ([]byte, bool) {
	data, ok := readRange(filepath.Join(c.dir, e.file()), sums, e.size, off, n)
	if !ok {
		c.drop(e)
	}
	return data, ok
}

// readRange reads bytes [off, off+n) of the file path, whose first size bytes have the
// block checksums sums, and checks them.
func readRange(path string, sums []uint32, size, off, n int64) ([]byte, bool) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	start := off / sumBlock * sumBlock
	end := min((off+n+sumBlock-1)/sumBlock*sumBlock, size)
	buf := make([]byte, end-start)
	if _, err := f.ReadAt(buf, start); err != nil {
		return nil, false
	}
	for i, b := int(start/sumBlock), buf; len(b) > 0; i++ {
		k := min(len(b), sumBlock)
		if i >= len(sums) || crc32.Checksum(b[:k], castagnoli) != sums[i] {
			return nil, false
		}
		b = b[k:]
	}
	return buf[off-start : off-start+n : off-start+n], true
}

// checkDigest reads f, of size bytes, and returns its block checksums when its SHA-256
// is digest ("SHA-256=<base64url>", the object store's).
func checkDigest(f *os.File, size int64, digest string) ([]uint32, error) {
	want, err := jetstream.DecodeObjectDigest(digest)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	sums, err := copySums(h, io.NewSectionReader(f, 0, size), size, nil)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(h.Sum(nil), want) {
		return nil, errors.New("cached pack does not match its digest")
	}
	return sums, nil
}

// copySums copies size bytes from r to w and returns the checksum of each block; it
// reads r to its end, so that an object store reader checks the object's digest. It moves
// a megabyte at a time (a pack written in blocks takes twice as long), and calls grew, if
// not nil, after each.
func copySums(w io.Writer, r io.Reader, size int64, grew func(have int64, sums []uint32)) ([]uint32, error) {
	sums := make([]uint32, 0, (size+sumBlock-1)/sumBlock)
	buf := make([]byte, min(max(size, sumBlock), 64*sumBlock))
	var got int64
	for {
		k, err := io.ReadFull(r, buf)
		if k > 0 {
			if got += int64(k); got > size {
				return nil, fmt.Errorf("more than the %d bytes expected", size)
			}
			for b := buf[:k]; len(b) > 0; b = b[min(len(b), sumBlock):] {
				sums = append(sums, crc32.Checksum(b[:min(len(b), sumBlock)], castagnoli))
			}
			if _, err := w.Write(buf[:k]); err != nil {
				return nil, &localError{err}
			}
			if grew != nil {
				grew(got, sums)
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	if got != size {
		return nil, fmt.Errorf("%d bytes, %d expected", got, size)
	}
	return sums, nil
}

// localError is a failure of the local disk, after which a read goes to the server.
type localError struct{ err error }

func (e *localError) Error() string { return "pack cache: " + e.err.Error() }
func (e *localError) Unwrap() error { return e.err }

// fetch puts the version info describes of pack name (object objName) in the cache,
// joining a download of it that is under way, and returns bytes [off, off+n) of it when
// they arrive before the download ends (nil when it ends first: the cache has it then). A
// download continues while any Load waits for it, whatever becomes of the Load that
// started it. The error is a *localError when the pack could not be written to disk.
func (c *cache) fetch(ctx context.Context, b *Backend, objName, name string, info *jetstream.ObjectInfo, ck check, off, n int64) ([]byte, error) {
	key := name + "." + info.NUID
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, &localError{errors.New("closed")}
	}
	f := c.fills[key]
	if f == nil {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		f = &fill{done: make(chan struct{}), cancel: cancel, progress: make(chan struct{})}
		c.fills[key] = f
		c.running.Add(1)
		go c.run(fctx, b, f, key, objName, name, info, ck)
	}
	f.waiters++
	c.mu.Unlock()

	for {
		c.mu.Lock()
		tmp, have, sums, progress := f.tmp, f.have, f.sums, f.progress
		c.mu.Unlock()
		if off+n <= have {
			if data, ok := readRange(tmp, sums, have, off, n); ok {
				return data, nil
			}
		}
		select {
		case <-f.done:
			return nil, f.err
		case <-progress:
		case <-ctx.Done():
			c.mu.Lock()
			if f.waiters--; f.waiters == 0 {
				f.cancel() // nobody wants it any more
				if c.fills[key] == f {
					delete(c.fills, key)
				}
			}
			c.mu.Unlock()
			return nil, ctx.Err()
		}
	}
}

// grew records that the first have bytes of f's pack, with checksums sums, are in its
// temporary file.
func (c *cache) grew(f *fill, have int64, sums []uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f.have, f.sums = have, sums
	close(f.progress)
	f.progress = make(chan struct{})
}

// run downloads a pack for f and, when the object store has checked its digest, renames
// it into place.
func (c *cache) run(ctx context.Context, b *Backend, f *fill, key, objName, name string, info *jetstream.ObjectInfo, ck check) {
	defer c.running.Done()
	defer f.cancel()
	size := int64(info.Size)
	ctx, cancel := context.WithTimeout(ctx, b.transferTimeout(size))
	defer cancel()
	e := &cacheEntry{name: name, nuid: info.NUID, size: size}
	tmp, err := c.download(ctx, b, objName, e, f)

	c.mu.Lock()
	if c.fills[key] == f {
		delete(c.fills, key)
	}
	if err == nil && c.closed {
		err = &localError{errors.New("closed")}
	}
	if err == nil {
		if prev := c.entries[name]; prev != nil {
			c.dropLocked(prev)
		}
		if err = os.Rename(tmp, filepath.Join(c.dir, e.file())); err != nil {
			err = &localError{err}
		} else {
			e.checked = c.vouchedLocked(ck)
			c.insertLocked(e)
		}
	}
	c.mu.Unlock()
	if err != nil && tmp != "" {
		_ = os.Remove(tmp)
	}
	f.err = err
	close(f.done)
}

// download reads e's object from the server into a temporary file and sets e.sums. It
// returns the file's name, also with an error when the file was created.
func (c *cache) download(ctx context.Context, b *Backend, objName string, e *cacheEntry, fl *fill) (string, error) {
	res, err := b.os.Get(ctx, objName)
	if err != nil {
		return "", mapErr(err)
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		return "", err
	}
	if info.NUID != e.nuid || int64(info.Size) != e.size {
		return "", errors.New("replaced while read")
	}
	f, err := os.CreateTemp(c.dir, "fill-*.tmp")
	if err != nil {
		return "", &localError{err}
	}
	tmp := f.Name()
	c.mu.Lock()
	fl.tmp = tmp
	c.mu.Unlock()
	sums, err := copySums(f, &counter{r: res, n: &b.fetched}, e.size, func(have int64, sums []uint32) { c.grew(fl, have, sums) })
	if cerr := f.Close(); err == nil && cerr != nil {
		err = &localError{cerr}
	}
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		var le *localError
		if !errors.As(err, &le) {
			err = readErr(ctx, res, err)
		}
		return tmp, err
	}
	e.sums = sums
	return tmp, nil
}

// close stops the downloads under way and waits for them to end; later Loads read from
// the server.
func (c *cache) close() {
	c.mu.Lock()
	c.closed = true
	for _, f := range c.fills {
		f.cancel()
	}
	c.mu.Unlock()
	c.running.Wait()
}

// usedBytes returns the bytes of the packs in the cache.
func (c *cache) usedBytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.used
}

// purge drops every pack.
func (c *cache) purge() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.lru.Len() > 0 {
		c.dropLocked(c.lru.Back().Value.(*cacheEntry))
	}
}
