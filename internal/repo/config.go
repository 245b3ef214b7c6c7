package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/zeebo/blake3"
)

// FormatVersion is the repository format this code writes. Format 2 binds every metadata
// object to its type and name (see objectAD); format 1, which did not, is still read, and
// Upgrade turns a format 1 repository into format 2.
const FormatVersion = formatVersion

const (
	formatVersion = 2
	// legacyVersion is the oldest format this code reads.
	legacyVersion = 1
)

// initVersion is the format Init creates, and unboundWrites makes sealObject write
// objects as format 1 did: formatVersion and false, except in tests of Upgrade.
var (
	initVersion   = formatVersion
	unboundWrites = false
)

// configObject is the repository's one config object, encrypted with the master key.
type configObject struct {
	V           int       `json:"v"`
	ID          string    `json:"id"`
	ChunkerSeed []byte    `json:"chunker_seed"`
	Created     time.Time `json:"created"`
}

// Config describes a repository (the secret parts of its config left out).
type Config struct {
	// Version is the format version.
	Version int
	// ID is the repository's random id, in hex.
	ID string
	// Created is when Init made the repository.
	Created time.Time
}

func newConfig(now time.Time) (*configObject, error) {
	id := make([]byte, 16)
	seed := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return nil, fmt.Errorf("generate repository id: %w", err)
	}
	if _, err := rand.Read(seed); err != nil {
		return nil, fmt.Errorf("generate chunker seed: %w", err)
	}
	return &configObject{V: initVersion, ID: hex.EncodeToString(id), ChunkerSeed: seed, Created: now.UTC()}, nil
}

// decodeConfig parses the plaintext of a config object.
func decodeConfig(data []byte) (*configObject, error) {
	var c configObject
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decode config: %w", err)
	}
	if c.V < legacyVersion || c.V > formatVersion {
		return nil, fmt.Errorf("decode config: repository format version %d; this brr reads versions %d to %d, upgrade brr", c.V, legacyVersion, formatVersion)
	}
	if len(c.ChunkerSeed) != 32 {
		return nil, fmt.Errorf("decode config: chunker seed of %d bytes, want 32", len(c.ChunkerSeed))
	}
	if c.ID == "" {
		return nil, fmt.Errorf("decode config: no repository id")
	}
	return &c, nil
}

var configHandle = Handle{Type: ConfigFile, Name: "config"}

// Config returns the repository's version, id and creation time.
func (r *Repository) Config() Config {
	r.cfgMu.RLock()
	defer r.cfgMu.RUnlock()
	return Config{Version: r.cfg.V, ID: r.cfg.ID, Created: r.cfg.Created}
}

// legacy reports whether the repository is still in format 1, whose objects may not be
// bound to their names: they are read either way until Upgrade has sealed them again.
func (r *Repository) legacy() bool {
	r.cfgMu.RLock()
	defer r.cfgMu.RUnlock()
	return r.cfg.V < formatVersion
}

// objectAD is the associated data a metadata object is sealed with in format 2: its type
// and name, so that an object moved or copied to another name (a snapshot file swapped
// with another, which needs only write access to the storage, not the key) fails
// authentication instead of being read as what its new name says. Index files are named
// by a hash of their sealed bytes, which cannot be part of what is sealed: they bind
// their type here, and their name is checked against the hash on load.
func objectAD(h Handle) []byte {
	if h.Type == IndexFile {
		return []byte("brr2 " + string(IndexFile))
	}
	return []byte("brr2 " + h.String())
}

// saveJSON encodes v as JSON, compresses and encrypts it, and saves it under h.
func (r *Repository) saveJSON(ctx context.Context, h Handle, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", h, err)
	}
	if err := r.be.Save(ctx, h, NewByteReader(r.sealObject(h, data))); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	return nil
}

// loadObject loads h, decrypts and decompresses it. Data that fails authentication, or
// an index file whose bytes do not hash to its name, gives an error wrapping ErrDamaged.
func (r *Repository) loadObject(ctx context.Context, h Handle) ([]byte, error) {
	data, err := r.be.Load(ctx, h, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", h, err)
	}
	plain, _, err := r.openObject(h, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDamaged, h, err)
	}
	return plain, nil
}

// sealObject compresses (when that pays) and encrypts a metadata object that is to be
// saved under h, bound to h (see objectAD). It does so in a format 1 repository too, which
// this brr reads either way, so that Upgrade can run while other workers write.
func (r *Repository) sealObject(h Handle, data []byte) []byte {
	if unboundWrites {
		return r.seal(data, nil)
	}
	return r.seal(data, objectAD(h))
}

// seal compresses (when that pays) and encrypts data with the associated data ad.
func (r *Repository) seal(data, ad []byte) []byte {
	buf := make([]byte, nonceSize, nonceSize+1+len(data)+tagSize)
	buf = r.comp.pack(buf, data)
	return sealInPlace(r.aead, buf, ad)
}

// openObject decrypts (in place) and decompresses what sealObject made of the object
// saved under h. bound says whether it was sealed bound to h; an unbound object is
// accepted only while the repository is in format 1.
func (r *Repository) openObject(h Handle, data []byte) (plain []byte, bound bool, err error) {
	if h.Type == IndexFile && ID(blake3.Sum256(data)).String() != h.Name {
		return nil, false, fmt.Errorf("content does not hash to the name")
	}
	var unbound []byte
	if r.legacy() {
		unbound = append([]byte(nil), data...) // a failed decrypt clobbers data
	}
	pt, err := decrypt(r.aead, data, objectAD(h))
	if err != nil && unbound != nil {
		pt, err = decrypt(r.aead, unbound, nil)
		if err != nil {
			return nil, false, err
		}
		plain, err = r.comp.unpack(nil, pt)
		return plain, false, err
	}
	if err != nil {
		return nil, false, err
	}
	plain, err = r.comp.unpack(nil, pt)
	return plain, true, err
}
