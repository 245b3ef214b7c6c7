// Package state is the worker's local memory, in one bbolt file under its data dir: the
// record of every job it ran, the ids of jobs that succeeded here (so a redelivered job is
// not run twice), the outbox of events waiting for NATS, and the backup engine's file
// cache. It exists so that what a worker has done survives a crash or a NATS outage: a
// job's state change and the events that announce it are written in one transaction, and
// many small writes share one fsync.
package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// SchemaVersion is the layout of the database this code reads and writes.
const SchemaVersion = 1

// Bucket names.
var (
	bucketMeta       = []byte("meta")
	bucketJobs       = []byte("jobs")
	bucketJobsByTime = []byte("jobs_by_created") // created (8 bytes, big-endian ns) + id -> nothing
	bucketProcessed  = []byte("processed")       // id -> finished (8 bytes, big-endian ns)
	bucketOutbox     = []byte("outbox")          // seq (8 bytes, big-endian) -> message
	bucketFileCache  = []byte("filecache")       // scope -> bucket of path -> entry
	keySchema        = []byte("schema")
)

// ErrLocked is returned (wrapped in an error naming the file) by Open when another
// process holds the database.
var ErrLocked = errors.New("state database is in use by another process")

type lockedError struct{ path string }

func (e *lockedError) Error() string {
	return fmt.Sprintf("state database %s is in use by another process (another brr-worker with the same --data-dir?)", e.path)
}

func (e *lockedError) Is(target error) bool { return target == ErrLocked }

// Options tune Open.
type Options struct {
	// Timeout is how long Open waits for another process to release the file; 0 means 1s.
	Timeout time.Duration
	// NoSync skips fsync on commit: faster, and a crash may lose the last commits. For tests.
	NoSync bool
}

// DB is the worker's state database. It is safe for concurrent use.
type DB struct {
	bolt   *bbolt.DB
	path   string
	notify chan struct{}

	// Writes go through one committer goroutine, which runs every request waiting when
	// it starts a transaction in that transaction: concurrent writers share one fsync,
	// and a lone writer waits for nothing but its own commit.
	reqs    chan *commitReq
	closeMu sync.RWMutex
	closed  bool
	done    chan struct{}

	// boltBatch makes writes use bbolt's own DB.Batch instead, which waits up to
	// MaxBatchDelay for company; kept for the benchmark that compares the two.
	boltBatch bool

	// Outbox items published and waiting to be removed with the next commit
	// (AckOutboxSoon): acks, and the timer that removes them alone when no commit comes.
	ackMu    sync.Mutex
	acks     []uint64
	ackTimer *time.Timer

	stats *commitStats
}

type commitReq struct {
	fn     func(*bbolt.Tx) error
	notify bool // signal Notify after the commit
	queued time.Time
	done   chan error
	// after, when set, is called with the outcome instead of sending it on done.
	after func(error)
}

// Open opens or creates the state database at path, with its buckets. A database that
// another process holds makes Open fail after opts.Timeout with an error that wraps
// ErrLocked; one written by a newer brr-worker (a higher schema version) is refused; a
// damaged one (truncated, overwritten) gives an error wrapping ErrDamaged, and the caller
// may MoveAside it and open a fresh one.
func Open(path string, opts Options) (*DB, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	bdb, err := openBolt(path, &bbolt.Options{
		Timeout: opts.Timeout,
		NoSync:  opts.NoSync,
		// Map address space for a large database up front: a commit that outgrows the
		// map remaps it, and a remap waits for every read transaction (the consume loop's
		// processed-id check) to end while blocking new ones. Only what is used is paged in.
		InitialMmapSize: 256 << 20,
		// The freelist is rebuilt when the database opens instead of written at every
		// commit, and kept as a map: cheaper commits for a database written this often.
		NoFreelistSync: true,
		FreelistType:   bbolt.FreelistMapType,
	})
	if errors.Is(err, berrors.ErrTimeout) {
		return nil, &lockedError{path: path}
	}
	if errors.Is(err, ErrDamaged) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	if err := guard(path, func() error {
		return bdb.Update(func(tx *bbolt.Tx) error {
			for _, name := range [][]byte{bucketMeta, bucketJobs, bucketJobsByTime, bucketProcessed, bucketOutbox, bucketFileCache} {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return fmt.Errorf("create bucket %s: %w", name, err)
				}
			}
			meta := tx.Bucket(bucketMeta)
			v := meta.Get(keySchema)
			if v == nil {
				return meta.Put(keySchema, binary.BigEndian.AppendUint64(nil, SchemaVersion))
			}
			if len(v) != 8 {
				return fmt.Errorf("schema version is %d bytes long, want 8: this is not a brr state database", len(v))
			}
			if got := binary.BigEndian.Uint64(v); got != SchemaVersion {
				return fmt.Errorf("schema version is %d and this brr-worker reads version %d: run a brr-worker at least as new as the one that wrote it, or use another --data-dir", got, SchemaVersion)
			}
			return nil
		})
	}); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	db := &DB{
		bolt:   bdb,
		path:   path,
		notify: make(chan struct{}, 1),
		reqs:   make(chan *commitReq, 1024),
		done:   make(chan struct{}),
		stats:  newCommitStats(),
	}
	go db.commitLoop()
	return db, nil
}

// Path returns the database's file name.
func (db *DB) Path() string { return db.path }

// Close removes the outbox items AckOutboxSoon was given, waits for pending writes and
// closes the database.
func (db *DB) Close() error {
	_ = db.FlushOutboxAcks() // on error they are published again at the next start: harmless
	db.closeMu.Lock()
	if db.closed {
		db.closeMu.Unlock()
		return nil
	}
	db.closed = true
	close(db.reqs)
	db.closeMu.Unlock()
	<-db.done
	if err := db.bolt.Close(); err != nil {
		return fmt.Errorf("close state database %s: %w", db.path, err)
	}
	return nil
}

// Notify returns a channel that receives a value after every commit that added outbox
// items (signals coalesce: one value may stand for many commits), so that the publisher
// wakes without polling.
func (db *DB) Notify() <-chan struct{} { return db.notify }

func (db *DB) signal() {
	select {
	case db.notify <- struct{}{}:
	default:
	}
}

// update runs fn in a write transaction shared with other writers and returns once it
// is committed. fn may run more than once (when another writer's fn fails in a shared
// transaction, the others run again); it must not have effects outside tx.
func (db *DB) update(notify bool, fn func(*bbolt.Tx) error) error {
	if db.boltBatch {
		if err := db.bolt.Batch(fn); err != nil {
			return err
		}
		if notify {
			db.signal()
		}
		return nil
	}
	req := &commitReq{fn: fn, notify: notify, done: make(chan error, 1), queued: time.Now()}
	db.closeMu.RLock()
	if db.closed {
		db.closeMu.RUnlock()
		return fmt.Errorf("state database %s is closed", db.path)
	}
	db.reqs <- req
	db.closeMu.RUnlock()
	return <-req.done
}

// maxBatch bounds how many writes share one transaction.
const maxBatch = 512

func (db *DB) commitLoop() {
	defer close(db.done)
	batch := make([]*commitReq, 0, maxBatch)
	for req := range db.reqs {
		batch = append(batch[:0], req)
		if r := db.takeAcks(); r != nil {
			batch = append(batch, r)
		}
	drain:
		for len(batch) < maxBatch {
			select {
			case r, ok := <-db.reqs:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		db.commit(batch)
	}
}

// commit runs batch in one transaction; when one request fails, the transaction is
// rolled back and every request runs again in its own.
func (db *DB) commit(batch []*commitReq) {
	failed := -1
	start := time.Now()
	var wtx *bbolt.Tx
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		wtx = tx
		for i, r := range batch {
			if err := r.fn(tx); err != nil {
				failed = i
				return err
			}
		}
		return nil
	})
	if err != nil && len(batch) > 1 && failed >= 0 {
		for _, r := range batch {
			db.commit([]*commitReq{r})
		}
		return
	}
	db.observe(start, wtx, batch)
	if err == nil {
		// Signal before the writers return, so that a writer that enqueued can count on
		// the signal being there.
		for _, r := range batch {
			if r.notify {
				db.signal()
				break
			}
		}
	}
	for _, r := range batch {
		if r.after != nil {
			r.after(err)
			continue
		}
		r.done <- err
	}
}

// observe adds a commit of batch, begun at start in tx, to the commit figures.
func (db *DB) observe(start time.Time, tx *bbolt.Tx, batch []*commitReq) {
	var disk time.Duration
	if tx != nil {
		st := tx.Stats()
		disk = st.GetWriteTime()
	}
	db.stats.observe(start, time.Now(), disk, batch)
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

// timeKey encodes t for keys that sort by time; times before 1970 sort first.
func timeKey(t time.Time) uint64 {
	if t.IsZero() || t.Before(time.Unix(0, 0)) {
		return 0
	}
	return uint64(t.UnixNano())
}

// ErrDamaged is wrapped by the error of Open for a file that is not a sound bbolt
// database (truncated, overwritten): see MoveAside.
var ErrDamaged = errors.New("state database is damaged")

// damagedError is the error of Open for a damaged file.
type damagedError struct {
	path string
	err  error
}

func (e *damagedError) Error() string {
	return fmt.Sprintf("state database %s is damaged (%v)", e.path, e.err)
}

func (e *damagedError) Is(target error) bool { return target == ErrDamaged }

// openBolt opens the bbolt file at path and checks it before anything else reads it:
// bbolt maps the file into memory, so a page past the end of a truncated file is a
// SIGBUS that kills the process, and a damaged page can make bbolt panic. Faults and
// panics during the open and the check become an error wrapping ErrDamaged.
func openBolt(path string, opts *bbolt.Options) (*bbolt.DB, error) {
	if err := checkFile(path); err != nil {
		return nil, &damagedError{path, err}
	}
	var bdb *bbolt.DB
	err := guard(path, func() error {
		var err error
		bdb, err = bbolt.Open(path, 0o600, opts)
		if err != nil {
			return err
		}
		return nil
	})
	if err != nil && bdb != nil {
		_ = bdb.Close()
	}
	var de *damagedError
	if errors.As(err, &de) {
		return nil, err
	}
	if err != nil && !errors.Is(err, berrors.ErrTimeout) && !errors.Is(err, fs.ErrPermission) && !errors.Is(err, fs.ErrNotExist) {
		// bbolt's own errors about a file it cannot read: invalid, version mismatch,
		// checksum error.
		return nil, &damagedError{path, err}
	}
	return bdb, err
}

// guard runs fn, turning a memory fault (a read of a page past the end of the mapped
// file) or a panic into an error wrapping ErrDamaged.
func guard(path string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = &damagedError{path, fmt.Errorf("reading it failed: %v", r)}
		}
	}()
	return fn()
}

// MoveAside renames the damaged database at path to path.damaged-<UTC time>, keeping it
// for inspection, and returns the new name; Open then starts a fresh one. The state is
// rebuildable: the file cache fills again at the next backups (which read every file
// once), job records and unpublished events in it are lost, and a job that had finished
// here and is delivered again is recognised by BRR_RESULTS or runs again (jobs are
// idempotent by id).
func MoveAside(path string) (string, error) {
	aside := path + ".damaged-" + time.Now().UTC().Format("20060102T150405Z")
	if err := os.Rename(path, aside); err != nil {
		return "", fmt.Errorf("move damaged state database aside: %w", err)
	}
	return aside, nil
}

// bbolt's file layout, as far as checkFile reads it (go.etcd.io/bbolt internal/common):
// pages 0 and 1 each hold a 16-byte page header and a meta: magic, version, page size,
// flags, root bucket (16 bytes), freelist page, high-water page id, transaction id, and
// an FNV-64a checksum of the meta's first 56 bytes. The newest valid meta wins.
const (
	boltMagic      = 0xED0CDAED
	boltVersion    = 2
	boltPageHeader = 16
	boltMetaSize   = 64
)

// checkFile checks, without mapping it, that the bbolt file at path holds every page its
// newest valid meta says it uses: a truncated file would otherwise be mapped and read
// past its end, a SIGBUS in a goroutine of bbolt's that no recover can catch. A missing
// or empty file is fine (bbolt creates it).
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return nil // bbolt.Open says what is wrong
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil || info.Size() == 0 {
		return nil
	}
	readMeta := func(off int64) (pageSize uint32, pgid, txid uint64, ok bool) {
		var b [boltPageHeader + boltMetaSize]byte
		if _, err := f.ReadAt(b[:], off); err != nil {
			return 0, 0, 0, false
		}
		m := b[boltPageHeader:]
		h := fnv.New64a()
		_, _ = h.Write(m[:56])
		if binary.LittleEndian.Uint32(m[0:]) != boltMagic || binary.LittleEndian.Uint32(m[4:]) != boltVersion ||
			binary.LittleEndian.Uint64(m[56:]) != h.Sum64() {
			return 0, 0, 0, false
		}
		return binary.LittleEndian.Uint32(m[8:]), binary.LittleEndian.Uint64(m[40:]), binary.LittleEndian.Uint64(m[48:]), true
	}
	ps0, pgid, txid, ok0 := readMeta(0)
	if !ok0 {
		ps0 = uint32(os.Getpagesize())
	}
	_, pgid1, txid1, ok1 := readMeta(int64(ps0))
	switch {
	case !ok0 && !ok1:
		return fmt.Errorf("no valid meta page: not a bbolt file, or its first pages are overwritten")
	case !ok0 || ok1 && txid1 > txid:
		pgid = pgid1
	}
	if need := int64(pgid) * int64(ps0); need > info.Size() {
		return fmt.Errorf("its pages reach byte %d, the file has %d: truncated", need, info.Size())
	}
	return nil
}
