package jobs

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/archiver"
)

// dryRun walks the source as the backup a would, and reports what it would store. It
// needs neither the source's lease nor the repository's lock: it reads no file and
// writes nothing, so it may run beside a backup or a prune.
func (e *Engine) dryRun(ctx context.Context, source string, a brr.BackupJob, pr *reporter, start time.Time) (*brr.BackupResult, error) {
	var first firstPaths
	opts := archiveOptions(a)
	opts.DryRun = true
	opts.WouldRead = func(rel string, _ int64) { first.add(rel) }
	arch := archiver.New(nil, source, opts)
	// What has been listed so far: there is no total to compare with, as a dry run is
	// the count of the total.
	stopProgress := pr.tick(ctx, func() brr.Progress {
		s := arch.Progress()
		return brr.Progress{Phase: "dry-run", Files: s.Files, Bytes: s.Bytes}
	})
	ar, err := arch.Run(ctx)
	stopProgress()
	if err != nil {
		return nil, fmt.Errorf("dry run of backup of %s: %w", a.Path, err)
	}
	res := &brr.BackupResult{
		Source:        a.Path,
		Files:         ar.Files,
		Dirs:          ar.Dirs,
		Bytes:         ar.Bytes,
		FilesExcluded: ar.FilesExcluded,
		DirsExcluded:  ar.DirsExcluded,
		BytesExcluded: ar.BytesExcluded,
		DryRun:        true,
		WouldRead:     first.sorted(),
		Warnings:      ar.Warnings,
		DurationMS:    time.Since(start).Milliseconds(),
	}
	res.WouldReadMore = ar.Files - int64(len(res.WouldRead))
	return res, nil
}

// firstPaths keeps the brr.MaxWouldRead first paths, in path order, of those it is given
// from several goroutines in any order. It holds at most twice as many: when full, it
// sorts them and keeps the first half, and drops at once any path after the last kept.
type firstPaths struct {
	mu    sync.Mutex
	paths []string
	last  string // the last path kept at the latest trim; "" before the first
}

func (f *firstPaths) add(p string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.last != "" && p >= f.last {
		return
	}
	f.paths = append(f.paths, p)
	if len(f.paths) == 2*brr.MaxWouldRead {
		f.trim()
	}
}

func (f *firstPaths) trim() {
	slices.Sort(f.paths)
	if len(f.paths) > brr.MaxWouldRead {
		f.paths = f.paths[:brr.MaxWouldRead]
		f.last = f.paths[brr.MaxWouldRead-1]
	}
}

func (f *firstPaths) sorted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.trim()
	return f.paths
}
