package sftp

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/brr-dev/brr/internal/repo"
)

// List calls fn for every object of type t; files being written are skipped. The 256
// pack directories are read listWorkers at a time, and fn is called from List's own
// goroutine.
func (b *Backend) List(ctx context.Context, t repo.FileType, fn func(repo.FileInfo) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", t, err)
	}
	switch t {
	case repo.ConfigFile:
		fi, err := b.Stat(ctx, repo.Handle{Type: repo.ConfigFile, Name: "config"})
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		return fn(fi)
	case repo.PackFile:
		return b.listPacks(ctx, fn)
	case repo.KeyFile, repo.IndexFile, repo.SnapshotFile, repo.PinFile, repo.PlanFile, repo.LockFile:
		infos, err := b.listDir(ctx, path.Join(b.dir, string(t)))
		if err != nil {
			return fmt.Errorf("list %s: %w", t, err)
		}
		for _, fi := range infos {
			if err := fn(fi); err != nil {
				return err
			}
		}
		return nil
	}
	return fmt.Errorf("list: unknown object type %q", t)
}

// listPacks reads the pack directories in parallel and hands their files to fn in
// directory order; it stops reading at fn's first error.
func (b *Backend) listPacks(ctx context.Context, fn func(repo.FileInfo) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type listing struct {
		infos []repo.FileInfo
		err   error
	}
	results := make([]chan listing, 256)
	for i := range results {
		results[i] = make(chan listing, 1)
	}
	go func() {
		sem := make(chan struct{}, listWorkers)
		for i := range results {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] <- listing{err: ctx.Err()}
				continue
			}
			go func() {
				defer func() { <-sem }()
				infos, err := b.listDir(ctx, path.Join(b.dir, string(repo.PackFile), fmt.Sprintf("%02x", i)))
				results[i] <- listing{infos, err}
			}()
		}
	}()
	for i := range results {
		r := <-results[i]
		if r.err != nil {
			return fmt.Errorf("list %s: %w", repo.PackFile, r.err)
		}
		for _, fi := range r.infos {
			if err := fn(fi); err != nil {
				return err
			}
		}
	}
	return nil
}

// listDir returns the regular files in dir whose names are not hidden; a missing dir
// has none.
func (b *Backend) listDir(ctx context.Context, dir string) ([]repo.FileInfo, error) {
	var infos []repo.FileInfo
	err := b.do(ctx, func(c *conn) error {
		entries, err := c.sftp.ReadDirContext(ctx, dir)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read directory %s: %w", dir, err)
		}
		infos = infos[:0]
		for _, e := range entries {
			if !e.Mode().IsRegular() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			infos = append(infos, repo.FileInfo{Name: e.Name(), Size: e.Size()})
		}
		return nil
	})
	return infos, err
}
