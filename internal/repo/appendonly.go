package repo

import (
	"context"
	"fmt"

	"github.com/brr-dev/brr"
)

// An append-only repository is one that a worker only adds to, so that a worker whose
// host is taken over cannot destroy the backups: the attacker holds the worker's
// credential, so the real protection is a credential the storage refuses deletes for;
// the guard below makes the worker keep to that on its own, and fail clearly and early
// where it would otherwise find out from a storage error half-way through a prune.
//
// What a worker removes or overwrites, and what the guard lets through:
//   - writer locks (LockFile): saved, refreshed in place and removed by every backup and
//     replication; allowed.
//   - plans (PlanFile): removed only by GC, which refuses to run; a Remove is allowed (it
//     deletes no data: a plan's packs stay) so that an operator's tool may clear one.
//   - everything else: packs and index files are named by the hash of their bytes and
//     never saved twice; snapshots are saved once under their job's id (a job delivered
//     again finds its snapshot and saves nothing); recovery points are saved only when
//     the label is free; keys have random names; the config is saved by Init, and again
//     only by Upgrade. A Save over any of them, or a Remove, is refused.

// runElsewhere says what to do about a refusal to delete.
const runElsewhere = "run it from a worker whose config does not set append_only for this repo, with a storage credential that may delete"

// appendOnlyBackend refuses what Options.AppendOnly forbids and passes the rest on.
type appendOnlyBackend struct {
	be Backend
}

var _ Backend = (*appendOnlyBackend)(nil)

// appendOnly wraps be in the guard, once.
func appendOnly(be Backend) Backend {
	if _, ok := be.(*appendOnlyBackend); ok {
		return be
	}
	return &appendOnlyBackend{be: be}
}

// errAppendOnly returns the error for what an append-only repository does not do: it
// wraps ErrAppendOnly and is permanent.
func errAppendOnly(format string, a ...any) error {
	return brr.Permanent(fmt.Errorf("%w: %s", ErrAppendOnly, fmt.Sprintf(format, a...)))
}

// Unwrap returns the backend below.
func (a *appendOnlyBackend) Unwrap() Backend { return a.be }

func (a *appendOnlyBackend) Location() string { return a.be.Location() }

// Save refuses to replace an object that exists, except a writer lock. The check is not
// atomic with the save: it keeps the worker to its word, it does not stop a concurrent
// writer of the same name (the storage credential does that).
func (a *appendOnlyBackend) Save(ctx context.Context, h Handle, rd RewindReader) error {
	if h.Type != LockFile {
		_, err := a.be.Stat(ctx, h)
		switch {
		case err == nil:
			return errAppendOnly("refusing to overwrite %s, which exists", h)
		case !IsNotExist(err):
			return fmt.Errorf("stat %s before saving it: %w", h, err)
		}
	}
	return a.be.Save(ctx, h, rd)
}

func (a *appendOnlyBackend) Load(ctx context.Context, h Handle, offset, length int64) ([]byte, error) {
	return a.be.Load(ctx, h, offset, length)
}

func (a *appendOnlyBackend) Stat(ctx context.Context, h Handle) (FileInfo, error) {
	return a.be.Stat(ctx, h)
}

// Remove refuses everything but writer locks and plans.
func (a *appendOnlyBackend) Remove(ctx context.Context, h Handle) error {
	if h.Type != LockFile && h.Type != PlanFile {
		return errAppendOnly("refusing to remove %s; only writer locks and plans are removed from it", h)
	}
	return a.be.Remove(ctx, h)
}

func (a *appendOnlyBackend) List(ctx context.Context, t FileType, fn func(FileInfo) error) error {
	return a.be.List(ctx, t, fn)
}

func (a *appendOnlyBackend) Close() error { return a.be.Close() }
