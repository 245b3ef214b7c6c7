package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/zeebo/blake3"
)

// UpgradeStats says what Upgrade did.
type UpgradeStats struct {
	// From and To are the format versions before and after; equal when there was nothing
	// to do.
	From, To int
	// Objects counts the snapshots, recovery points, plans and writer locks sealed again,
	// IndexFiles the index files written again; Damaged counts objects left as they were
	// because they did not open at all (Check reports them).
	Objects, IndexFiles, Damaged int
}

// Upgrade turns a format 1 repository into format 2, in which every metadata object is
// bound to its type and name (see objectAD). It seals every snapshot, recovery point,
// plan and writer lock that is not bound yet again under its name, writes every such
// index file again under its new name and removes the old one, and then, last, the
// config saying format 2: from then on an object that is not bound to its name does not
// open, here or in any worker that reloads its index. A repository in format 2 already is
// left as it is.
//
// An Upgrade cut short by a crash or an error leaves a format 1 repository that reads as
// before; running it again finishes the work. A worker of this brr writes format 2 objects
// into a format 1 repository from the start, so other workers of this brr may go on
// backing up meanwhile; workers of an older brr cannot read those objects, nor open the
// repository once it is upgraded. Run it with the repository's lease held, so that two
// workers do not both rewrite the index files (which would leave duplicates, harmless
// but wasteful, until the next prune).
//
// In a repository opened with Options.AppendOnly, an Upgrade that has work to do changes
// nothing and returns an error wrapping ErrAppendOnly (and From == To): it would
// overwrite objects and remove index files. The repository stays in its format, which
// this brr reads and adds to as before; a worker may log the error and go on.
func (r *Repository) Upgrade(ctx context.Context) (UpgradeStats, error) {
	from := r.Config().Version
	st := UpgradeStats{From: from, To: from}
	if !r.legacy() {
		return st, nil
	}
	if r.opts.AppendOnly {
		return st, errAppendOnly("upgrade from format %d to %d rewrites every metadata object, so the repository stays in format %d, which this brr reads and writes; to upgrade it, %s",
			from, formatVersion, from, runElsewhere)
	}
	for _, t := range []FileType{SnapshotFile, PinFile, PlanFile, LockFile} {
		if err := r.upgradeObjects(ctx, t, &st); err != nil {
			return st, err
		}
	}
	if err := r.upgradeIndex(ctx, &st); err != nil {
		return st, err
	}
	r.cfgMu.RLock()
	cfg := *r.cfg
	r.cfgMu.RUnlock()
	cfg.V = formatVersion
	if err := r.saveJSON(ctx, configHandle, &cfg); err != nil {
		return st, fmt.Errorf("upgrade: %w", err)
	}
	r.cfgMu.Lock()
	r.cfg.V = formatVersion
	r.cfgMu.Unlock()
	st.To = formatVersion
	return st, nil
}

// upgradeObjects seals every object of type t that is not bound to its name again.
func (r *Repository) upgradeObjects(ctx context.Context, t FileType, st *UpgradeStats) error {
	return r.eachUnbound(ctx, t, st, func(h Handle, plain []byte) error {
		if err := r.be.Save(ctx, h, NewByteReader(r.seal(plain, objectAD(h)))); err != nil {
			return fmt.Errorf("upgrade: save %s: %w", h, err)
		}
		st.Objects++
		return nil
	})
}

// upgradeIndex writes every index file that is not bound to its type again, under the
// name of its new bytes, and removes the old one. The packs they name do not change, so
// the in-memory index only learns the new names.
func (r *Repository) upgradeIndex(ctx context.Context, st *UpgradeStats) error {
	r.indexMu.Lock()
	defer r.indexMu.Unlock()
	return r.eachUnbound(ctx, IndexFile, st, func(h Handle, plain []byte) error {
		data := r.seal(plain, objectAD(h))
		nh := Handle{Type: IndexFile, Name: ID(blake3.Sum256(data)).String()}
		if err := r.be.Save(ctx, nh, NewByteReader(data)); err != nil {
			return fmt.Errorf("upgrade: save %s: %w", nh, err)
		}
		r.idx.mu.Lock()
		if loaded, ok := r.idx.files[h.Name]; ok {
			delete(r.idx.files, h.Name)
			r.idx.files[nh.Name] = loaded
		}
		r.idx.mu.Unlock()
		if err := r.be.Remove(ctx, h); err != nil && !IsNotExist(err) {
			return fmt.Errorf("upgrade: remove %s: %w", h, err)
		}
		st.IndexFiles++
		return nil
	})
}

// eachUnbound calls fn with each object of type t that opens but is not bound to its
// name, and its plaintext; objects that do not open at all are counted in st.Damaged and
// left as they are.
func (r *Repository) eachUnbound(ctx context.Context, t FileType, st *UpgradeStats, fn func(Handle, []byte) error) error {
	names, err := r.listNames(ctx, t)
	if err != nil {
		return fmt.Errorf("upgrade: %w", err)
	}
	for _, name := range names {
		h := Handle{Type: t, Name: name}
		plain, bound, err := r.loadRaw(ctx, h)
		switch {
		case IsNotExist(err) || bound:
			continue
		case errors.Is(err, ErrDamaged):
			st.Damaged++
			continue
		case err != nil:
			return fmt.Errorf("upgrade: %w", err)
		}
		if err := fn(h, plain); err != nil {
			return err
		}
	}
	return nil
}

// loadRaw loads and opens the object h, and says whether it is bound to its name.
func (r *Repository) loadRaw(ctx context.Context, h Handle) (plain []byte, bound bool, err error) {
	data, err := r.be.Load(ctx, h, 0, 0)
	if err != nil {
		return nil, false, fmt.Errorf("load %s: %w", h, err)
	}
	plain, bound, err = r.openObject(h, data)
	if err != nil {
		return nil, false, fmt.Errorf("%w: %s: %w", ErrDamaged, h, err)
	}
	return plain, bound, nil
}

// listNames lists the names of the objects of type t.
func (r *Repository) listNames(ctx context.Context, t FileType) ([]string, error) {
	var names []string
	err := r.be.List(ctx, t, func(fi FileInfo) error {
		names = append(names, fi.Name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", t, err)
	}
	return names, nil
}

// refreshVersion reads the config again while the repository is in format 1, so that a
// worker learns that another one upgraded it and stops accepting objects that are not
// bound to their names.
func (r *Repository) refreshVersion(ctx context.Context) error {
	if !r.legacy() {
		return nil
	}
	data, err := r.be.Load(ctx, configHandle, 0, 0)
	if err != nil {
		return fmt.Errorf("load config: %w", err)
	}
	cfg, err := openConfig(r.aead, data)
	if err != nil {
		return err
	}
	if cfg.ID != r.cfg.ID {
		return fmt.Errorf("%w: config names repository %s, not %s", ErrDamaged, cfg.ID, r.cfg.ID)
	}
	r.cfgMu.Lock()
	r.cfg.V = max(r.cfg.V, cfg.V)
	r.cfgMu.Unlock()
	return nil
}
