// Package sftp stores a repository in a directory on an SSH server,
// sftp://[USER@]HOST[:PORT]/PATH. It exists so that a worker can keep snapshots off-site
// on any machine it can log in to, with nothing installed there but OpenSSH.
//
// The layout is the file backend's. Each object is a file written to a temporary name,
// synced (fsync@openssh.com, where the server has it) and renamed over its real name
// (posix-rename@openssh.com), so that neither a reader nor a crash sees part of one.
// SFTP cannot sync a directory: a rename is as durable as the server's file system
// makes it on its own.
//
// The server's host key must be in known_hosts. An unknown key is refused with the
// ssh-keyscan command that adds it, a changed one with a warning; no key is trusted on
// first use.
//
// A connection that drops, or stops answering keepalives, is dialled again once by the
// first caller to notice, and the callers that noticed with it use the new one. The
// request that failed runs again on it, which is safe because requests are idempotent
// (but a Remove run again may find its object gone already).
package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/brr-dev/brr/internal/repo"
)

const (
	fileMode = 0o600
	// tempPrefix starts the name of a file being written; List and Load never see one.
	tempPrefix = ".tmp-"
	// chunk is how much Save writes, or Load reads, between two looks at its context.
	chunk = 4 << 20
	// listWorkers is how many of the 256 pack directories List reads at once: each read
	// costs round trips, which overlap.
	listWorkers = 8
	// lostGrace is how long a request that failed the way a lost connection fails waits
	// for the session to be seen ending before it takes the error as its own.
	lostGrace = time.Second
)

// ErrClosed is returned by the methods of a closed Backend.
var ErrClosed = errors.New("sftp repository is closed")

// Backend is a repository in a directory on an SSH server:
//
//	PATH/config
//	PATH/keys/<name>
//	PATH/data/<first two hex digits of name>/<name>
//	PATH/index/<name>, snapshots/, pins/, plans/, locks/
//
// Files are created 0600. It is safe for concurrent use: requests share one connection,
// and many may be in flight at once.
type Backend struct {
	cfg Config
	dir string // PATH, absolute on the server

	mu     sync.Mutex // held while dialling, so that callers share one reconnect
	cur    *conn      // nil after a failed reconnect: the next request dials
	closed bool
	dials  int
}

var _ repo.Backend = (*Backend)(nil)

// Open connects to the server and returns the backend for the repository in cfg.Path,
// creating the directory and its layout (but no objects) where they are missing.
func Open(ctx context.Context, cfg Config) (*Backend, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c, err := dial(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", cfg.url(), err)
	}
	b := &Backend{cfg: cfg, cur: c, dials: 1}
	if err := b.layout(ctx); err != nil {
		b.Close() // the connection layout ended with, which may be another one
		return nil, fmt.Errorf("open %s: %w", cfg.url(), err)
	}
	if !strings.HasPrefix(cfg.Path, "/") {
		b.cfg.Path = b.dir // so that Location names the directory whatever the login directory
	}
	return b, nil
}

// layout creates PATH and a directory per object type; the 256 pack directories are made
// on first open, at once, and again by Save should one go missing.
func (b *Backend) layout(ctx context.Context) error {
	return b.do(ctx, func(c *conn) error {
		if err := c.sftp.MkdirAll(b.cfg.Path); err != nil {
			return fmt.Errorf("create repository directory %s: %w", b.cfg.Path, err)
		}
		dir, err := c.sftp.RealPath(b.cfg.Path)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", b.cfg.Path, err)
		}
		b.dir = dir
		if _, err := c.sftp.Stat(path.Join(dir, string(repo.PackFile), "ff")); err == nil {
			return nil // made by an earlier open
		}
		var dirs []string
		for _, t := range repo.FileTypes {
			if t != repo.ConfigFile {
				dirs = append(dirs, path.Join(dir, string(t)))
			}
		}
		if err := mkdirs(c, dirs); err != nil {
			return err
		}
		dirs = dirs[:0]
		for i := 0; i < 256; i++ {
			dirs = append(dirs, path.Join(dir, string(repo.PackFile), fmt.Sprintf("%02x", i)))
		}
		return mkdirs(c, dirs)
	})
}

// mkdirs creates dirs, whose parents exist, listWorkers at a time.
func mkdirs(c *conn, dirs []string) error {
	errs := make(chan error, len(dirs))
	sem := make(chan struct{}, listWorkers)
	for _, d := range dirs {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			err := c.sftp.Mkdir(d)
			if err != nil {
				if fi, serr := c.sftp.Stat(d); serr == nil && fi.IsDir() {
					err = nil // there already
				}
			}
			if err != nil {
				err = fmt.Errorf("create repository directory %s: %w", d, err)
			}
			errs <- err
		}()
	}
	var first error
	for range dirs {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// Location returns the repository's URL, sftp://USER@HOST:PORT/PATH, with the defaults
// filled in and a relative PATH made absolute.
func (b *Backend) Location() string { return b.cfg.url() }

// Close closes the connection; later calls fail with ErrClosed.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if b.cur != nil {
		b.cur.close()
		b.cur = nil
	}
	return nil
}

// do runs op on the connection. When op fails because the connection is gone, do dials
// again (one dial shared by every caller that saw the same connection go) and runs op
// once more: ops are idempotent, so running one that the server may have done already is
// harmless.
func (b *Backend) do(ctx context.Context, op func(*conn) error) error {
	c, err := b.conn(ctx, nil)
	if err != nil {
		return err
	}
	err = op(c)
	if err == nil || !lost(c, err) || ctx.Err() != nil {
		return err
	}
	c, rerr := b.conn(ctx, c)
	if rerr != nil {
		return fmt.Errorf("%w (then reconnecting: %w)", err, rerr)
	}
	return op(c)
}

// lost reports whether op's failure with err was c's connection going away.
func lost(c *conn, err error) bool {
	if c.isDead() {
		return true
	}
	if !connError(err) {
		return false
	}
	select {
	case <-c.dead:
		return true
	case <-time.After(lostGrace):
		return false
	}
}

// conn returns the current connection, dialling a new one when there is none or when
// it is still the broken one; callers that saw the same connection break share the
// dial.
func (b *Backend) conn(ctx context.Context, broken *conn) (*conn, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, ErrClosed
	}
	if b.cur != nil && b.cur != broken && !b.cur.isDead() {
		return b.cur, nil
	}
	if b.cur != nil {
		b.cur.close()
		b.cur = nil
	}
	c, err := dial(ctx, b.cfg)
	if err != nil {
		return nil, err
	}
	b.cur = c
	b.dials++
	return c, nil
}

// path returns the file of h (see repo.Handle.Path).
func (b *Backend) path(h repo.Handle) (string, error) {
	rel, err := h.Path()
	if err != nil {
		return "", err
	}
	return path.Join(b.dir, rel), nil
}

// Load reads length bytes of h from offset; length 0 means to the end.
func (b *Backend) Load(ctx context.Context, h repo.Handle, offset, length int64) ([]byte, error) {
	if err := repo.CheckLoad(ctx, h, offset, length); err != nil {
		return nil, err
	}
	p, err := b.path(h)
	if err != nil {
		return nil, fmt.Errorf("load %w", err)
	}
	var buf []byte
	err = b.do(ctx, func(c *conn) error {
		var lerr error
		buf, lerr = load(ctx, c, p, offset, length)
		return lerr
	})
	if err != nil {
		return nil, fmt.Errorf("load %s: %w", h, err)
	}
	return buf, nil
}

func load(ctx context.Context, c *conn, p string, offset, length int64) ([]byte, error) {
	f, err := c.sftp.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	size := fi.Size()
	if length == 0 {
		length = size - offset
	}
	if offset > size || offset+length > size {
		return nil, fmt.Errorf("bytes %d to %d are past the end of the %d-byte object", offset, offset+length, size)
	}
	buf := make([]byte, length)
	for off := int64(0); off < length; off += chunk {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		end := min(off+chunk, length)
		n, err := f.ReadAt(buf[off:end], offset+off)
		if n == int(end-off) {
			continue
		}
		if err == nil || err == io.EOF { // shorter than it was a moment ago
			return nil, fmt.Errorf("read at %d: the object ends at %d bytes", offset+off, offset+off+int64(n))
		}
		return nil, fmt.Errorf("read at %d: %w", offset+off, err)
	}
	return buf, nil
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
	var size int64
	err = b.do(ctx, func(c *conn) error {
		fi, err := c.sftp.Stat(p)
		if err == nil {
			size = fi.Size()
		}
		return err
	})
	if err != nil {
		return repo.FileInfo{}, fmt.Errorf("stat %s: %w", h, err)
	}
	return repo.FileInfo{Name: h.Name, Size: size}, nil
}

// Remove deletes h's file. When the connection drops during the request, the retry may
// find h gone and return ErrNotExist, though it was this call that removed it.
func (b *Backend) Remove(ctx context.Context, h repo.Handle) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	p, err := b.path(h)
	if err != nil {
		return fmt.Errorf("remove %w", err)
	}
	if err := b.do(ctx, func(c *conn) error { return c.sftp.Remove(p) }); err != nil {
		return fmt.Errorf("remove %s: %w", h, err)
	}
	return nil
}
