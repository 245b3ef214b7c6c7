package repo

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"fmt"
)

// Every encrypted object and blob is nonce || AES-256-GCM ciphertext || tag. Nonces are
// random: with 96 bits, 2^32 encryptions under one key stay far below the collision bound,
// and a repository holds far fewer objects than that.
const (
	nonceSize = 12
	tagSize   = 16
	// Overhead is what encryption adds to every blob and object.
	Overhead = nonceSize + tagSize
)

// masterKey is a repository's secret: EncKey encrypts everything, IDKey keys the blob id
// hash (so ids do not reveal content) and the chunker seed lives in the config it encrypts.
type masterKey struct {
	EncKey [32]byte `json:"enc"`
	IDKey  [32]byte `json:"id"`
}

func newMasterKey() (*masterKey, error) {
	k := new(masterKey)
	if _, err := rand.Read(k.EncKey[:]); err != nil {
		return nil, fmt.Errorf("generate master key: %w", err)
	}
	if _, err := rand.Read(k.IDKey[:]); err != nil {
		return nil, fmt.Errorf("generate master key: %w", err)
	}
	return k, nil
}

// newAEAD returns AES-256-GCM under key; the result is safe for concurrent use.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("new cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("new gcm: %w", err)
	}
	return aead, nil
}

// errAuth is the error of an object that does not authenticate.
var errAuth = errors.New("ciphertext does not authenticate")

// encrypt appends nonce || Seal(plaintext) to dst and returns it; ad is authenticated
// with it, not stored (see objectAD).
func encrypt(aead cipher.AEAD, dst, plaintext, ad []byte) []byte {
	n := len(dst)
	dst = grow(dst, nonceSize+len(plaintext)+tagSize)[:n+nonceSize]
	nonce := dst[n : n+nonceSize]
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails on supported platforms.
	return aead.Seal(dst, nonce, plaintext, ad)
}

// decrypt authenticates and decrypts ciphertext (nonce || sealed) with the associated
// data ad in place: the plaintext returned uses ciphertext's storage. On failure the
// contents of ciphertext are undefined (GCM clears what it would have decrypted).
func decrypt(aead cipher.AEAD, ciphertext, ad []byte) ([]byte, error) {
	if len(ciphertext) < Overhead {
		return nil, fmt.Errorf("%w: %d bytes is shorter than the %d bytes of nonce and tag", errAuth, len(ciphertext), Overhead)
	}
	sealed := ciphertext[nonceSize:]
	pt, err := aead.Open(sealed[:0], ciphertext[:nonceSize], sealed, ad)
	if err != nil {
		return nil, errAuth
	}
	return pt, nil
}

// grow returns b with room for n more bytes.
func grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	nb := make([]byte, len(b), len(b)+n)
	copy(nb, b)
	return nb
}

// sealInPlace encrypts buf[nonceSize:] in place with the associated data ad, writing a
// fresh nonce into buf[:nonceSize], and returns nonce || ciphertext || tag (buf's storage
// when it has room for the tag).
func sealInPlace(aead cipher.AEAD, buf, ad []byte) []byte {
	buf = grow(buf, tagSize)
	nonce := buf[:nonceSize]
	_, _ = rand.Read(nonce) // crypto/rand.Read never fails on supported platforms.
	sealed := aead.Seal(buf[nonceSize:nonceSize], nonce, buf[nonceSize:], ad)
	return buf[:nonceSize+len(sealed)]
}
