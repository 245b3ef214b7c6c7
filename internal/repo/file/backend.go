// Package file stores a repository in a local directory (file:///path). It exists so that a
// worker can keep snapshots on its own disk, or on a mounted one, with nothing else
// running: every object is a file, written to a temporary name, synced and renamed into
// place so that a crash never leaves a partial object under its real name, and pack files
// are fanned out over 256 sub-directories so that no directory grows too large.
package file

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/brr-dev/brr/internal/repo"
)

const (
	dirMode  = 0o700
	fileMode = 0o600
	// tempPrefix starts the name of a file being written; List and Load never see one.
	tempPrefix = ".tmp-"
	// writeChunk is how much Save writes between two looks at its context.
	writeChunk = 4 << 20
)

// Backend is a repository in a directory:
//
//	dir/config
//	dir/keys/<name>
//	dir/data/<first two hex digits of name>/<name>
//	dir/index/<name>
//	dir/snapshots/<name>
//
// Files are created 0600 and directories 0700. It is safe for concurrent use.
type Backend struct {
	dir string
}

var _ repo.Backend = (*Backend)(nil)

// Open returns the backend for the repository in dir, creating dir and its layout (but
// no objects) where they are missing.
func Open(dir string) (*Backend, error) {
	if dir == "" {
		return nil, errors.New("open file repository: no directory given (want file:///absolute/path)")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("open file repository %s: %w", dir, err)
	}
	if err := os.MkdirAll(abs, dirMode); err != nil {
		return nil, fmt.Errorf("create repository directory %s: %w", abs, err)
	}
	b := &Backend{dir: abs}
	for _, t := range repo.FileTypes {
		if t == repo.ConfigFile {
			continue
		}
		if err := mkdir(filepath.Join(abs, string(t))); err != nil {
			return nil, err
		}
	}
	for i := 0; i < 256; i++ {
		if err := mkdir(filepath.Join(abs, string(repo.PackFile), fmt.Sprintf("%02x", i))); err != nil {
			return nil, err
		}
	}
	if err := syncDir(abs); err != nil {
		return nil, err
	}
	return b, nil
}

func mkdir(p string) error {
	if err := os.Mkdir(p, dirMode); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("create repository directory %s: %w", p, err)
	}
	return nil
}

// Location returns the repository's URL.
func (b *Backend) Location() string { return "file://" + filepath.ToSlash(b.dir) }

// Dir returns the repository's directory.
func (b *Backend) Dir() string { return b.dir }

// Close does nothing: a file repository holds no resources between calls.
func (b *Backend) Close() error { return nil }

// path returns the file of h (see repo.Handle.Path).
func (b *Backend) path(h repo.Handle) (string, error) {
	rel, err := h.Path()
	if err != nil {
		return "", err
	}
	return filepath.Join(b.dir, filepath.FromSlash(rel)), nil
}

// Save copies rd to a temporary file beside h's file, syncs it, renames it over h's file
// and syncs the directory, so that h is either its old content or rd's, durably.
func (b *Backend) Save(ctx context.Context, h repo.Handle, rd repo.RewindReader) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	p, err := b.path(h)
	if err != nil {
		return fmt.Errorf("save %w", err)
	}
	dir := filepath.Dir(p)
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("save %s: create temporary file: %w", h, err)
	}
	tmp := f.Name()
	committed := false
	defer func() {
		if !committed {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if err := f.Chmod(fileMode); err != nil {
		return fmt.Errorf("save %s: chmod: %w", h, err)
	}
	if err := rd.Rewind(); err != nil {
		return fmt.Errorf("save %s: rewind: %w", h, err)
	}
	if err := copyObject(ctx, f, rd); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("save %s: sync: %w", h, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save %s: close: %w", h, err)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("save %s: rename: %w", h, err)
	}
	committed = true
	if err := syncDir(dir); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	return nil
}

// copyObject copies rd's Length bytes to f, looking at ctx between chunks; a reader that
// fails or ends early is an error.
func copyObject(ctx context.Context, f *os.File, rd repo.RewindReader) error {
	want := rd.Length()
	for n := int64(0); n < want; {
		if err := ctx.Err(); err != nil {
			return err
		}
		k, err := io.CopyN(f, rd, min(want-n, writeChunk))
		n += k
		if err == io.EOF {
			return fmt.Errorf("read: %w after %d of %d bytes", io.ErrUnexpectedEOF, n, want)
		}
		if err != nil {
			return fmt.Errorf("copy: %w", err)
		}
	}
	return nil
}

// Load reads length bytes of h from offset with pread; length 0 means to the end.
func (b *Backend) Load(ctx context.Context, h repo.Handle, offset, length int64) ([]byte, error) {
	var buf []byte
	err := b.load(ctx, h, offset, length, func(n int64) []byte {
		buf = make([]byte, n)
		return buf
	})
	if err != nil {
		return nil, err
	}
	return buf, nil
}

// LoadInto reads len(buf) bytes of h from offset into buf (repo.LoaderInto): a reader
// of many ranges reuses its buffers instead of making one per Load.
func (b *Backend) LoadInto(ctx context.Context, h repo.Handle, offset int64, buf []byte) error {
	if len(buf) == 0 {
		return fmt.Errorf("load %s: LoadInto needs a buffer of the bytes to read", h)
	}
	return b.load(ctx, h, offset, int64(len(buf)), func(int64) []byte { return buf })
}

// load reads length bytes of h from offset (0: to the end) into the buffer that mk
// returns for that length.
func (b *Backend) load(ctx context.Context, h repo.Handle, offset, length int64, mk func(int64) []byte) error {
	if err := repo.CheckLoad(ctx, h, offset, length); err != nil {
		return err
	}
	p, err := b.path(h)
	if err != nil {
		return fmt.Errorf("load %w", err)
	}
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("load %s: %w", h, err)
	}
	size := fi.Size()
	if length == 0 {
		length = size - offset
	}
	if offset > size || offset+length > size {
		return fmt.Errorf("load %s: bytes %d to %d are past the end of the %d-byte object", h, offset, offset+length, size)
	}
	buf := mk(length)
	n, err := f.ReadAt(buf, offset)
	if n == len(buf) {
		return nil
	}
	if err == nil || err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("load %s: read at %d: %w", h, offset, err)
}

// Stat returns the size of h.
func (b *Backend) Stat(ctx context.Context, h repo.Handle) (repo.FileInfo, error) {
	if err := ctx.Err(); err != nil {
		return repo.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	p, err := b.path(h)
	if err != nil {
		return repo.FileInfo{}, fmt.Errorf("stat %w", err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		return repo.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	return repo.FileInfo{Name: h.Name, Size: fi.Size()}, nil
}

// Remove deletes h's file and syncs its directory.
func (b *Backend) Remove(ctx context.Context, h repo.Handle) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	p, err := b.path(h)
	if err != nil {
		return fmt.Errorf("remove %w", err)
	}
	if err := os.Remove(p); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	if err := syncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	return nil
}

// List calls fn for every object of type t; files being written are skipped.
func (b *Backend) List(ctx context.Context, t repo.FileType, fn func(repo.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	switch t {
	case repo.ConfigFile:
		fi, err := os.Stat(filepath.Join(b.dir, "config"))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		return fn(repo.FileInfo{Name: "config", Size: fi.Size()})
	case repo.PackFile:
		for i := 0; i < 256; i++ {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("list %s: %w", t, err)
			}
			if err := listDir(filepath.Join(b.dir, string(t), fmt.Sprintf("%02x", i)), fn); err != nil {
				return err
			}
		}
		return nil
	case repo.KeyFile, repo.IndexFile, repo.SnapshotFile, repo.PinFile, repo.PlanFile, repo.LockFile:
		return listDir(filepath.Join(b.dir, string(t)), fn)
	}
	return fmt.Errorf("list: unknown object type %q", t)
}

// listDir calls fn for each regular file in dir whose name is not hidden; an error of
// fn is returned as it is.
func listDir(dir string, fn func(repo.FileInfo) error) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("list %s: %w", dir, err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		fi, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since ReadDir
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", dir, err)
		}
		if err := fn(repo.FileInfo{Name: e.Name(), Size: fi.Size()}); err != nil {
			return err
		}
	}
	return nil
}

// syncDir makes a rename or removal in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync directory %s: %w", dir, err)
	}
	return nil
}
