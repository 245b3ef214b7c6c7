package repo

import (
	"context"
	"errors"
	"io/fs"
)

// FileType is the kind of object a backend stores; each has its own namespace.
type FileType string

// The object types of a repository.
const (
	ConfigFile   FileType = "config"    // the one repository config object (Name "config")
	KeyFile      FileType = "keys"      // wrapped master keys, one per password or key file
	PackFile     FileType = "data"      // pack files: encrypted blobs, then an encrypted header
	IndexFile    FileType = "index"     // encrypted index files: blob -> pack, offset, length
	SnapshotFile FileType = "snapshots" // encrypted snapshots; writing one commits a backup
	PinFile      FileType = "pins"      // encrypted recovery points: a label pinning a snapshot
	PlanFile     FileType = "plans"     // encrypted prune plans: packs condemned, deleted after a grace period
	LockFile     FileType = "locks"     // encrypted writer locks: a backup in progress, refreshed while it runs
)

// FileTypes lists every FileType, for backends that need to prepare a place for each.
var FileTypes = []FileType{ConfigFile, KeyFile, PackFile, IndexFile, SnapshotFile, PinFile, PlanFile, LockFile}

// Handle names one object in a backend.
type Handle struct {
	Type FileType
	// Name is a lower-case hex id (or "config"); backends may use its first characters
	// to fan objects out over sub-directories.
	Name string
}

func (h Handle) String() string { return string(h.Type) + "/" + h.Name }

// FileInfo describes a stored object.
type FileInfo struct {
	Name string
	Size int64
}

// ErrNotExist is returned (wrapped) by Load, Stat and Remove for an object that is not
// there. It is fs.ErrNotExist, so errors.Is(err, fs.ErrNotExist) works too.
var ErrNotExist = fs.ErrNotExist

// IsNotExist reports whether err says an object does not exist.
func IsNotExist(err error) bool { return errors.Is(err, ErrNotExist) }

// Backend stores a repository's objects. Implementations: package file (file://) and
// package natsobj (nats://, a JetStream object store). Every implementation passes the
// conformance suite in package backendtest.
//
// Objects are immutable once saved: Save writes an object completely or not at all (a
// reader never sees part of one, and a crash never leaves a partial object under its
// name), and saving a name that exists replaces it atomically. All methods are safe for
// concurrent use.
type Backend interface {
	// Location describes where the repository is, without any secret (for logs).
	Location() string
	// Save stores data under h, durably, before returning.
	Save(ctx context.Context, h Handle, data []byte) error
	// Load returns length bytes of h from offset; length 0 means to the end. Reading past
	// the end is an error.
	Load(ctx context.Context, h Handle, offset, length int64) ([]byte, error)
	// Stat returns the size of h.
	Stat(ctx context.Context, h Handle) (FileInfo, error)
	// Remove deletes h.
	Remove(ctx context.Context, h Handle) error
	// List calls fn for every object of type t, in no particular order, and stops at
	// fn's first error, which it returns.
	List(ctx context.Context, t FileType, fn func(FileInfo) error) error
	// Close releases what the backend holds; the repository is left as it is.
	Close() error
}
