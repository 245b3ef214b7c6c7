package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
)

// KDFParams are the argon2id parameters that turn a password into the key that wraps the
// master key. They are stored in each key object, so changing the defaults never locks out
// an existing key.
type KDFParams struct {
	Time      uint32 `json:"time"`
	MemoryKiB uint32 `json:"memory_kib"`
	Threads   uint8  `json:"threads"`
}

// DefaultKDF costs about a tenth of a second and 64 MiB on a current core: slow for a
// password guesser, unnoticeable for a worker that opens a repository once.
var DefaultKDF = KDFParams{Time: 1, MemoryKiB: 64 << 10, Threads: 2}

// Bounds on KDF parameters read from a key object, so a crafted key object cannot make
// Open allocate without limit or spin for hours.
const (
	maxKDFTime      = 64
	maxKDFMemoryKiB = 4 << 20 // 4 GiB
)

func (p KDFParams) orDefault() KDFParams {
	if p == (KDFParams{}) {
		return DefaultKDF
	}
	if p.Time == 0 {
		p.Time = DefaultKDF.Time
	}
	if p.MemoryKiB == 0 {
		p.MemoryKiB = DefaultKDF.MemoryKiB
	}
	if p.Threads == 0 {
		p.Threads = DefaultKDF.Threads
	}
	return p
}

func (p KDFParams) validate() error {
	switch {
	case p.Time == 0 || p.Time > maxKDFTime:
		return fmt.Errorf("kdf time %d outside 1..%d", p.Time, maxKDFTime)
	case p.MemoryKiB < 8*uint32(p.Threads) || p.MemoryKiB > maxKDFMemoryKiB:
		return fmt.Errorf("kdf memory %d KiB outside %d..%d", p.MemoryKiB, 8*uint32(p.Threads), maxKDFMemoryKiB)
	case p.Threads == 0:
		return fmt.Errorf("kdf threads is 0")
	}
	return nil
}

// keyObject is what a keys/<id> object holds: the master key encrypted with a key derived
// from one password. It is JSON so that people can see what KDF a repository uses.
type keyObject struct {
	V       int       `json:"v"`
	KDF     string    `json:"kdf"`
	Params  KDFParams `json:"params"`
	Salt    []byte    `json:"salt"`
	Data    []byte    `json:"data"` // nonce || AES-256-GCM(master key JSON) || tag
	Created time.Time `json:"created"`
	// Host, User and JobID say where the key came from: the worker's host, who asked for
	// it and the key job that added it. They are in the clear, like Created, so that
	// `brr key list` shows them without a password, and absent from keys written before
	// key management, which read as before (the version stays 1).
	Host  string `json:"host,omitempty"`
	User  string `json:"user,omitempty"`
	JobID string `json:"job_id,omitempty"`
}

const (
	keyVersion = 1
	kdfArgon2  = "argon2id"
	saltSize   = 32
)

// decodeKey parses a key object and checks its fields, without trying any password.
func decodeKey(data []byte) (*keyObject, error) {
	var k keyObject
	if err := json.Unmarshal(data, &k); err != nil {
		return nil, fmt.Errorf("decode key: %w", err)
	}
	if k.V != keyVersion {
		return nil, fmt.Errorf("decode key: version %d, this brr reads version %d", k.V, keyVersion)
	}
	if k.KDF != kdfArgon2 {
		return nil, fmt.Errorf("decode key: kdf %q, this brr knows %q", k.KDF, kdfArgon2)
	}
	if err := k.Params.validate(); err != nil {
		return nil, fmt.Errorf("decode key: %w", err)
	}
	if len(k.Salt) < 16 || len(k.Salt) > 64 {
		return nil, fmt.Errorf("decode key: salt of %d bytes", len(k.Salt))
	}
	if len(k.Data) < Overhead {
		return nil, fmt.Errorf("decode key: %d bytes of key data", len(k.Data))
	}
	return &k, nil
}

func (k *keyObject) kek(password []byte) []byte {
	key := argon2.IDKey(password, k.Salt, k.Params.Time, k.Params.MemoryKiB, k.Params.Threads, 32)
	if k.Params.MemoryKiB >= releaseKDFKiB {
		// The derivation's memory (64 MiB by default) is garbage now. Left to the
		// collector and the runtime's scavenger, its pages stay resident for a while, and
		// a worker opening its repositories at start would carry them into its first
		// jobs; returned now, they are not counted in its peak.
		debug.FreeOSMemory()
	}
	return key
}

// releaseKDFKiB is the derivation memory from which kek returns it to the system at once.
const releaseKDFKiB = 16 << 10

// errNotThisKey says a password does not open one key object.
var errNotThisKey = errors.New("password does not open this key")

// open returns the master key that k wraps, or errNotThisKey.
func (k *keyObject) open(password []byte) (*masterKey, error) {
	aead, err := newAEAD(k.kek(password))
	if err != nil {
		return nil, err
	}
	data := append([]byte(nil), k.Data...)
	pt, err := decrypt(aead, data, nil)
	if err != nil {
		return nil, errNotThisKey
	}
	var mk masterKey
	if err := json.Unmarshal(pt, &mk); err != nil {
		return nil, fmt.Errorf("decode master key: %w", err)
	}
	return &mk, nil
}

// sealKey wraps mk with a key derived from password under params.
func sealKey(mk *masterKey, password []byte, params KDFParams, meta KeyMeta, now time.Time) ([]byte, error) {
	if err := params.validate(); err != nil {
		return nil, err
	}
	k := &keyObject{V: keyVersion, KDF: kdfArgon2, Params: params, Salt: make([]byte, saltSize), Created: now.UTC(),
		Host: meta.Host, User: meta.User, JobID: meta.JobID}
	if _, err := rand.Read(k.Salt); err != nil {
		return nil, fmt.Errorf("generate salt: %w", err)
	}
	aead, err := newAEAD(k.kek(password))
	if err != nil {
		return nil, err
	}
	pt, err := json.Marshal(mk)
	if err != nil {
		return nil, fmt.Errorf("encode master key: %w", err)
	}
	k.Data = encrypt(aead, nil, pt, nil)
	return json.MarshalIndent(k, "", "  ")
}

// saveKey stores a new key object for password and returns what it is.
func saveKey(ctx context.Context, be Backend, mk *masterKey, password []byte, params KDFParams, meta KeyMeta) (KeyInfo, error) {
	now := time.Now()
	data, err := sealKey(mk, password, params, meta, now)
	if err != nil {
		return KeyInfo{}, fmt.Errorf("seal key: %w", err)
	}
	var name [16]byte
	if _, err := rand.Read(name[:]); err != nil {
		return KeyInfo{}, fmt.Errorf("generate key name: %w", err)
	}
	h := Handle{Type: KeyFile, Name: hex.EncodeToString(name[:])}
	if err := be.Save(ctx, h, NewByteReader(data)); err != nil {
		return KeyInfo{}, fmt.Errorf("save key %s: %w", h.Name, err)
	}
	k, err := decodeKey(data)
	if err != nil {
		return KeyInfo{}, err
	}
	return k.info(h.Name), nil
}

// maxKeySize bounds what is read as a key object.
const maxKeySize = 64 << 10

// openKeys tries password on every key object and returns the master key of the first
// that opens, and that key's id. Keys whose id starts with hint (when not empty) are
// tried first: each try costs a KDF run.
func openKeys(ctx context.Context, be Backend, password []byte, hint string) (*masterKey, string, error) {
	var names []FileInfo
	err := be.List(ctx, KeyFile, func(fi FileInfo) error {
		names = append(names, fi)
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("list keys: %w", err)
	}
	if len(names) == 0 {
		return nil, "", fmt.Errorf("%w: the repository at %s has no keys", ErrWrongPassword, be.Location())
	}
	if hint != "" {
		slices.SortStableFunc(names, func(a, b FileInfo) int {
			return cmpBool(strings.HasPrefix(b.Name, hint), strings.HasPrefix(a.Name, hint))
		})
	}
	var bad []error
	for _, fi := range names {
		if fi.Size > maxKeySize {
			bad = append(bad, fmt.Errorf("key %s: %d bytes is too large for a key", fi.Name, fi.Size))
			continue
		}
		data, err := be.Load(ctx, Handle{Type: KeyFile, Name: fi.Name}, 0, 0)
		if err != nil {
			if IsNotExist(err) {
				continue // removed since listed
			}
			return nil, "", fmt.Errorf("load key %s: %w", fi.Name, err)
		}
		k, err := decodeKey(data)
		if err != nil {
			bad = append(bad, fmt.Errorf("key %s: %w", fi.Name, err))
			continue
		}
		mk, err := k.open(password)
		if errors.Is(err, errNotThisKey) {
			continue
		}
		if err != nil {
			bad = append(bad, fmt.Errorf("key %s: %w", fi.Name, err))
			continue
		}
		return mk, fi.Name, nil
	}
	err = fmt.Errorf("%w: none of the repository's %d keys opens with it", ErrWrongPassword, len(names))
	if len(bad) > 0 {
		err = fmt.Errorf("%w (%d unreadable: %w)", err, len(bad), errors.Join(bad...))
	}
	return nil, "", err
}

// cmpBool orders false before true.
func cmpBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}
