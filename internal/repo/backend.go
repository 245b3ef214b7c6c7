package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
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

// Path returns where h lives in the directory layout the file, s3 and sftp backends
// share, relative and slash-separated: "config", "data/<first two hex digits>/<name>"
// for a pack, "<type>/<name>" for the rest. It checks that the name cannot leave its
// directory (no separator, no leading dot, so no temporary file's name either).
func (h Handle) Path() (string, error) {
	if !ValidName(h.Name) {
		return "", fmt.Errorf("%s: invalid object name %q", h, h.Name)
	}
	switch h.Type {
	case ConfigFile:
		if h.Name != "config" {
			return "", fmt.Errorf("%s: the config object is named \"config\", not %q", h, h.Name)
		}
		return "config", nil
	case PackFile:
		dir, ok := PackDir(h.Name)
		if !ok {
			return "", fmt.Errorf("%s: pack name %q is not a lower-case hex id", h, h.Name)
		}
		return string(h.Type) + "/" + dir + "/" + h.Name, nil
	case KeyFile, IndexFile, SnapshotFile, PinFile, PlanFile, LockFile:
		return string(h.Type) + "/" + h.Name, nil
	}
	return "", fmt.Errorf("%s: unknown object type %q", h, h.Type)
}

// ValidName reports whether name can name an object in a directory layout: not empty,
// no leading dot, no path separator or NUL.
func ValidName(name string) bool {
	return name != "" && name[0] != '.' && !strings.ContainsAny(name, `/\`+"\x00")
}

// PackDir is the sub-directory of data/ that holds the pack name; ok is false when name
// is no pack's.
func PackDir(name string) (dir string, ok bool) {
	if !ValidName(name) || len(name) < 2 || !isHex(name[0]) || !isHex(name[1]) {
		return "", false
	}
	return name[:2], true
}

// CheckLoad is what every Backend.Load checks first: that ctx is not done and that
// offset and length are not negative.
func CheckLoad(ctx context.Context, h Handle, offset, length int64) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	if offset < 0 || length < 0 {
		return fmt.Errorf("load %s: negative offset %d or length %d", h, offset, length)
	}
	return nil
}

func isHex(c byte) bool { return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' }

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
	// Save stores the bytes of rd under h, durably, before returning. It reads rd from
	// its start (calling Rewind first, and again before any retry) to its Length, and
	// stores nothing under h when rd fails or ends early, or ctx ends, before all of it
	// is stored. rd is not used after Save returns.
	Save(ctx context.Context, h Handle, rd RewindReader) error
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

// RewindReader is what Backend.Save reads an object from: its bytes, as many as Length
// says, from the start again after Rewind, so that a backend can retry an upload (or
// read the object twice, to hash it first) without the caller holding it in memory.
// A pack is saved from its temporary file (NewFileReader), smaller objects from memory
// (NewByteReader).
//
// Both readers here are also an io.ReaderAt and an io.Seeker, which some backends use to
// read parts of the object at once (S3 uploads parts in parallel from an io.ReaderAt).
// Such reads do not move the position that Read reads from.
type RewindReader interface {
	io.Reader
	// Rewind makes the next Read start from the first byte again.
	Rewind() error
	// Length is the number of bytes the object has.
	Length() int64
}

// ByteReader is a RewindReader of a byte slice.
type ByteReader struct {
	*bytes.Reader
	n int64
}

// NewByteReader returns a RewindReader of b, which must not change until Save returns.
func NewByteReader(b []byte) *ByteReader {
	return &ByteReader{Reader: bytes.NewReader(b), n: int64(len(b))}
}

// Rewind seeks to the start.
func (r *ByteReader) Rewind() error {
	_, err := r.Seek(0, io.SeekStart)
	return err
}

// Length returns the length of the slice.
func (r *ByteReader) Length() int64 { return r.n }

// FileReader is a RewindReader of the first size bytes of a file. It reads with pread
// (ReadAt), so it neither uses nor moves the file's own offset.
type FileReader struct {
	*io.SectionReader
}

// NewFileReader returns a RewindReader of f's bytes from 0 to size; f must stay open and
// unchanged in that range until Save returns.
func NewFileReader(f *os.File, size int64) *FileReader {
	return &FileReader{SectionReader: io.NewSectionReader(f, 0, size)}
}

// Rewind seeks to the start.
func (r *FileReader) Rewind() error {
	_, err := r.Seek(0, io.SeekStart)
	return err
}

// Length returns the size given to NewFileReader.
func (r *FileReader) Length() int64 { return r.Size() }

// LoaderInto is a Backend that can also read into a buffer its caller gives, which the
// caller then reuses: the file backend is one. The repository reads blobs through it
// into pooled buffers (rangeBuf), so that a restore, which reads the whole repository,
// does not allocate (and clear, and collect) a buffer per read.
type LoaderInto interface {
	// LoadInto reads len(buf) bytes of h from offset into buf; reading past the end is
	// an error, as with Load.
	LoadInto(ctx context.Context, h Handle, offset int64, buf []byte) error
}
