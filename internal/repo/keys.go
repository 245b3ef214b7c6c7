package repo

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strings"
	"time"

	"github.com/brr-dev/brr"
)

// A repository has one master key and any number of key objects (keys/<id>), each the
// master key wrapped with a key derived from one password or key file, with its own salt
// and KDF parameters, as restic's keys are. Adding a key writes one object; removing one
// deletes one; no other object changes, so every password keeps opening the repository
// until its own key object is removed. Changing a password is adding a key for the new
// one and removing the old one.

var (
	// ErrKeyInUse is wrapped by RemoveKey's error for the key the Repository was opened
	// with: removing it would leave this process unable to open the repository again.
	ErrKeyInUse = errors.New("key in use")
	// ErrLastKey is wrapped by RemoveKey's error for the repository's only key: without
	// a key nobody can read the repository again.
	ErrLastKey = errors.New("last key")
)

// KeyMeta says where a new key comes from: the host, the user who asked for it, and the
// key job that adds it (so that a job delivered twice finds the key it added).
type KeyMeta struct {
	Host  string
	User  string
	JobID string
}

// KeyInfo is what a key object says in the clear: everything but the master key it wraps.
type KeyInfo struct {
	// ID is the key object's name: 32 hex digits.
	ID      string
	Created time.Time
	Host    string
	User    string
	JobID   string
	// KDF is the key derivation function ("argon2id") and Params its parameters.
	KDF    string
	Params KDFParams
	// Err is set for a key object that cannot be read or decoded: it opens nothing.
	Err error
}

func (k *keyObject) info(id string) KeyInfo {
	return KeyInfo{ID: id, Created: k.Created, Host: k.Host, User: k.User, JobID: k.JobID, KDF: k.KDF, Params: k.Params}
}

// osUser names the user this process runs as, or "" when it cannot tell.
func osUser() string {
	if u, err := user.Current(); err == nil {
		return u.Username
	}
	return os.Getenv("USER")
}

// KeyID returns the id of the key object the repository was opened (or created) with.
func (r *Repository) KeyID() string { return r.keyID }

// AddKeyFor adds a key for password, recorded as coming from meta, so that it or any
// existing password opens the repository. It works on an append-only repository: it
// only writes a new object.
func (r *Repository) AddKeyFor(ctx context.Context, password []byte, meta KeyMeta) (KeyInfo, error) {
	if len(password) == 0 {
		return KeyInfo{}, fmt.Errorf("add key: the password is empty; give a password or key file")
	}
	return saveKey(ctx, r.be, r.mk, password, r.opts.KDF.orDefault(), meta)
}

// Keys lists the repository's key objects, oldest first (then by id). One that cannot be
// read or decoded is listed with Err set; an error to list them at all is returned.
func (r *Repository) Keys(ctx context.Context) ([]KeyInfo, error) {
	var names []FileInfo
	err := r.be.List(ctx, KeyFile, func(fi FileInfo) error {
		names = append(names, fi)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	keys := make([]KeyInfo, 0, len(names))
	for _, fi := range names {
		if fi.Size > maxKeySize {
			keys = append(keys, KeyInfo{ID: fi.Name, Err: fmt.Errorf("%d bytes is too large for a key", fi.Size)})
			continue
		}
		data, err := r.be.Load(ctx, Handle{Type: KeyFile, Name: fi.Name}, 0, 0)
		if IsNotExist(err) {
			continue // removed since listed
		}
		if err != nil {
			return nil, fmt.Errorf("load key %s: %w", fi.Name, err)
		}
		k, err := decodeKey(data)
		if err != nil {
			keys = append(keys, KeyInfo{ID: fi.Name, Err: err})
			continue
		}
		keys = append(keys, k.info(fi.Name))
	}
	slices.SortFunc(keys, func(a, b KeyInfo) int {
		if c := a.Created.Compare(b.Created); c != 0 {
			return c
		}
		return strings.Compare(a.ID, b.ID)
	})
	return keys, nil
}

// FindKey returns the key whose id is ref or starts with it. No such key is an error
// wrapping brr.ErrNotFound; a prefix of several is an error too.
func (r *Repository) FindKey(ctx context.Context, ref string) (KeyInfo, error) {
	keys, err := r.Keys(ctx)
	if err != nil {
		return KeyInfo{}, err
	}
	return findKey(keys, ref)
}

func findKey(keys []KeyInfo, ref string) (KeyInfo, error) {
	var found []KeyInfo
	for _, k := range keys {
		if k.ID == ref {
			return k, nil
		}
		if ref != "" && strings.HasPrefix(k.ID, ref) {
			found = append(found, k)
		}
	}
	switch len(found) {
	case 0:
		return KeyInfo{}, fmt.Errorf("key %q: %w", ref, brr.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return KeyInfo{}, fmt.Errorf("key %q: %d keys start with it; give more of the id", ref, len(found))
}

// RemoveKey deletes the key object id (a full id, or a unique prefix), after which its
// password no longer opens the repository. It refuses, with an error saying why and what
// to do, to remove the key the Repository was opened with (ErrKeyInUse), the only key
// that can be read (ErrLastKey), and anything in an append-only repository
// (ErrAppendOnly). A key that is not there is an error wrapping brr.ErrNotFound. Two
// RemoveKey calls at once, in two processes, may each leave the other's key as the
// last one and remove it: callers serialise them (the key job holds a lease).
func (r *Repository) RemoveKey(ctx context.Context, id string) (KeyInfo, error) {
	if r.opts.AppendOnly {
		return KeyInfo{}, errAppendOnly("remove key %s: removing a key deletes an object; %s", id, runElsewhere)
	}
	keys, err := r.Keys(ctx)
	if err != nil {
		return KeyInfo{}, err
	}
	k, err := findKey(keys, id)
	if err != nil {
		return KeyInfo{}, err
	}
	if k.ID == r.keyID {
		return k, brr.Permanent(fmt.Errorf("remove key %s: %w: this process opened the repository with it; "+
			"to rotate it, add a new key, point this worker's key_file or password_env at the new password, restart the worker, then remove the old key", shortKey(k.ID), ErrKeyInUse))
	}
	others := 0
	for _, o := range keys {
		if o.ID != k.ID && o.Err == nil {
			others++
		}
	}
	if others == 0 {
		return k, brr.Permanent(fmt.Errorf("remove key %s: %w: no other readable key would be left, and without a key nobody can read the repository; add a key first", shortKey(k.ID), ErrLastKey))
	}
	if err := r.be.Remove(ctx, Handle{Type: KeyFile, Name: k.ID}); err != nil && !IsNotExist(err) {
		return k, fmt.Errorf("remove key %s: %w", shortKey(k.ID), err)
	}
	return k, nil
}

// shortKey is the first 8 hex digits of a key id, as lists show it.
func shortKey(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}
