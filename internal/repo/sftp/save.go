package sftp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"

	"github.com/brr-dev/brr/internal/repo"
)

// Save copies rd to a temporary file beside h's file, syncs it where the server can,
// and renames it over h's file, so that h is either its old content or rd's. A Save cut
// short by a lost connection is tried again from rd's start on a new one.
//
// SFTP cannot sync a directory: the rename is as durable as the server's file system
// makes it on its own (ext4 and xfs commit it within seconds).
func (b *Backend) Save(ctx context.Context, h repo.Handle, rd repo.RewindReader) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	p, err := b.path(h)
	if err != nil {
		return fmt.Errorf("save %w", err)
	}
	var left []string // temporary files a lost connection kept Save from removing
	err = b.do(ctx, func(c *conn) error {
		tmp, err := save(ctx, c, p, rd)
		if err != nil && tmp != "" {
			if rerr := c.sftp.Remove(tmp); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
				left = append(left, tmp)
			}
		}
		return err
	})
	// Only on a connection that works, to not wait for another dial on one that doesn't.
	if err == nil && len(left) > 0 {
		_ = b.do(context.WithoutCancel(ctx), func(c *conn) error {
			for _, tmp := range left {
				_ = c.sftp.Remove(tmp)
			}
			return nil
		})
	}
	if err != nil {
		return fmt.Errorf("save %s: %w", h, err)
	}
	return nil
}

// save copies rd to p through a temporary file on c, and returns the temporary file's
// name when it may be left behind.
func save(ctx context.Context, c *conn, p string, rd repo.RewindReader) (tmp string, err error) {
	if err := rd.Rewind(); err != nil {
		return "", fmt.Errorf("rewind: %w", err)
	}
	var rnd [8]byte
	_, _ = rand.Read(rnd[:])
	tmp = path.Join(path.Dir(p), tempPrefix+hex.EncodeToString(rnd[:]))
	f, err := c.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	if errors.Is(err, fs.ErrNotExist) { // a pack directory removed by hand: make it again
		if err := c.sftp.MkdirAll(path.Dir(p)); err != nil {
			return "", fmt.Errorf("create directory %s: %w", path.Dir(p), err)
		}
		f, err = c.sftp.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL)
	}
	if err != nil {
		return "", fmt.Errorf("create temporary file: %w", err)
	}
	defer func() {
		if f != nil {
			_ = f.Close()
		}
	}()
	if err := f.Chmod(fileMode); err != nil {
		return tmp, fmt.Errorf("chmod: %w", err)
	}
	size := rd.Length()
	buf := make([]byte, min(size, chunk))
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return tmp, err
		}
		n, err := io.ReadFull(rd, buf[:min(size-off, chunk)])
		if err != nil {
			return tmp, fmt.Errorf("read at %d of %d bytes: %w", off, size, err)
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			return tmp, fmt.Errorf("write: %w", err)
		}
		off += int64(n)
	}
	if c.fsync {
		if err := f.Sync(); err != nil {
			return tmp, fmt.Errorf("sync: %w", err)
		}
	}
	err = f.Close()
	f = nil
	if err != nil {
		return tmp, fmt.Errorf("close: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return tmp, err
	}
	if c.posixRename {
		if err := c.sftp.PosixRename(tmp, p); err != nil {
			return tmp, fmt.Errorf("rename: %w", err)
		}
		return "", nil
	}
	// Plain SFTP rename fails when the target exists: a reader may find h missing for
	// a moment, never partial.
	if err := c.sftp.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return tmp, fmt.Errorf("remove old version: %w", err)
	}
	if err := c.sftp.Rename(tmp, p); err != nil {
		return tmp, fmt.Errorf("rename: %w", err)
	}
	return "", nil
}
