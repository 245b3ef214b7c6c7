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
	"os"
	"path/filepath"
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
}

type commitReq struct {
	fn     func(*bbolt.Tx) error
	notify bool // signal Notify after the commit
	done   chan error
}

// Open opens or creates the state database at path, with its buckets. A database that
// another process holds makes Open fail after opts.Timeout with an error that wraps
// ErrLocked; one written by a newer brr-worker (a higher schema version) is refused.
func Open(path string, opts Options) (*DB, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = time.Second
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create state directory: %w", err)
	}
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{
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
	if err != nil {
		return nil, fmt.Errorf("open state database %s: %w", path, err)
	}
	if err := bdb.Update(func(tx *bbolt.Tx) error {
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
	}
	go db.commitLoop()
	return db, nil
}

// Path returns the database's file name.
func (db *DB) Path() string { return db.path }

// Close waits for pending writes and closes the database.
func (db *DB) Close() error {
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
	req := &commitReq{fn: fn, notify: notify, done: make(chan error, 1)}
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
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
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
		r.done <- err
	}
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(make([]byte, 0, 8), v) }

// timeKey encodes t for keys that sort by time; times before 1970 sort first.
func timeKey(t time.Time) uint64 {
	if t.IsZero() || t.Before(time.Unix(0, 0)) {
		return 0
	}
	return uint64(t.UnixNano())
}
