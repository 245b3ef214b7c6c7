package repo

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"
)

// formatVersion is the repository format this code writes and reads.
const formatVersion = 1

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
	return &configObject{V: formatVersion, ID: hex.EncodeToString(id), ChunkerSeed: seed, Created: now.UTC()}, nil
}

// decodeConfig parses the plaintext of a config object.
func decodeConfig(data []byte) (*configObject, error) {
	var c configObject
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("decode config: %w", err)
	}
	if c.V != formatVersion {
		return nil, fmt.Errorf("decode config: repository format version %d; this brr reads version %d, upgrade brr", c.V, formatVersion)
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
	return Config{Version: r.cfg.V, ID: r.cfg.ID, Created: r.cfg.Created}
}

// saveJSON encodes v as JSON, compresses and encrypts it, and saves it under h.
func (r *Repository) saveJSON(ctx context.Context, h Handle, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", h, err)
	}
	if err := r.be.Save(ctx, h, r.sealObject(data)); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	return nil
}

// loadObject loads h, decrypts and decompresses it. Data that fails authentication gives
// an error wrapping ErrDamaged.
func (r *Repository) loadObject(ctx context.Context, h Handle) ([]byte, error) {
	data, err := r.be.Load(ctx, h, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", h, err)
	}
	plain, err := r.openObject(data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDamaged, h, err)
	}
	return plain, nil
}

// sealObject compresses (when that pays) and encrypts a metadata object.
func (r *Repository) sealObject(data []byte) []byte {
	buf := make([]byte, nonceSize, nonceSize+1+len(data)+tagSize)
	buf, _ = r.comp.pack(buf, data, nil)
	return sealInPlace(r.aead, buf)
}

// openObject decrypts (in place) and decompresses what sealObject made.
func (r *Repository) openObject(data []byte) ([]byte, error) {
	plain, err := decrypt(r.aead, data)
	if err != nil {
		return nil, err
	}
	return r.comp.unpack(nil, plain)
}
