package repo

import (
	"context"
	"strings"
)

// What replication needs to know of two repositories beyond their blobs and snapshots.

// SharesIDKey reports whether r and o name blobs with the same key, so that a blob has
// the same id in both: a tree can then be copied as it is, and a tree the other has
// comes with everything below it.
func (r *Repository) SharesIDKey(o *Repository) bool { return r.mk.IDKey == o.mk.IDKey }

// SnapshotIDs lists the ids of the snapshots, in no particular order, without loading
// them.
func (r *Repository) SnapshotIDs(ctx context.Context) ([]ID, error) {
	return r.snapshotNames(ctx)
}

// MatchSnapshots lists the ids of the snapshots whose hex form starts with prefix, so that
// a caller can tell a prefix that matches several snapshots from one that matches none.
func (r *Repository) MatchSnapshots(ctx context.Context, prefix string) ([]ID, error) {
	ids, err := r.snapshotNames(ctx)
	if err != nil {
		return nil, err
	}
	prefix = strings.ToLower(prefix)
	var match []ID
	for _, id := range ids {
		if strings.HasPrefix(id.String(), prefix) {
			match = append(match, id)
		}
	}
	return match, nil
}

// PackSize is the size at which the repository closes a pack and saves it.
func (r *Repository) PackSize() int { return r.opts.PackSize }
