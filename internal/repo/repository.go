package repo

import (
	"context"
	"crypto/cipher"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/zeebo/blake3"
)

// DefaultPackSize is the pack size used when Options.PackSize is 0.
const DefaultPackSize = 16 << 20

// Options tune a Repository. The zero value is right for production.
type Options struct {
	// PackSize is the size at which a pack is closed and saved; 0 means DefaultPackSize.
	PackSize int
	// KDF is used for keys that Init and AddKey create; zero means DefaultKDF.
	KDF KDFParams
	// Host is the host name recorded in snapshots made through this repository when the
	// snapshot does not name one.
	Host string
	// AppendOnly opens the repository for adding only: nothing in it is deleted or
	// overwritten through this Repository, except the writer locks every backup takes and
	// releases (and plans, which only a prune removes). Prune, GC, RemoveSnapshot,
	// RemovePin and Upgrade refuse with an error wrapping ErrAppendOnly, and the backend
	// is wrapped in a guard that refuses any other Remove, and a Save over an object that
	// exists. It is the worker's half of a ransomware-resistant repository; the other half
	// is a storage credential that cannot delete (see docs/operations.md, "Append-only repositories").
	AppendOnly bool
	// TempDir is where packs are written while they are filled (see packfile.go): a
	// pack's bytes go to a temporary file there, not to memory, and are saved from it.
	// Each pack being filled or saved takes up to PackSize plus one blob, and a file
	// there is unlinked as soon as it is created. "" means os.TempDir().
	TempDir string
	// KeyHint is the id, or a prefix of it, of the key that Open should try first: each
	// key tried costs a run of the KDF. The other keys are tried after it.
	KeyHint string
}

// Repository is an open repository. All its methods are safe for concurrent use.
type Repository struct {
	be    Backend
	opts  Options
	cfgMu sync.RWMutex // guards cfg.V, which Upgrade changes
	cfg   *configObject
	mk    *masterKey
	keyID string // the key object the repository was opened or created with
	aead  cipher.AEAD
	gear  *gearTable
	comp  *compressor
	idKey *blake3.Hasher // keyed with mk.IDKey; cloned into idPool
	idx   *index

	idPool   sync.Pool // *blake3.Hasher
	blobPool sync.Pool // *[]byte: encrypted blob being built, of a large chunk (see blob.go)

	// packMu guards filling the current pack and handing it to the writer; a SaveBlob
	// holds it while it waits for the writer, which is the bound on packs in temporary
	// files: the one being filled and the one being saved.
	packMu    sync.Mutex
	cur       *packBuf
	submitted uint64 // sequence number of the last pack handed to the writer
	closed    bool
	writeCh   chan *packBuf
	stop      context.CancelFunc
	done      chan struct{}

	// mu guards the claims and the writer's results. Lock order: packMu before mu before
	// idx.mu.
	mu        sync.Mutex
	pending   map[blobKey]struct{} // claimed by SaveBlob, pack not saved yet
	inflight  map[blobKey]*claim   // the pending blobs not yet in a pack
	written   uint64               // sequence number of the last pack the writer finished
	failures  uint64               // failed pack writes and blob saves so far (see Writer)
	lastErr   error                // the latest of them
	unindexed []indexPack          // saved packs no saved index file names yet
	progress  chan struct{}        // closed and replaced whenever written or failures changes
	stats     Stats

	indexMu sync.Mutex // one index file write at a time

	// Test hooks, nil outside tests: afterClaim runs in SaveBlob between claiming a blob
	// and compressing it; flushWaits runs in Flush when it is about to wait for claims.
	afterClaim func(ID)
	flushWaits func()
	// packFileHook, nil outside tests, is called with each pack's temporary file when it
	// is created.
	packFileHook func(*os.File)
}

// claim is a blob that a SaveBlob is compressing and encrypting. Other callers already
// see the blob as present (HasBlob, SaveBlob's added=false) and rely on it, so Flush
// waits for every claim to be in a pack or to fail.
type claim struct {
	done chan struct{} // closed when the blob is in a pack or its SaveBlob failed
	err  error         // why the SaveBlob failed; set before done is closed
}

// Init creates a repository in be, which must not hold one, with one key for password.
// The Repository owns be: its Close closes be. On error be is left open, the caller's.
func Init(ctx context.Context, be Backend, password []byte, opts Options) (*Repository, error) {
	if opts.AppendOnly {
		be = appendOnly(be)
	}
	if _, err := be.Stat(ctx, configHandle); err == nil {
		return nil, fmt.Errorf("%w at %s: open it instead, or choose another location", ErrAlreadyExists, be.Location())
	} else if !IsNotExist(err) {
		return nil, fmt.Errorf("stat config: %w", err)
	}
	if len(password) == 0 {
		return nil, fmt.Errorf("init repository at %s: the password is empty; give a password or key file", be.Location())
	}
	mk, err := newMasterKey()
	if err != nil {
		return nil, err
	}
	cfg, err := newConfig(time.Now())
	if err != nil {
		return nil, err
	}
	r, err := newRepository(be, mk, cfg, opts)
	if err != nil {
		return nil, err
	}
	k, err := saveKey(ctx, be, mk, password, opts.KDF.orDefault(), KeyMeta{Host: opts.Host, User: osUser()})
	if err != nil {
		r.stopWriter()
		return nil, err
	}
	r.keyID = k.ID
	if err := r.saveJSON(ctx, configHandle, cfg); err != nil {
		r.stopWriter()
		return nil, err
	}
	return r, nil
}

// Open opens the repository in be with password: it finds the key that password opens,
// reads the config and loads every index file. The Repository owns be: its Close closes
// be. On error be is left open, the caller's.
func Open(ctx context.Context, be Backend, password []byte, opts Options) (*Repository, error) {
	if opts.AppendOnly {
		be = appendOnly(be)
	}
	if _, err := be.Stat(ctx, configHandle); IsNotExist(err) {
		return nil, fmt.Errorf("%w at %s; create one first", ErrNoRepository, be.Location())
	} else if err != nil {
		return nil, fmt.Errorf("stat config: %w", err)
	}
	mk, keyID, err := openKeys(ctx, be, password, opts.KeyHint)
	if err != nil {
		return nil, err
	}
	aead, err := newAEAD(mk.EncKey[:])
	if err != nil {
		return nil, err
	}
	data, err := be.Load(ctx, configHandle, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	cfg, err := openConfig(aead, data)
	if err != nil {
		return nil, err
	}
	r, err := newRepository(be, mk, cfg, opts)
	if err != nil {
		return nil, err
	}
	r.keyID = keyID
	if err := r.ReloadIndex(ctx); err != nil {
		r.stopWriter()
		return nil, err
	}
	return r, nil
}

// openConfig decrypts and decodes the config object data: bound to its name in format 2,
// unbound in format 1 (and then it must say format 1).
func openConfig(aead cipher.AEAD, data []byte) (*configObject, error) {
	unbound := append([]byte(nil), data...) // a failed decrypt clobbers data
	bound := true
	plain, err := decrypt(aead, data, objectAD(configHandle))
	if err != nil {
		bound = false
		if plain, err = decrypt(aead, unbound, nil); err != nil {
			return nil, fmt.Errorf("%w: config: %w", ErrDamaged, err)
		}
	}
	comp, err := newCompressor()
	if err != nil {
		return nil, err
	}
	plain, err = comp.unpack(nil, plain)
	comp.close()
	if err != nil {
		return nil, fmt.Errorf("%w: config: %w", ErrDamaged, err)
	}
	cfg, err := decodeConfig(plain)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDamaged, err)
	}
	if !bound && cfg.V >= formatVersion {
		return nil, fmt.Errorf("%w: config says format %d but is not bound to its name", ErrDamaged, cfg.V)
	}
	return cfg, nil
}

func newRepository(be Backend, mk *masterKey, cfg *configObject, opts Options) (*Repository, error) {
	if opts.PackSize <= 0 {
		opts.PackSize = DefaultPackSize
	}
	aead, err := newAEAD(mk.EncKey[:])
	if err != nil {
		return nil, err
	}
	idKey, err := blake3.NewKeyed(mk.IDKey[:])
	if err != nil {
		return nil, fmt.Errorf("new id hasher: %w", err)
	}
	comp, err := newCompressor()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &Repository{
		be:       be,
		opts:     opts,
		cfg:      cfg,
		mk:       mk,
		aead:     aead,
		gear:     newGearTable(cfg.ChunkerSeed),
		comp:     comp,
		idKey:    idKey,
		idx:      newIndex(),
		writeCh:  make(chan *packBuf),
		stop:     cancel,
		done:     make(chan struct{}),
		pending:  make(map[blobKey]struct{}),
		inflight: make(map[blobKey]*claim),
		progress: make(chan struct{}),
	}
	r.idPool.New = func() any { return r.idKey.Clone() }
	r.blobPool.New = func() any { b := make([]byte, 0, MaxChunkSize+1024); return &b }
	go r.writePacks(ctx)
	r.cur = &packBuf{}
	return r, nil
}

// AddKey adds a key for password, so that either it or any existing password opens the
// repository. AddKeyFor (keys.go) also records where the key came from.
func (r *Repository) AddKey(ctx context.Context, password []byte) error {
	_, err := r.AddKeyFor(ctx, password, KeyMeta{Host: r.opts.Host, User: osUser()})
	return err
}

// ID returns the repository's id (hex).
func (r *Repository) ID() string { return r.cfg.ID }

// Backend returns the backend the repository is stored in: with Options.AppendOnly, the
// guard around it.
func (r *Repository) Backend() Backend { return r.be }

// AppendOnly reports whether the repository was opened with Options.AppendOnly.
func (r *Repository) AppendOnly() bool { return r.opts.AppendOnly }

// Close stops the background pack writer, then closes the backend, which the Repository
// owns from Open or Init on. It does not Flush: blobs saved since the last Flush are lost
// (the repository stays consistent). A second Close does nothing and returns nil.
func (r *Repository) Close() error {
	if !r.stopWriter() {
		return nil
	}
	if err := r.be.Close(); err != nil {
		return fmt.Errorf("close backend: %w", err)
	}
	return nil
}

// stopWriter stops the background pack writer and reports whether this call stopped it:
// false when the Repository was closed already. It leaves the backend open.
func (r *Repository) stopWriter() bool {
	r.packMu.Lock()
	if r.closed {
		r.packMu.Unlock()
		return false
	}
	r.closed = true
	r.cur.discard() // its blobs are lost, as Close says
	close(r.writeCh)
	r.packMu.Unlock()
	r.stop()
	<-r.done
	r.comp.close()
	return true
}

// errClosed is returned by writes to a closed Repository.
var errClosed = errors.New("repository is closed")

// Stats counts what a Repository knows and what it added.
type Stats struct {
	// Blobs and Packs are in the loaded index (including packs this process saved).
	Blobs int
	Packs int
	// StoredBytes is the size of those packs.
	StoredBytes int64
	// BlobsAdded, BytesAdded (stored: compressed and encrypted) and RawBytesAdded count
	// what this Repository saved in packs since it was opened.
	BlobsAdded    int64
	BytesAdded    int64
	RawBytesAdded int64
	PacksAdded    int64
}

// Stats returns the repository's counters.
func (r *Repository) Stats() Stats {
	r.mu.Lock()
	s := r.stats
	r.mu.Unlock()
	r.idx.mu.RLock()
	s.Blobs = r.idx.blobs.len()
	s.Packs = len(r.idx.packs)
	for _, n := range r.idx.packSize {
		s.StoredBytes += int64(n)
	}
	r.idx.mu.RUnlock()
	return s
}
