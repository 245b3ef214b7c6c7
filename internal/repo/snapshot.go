package repo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/brr-dev/brr"
)

// Snapshot records one backup: saving it is the commit point, after its packs and index.
type Snapshot struct {
	ID     ID        `json:"-"` // the object's name
	Time   time.Time `json:"time"`
	Host   string    `json:"host"`
	Source string    `json:"source"`
	Tags   []string  `json:"tags,omitempty"`
	Parent *ID       `json:"parent,omitempty"`
	Tree   ID        `json:"tree"`
	JobID  string    `json:"job_id,omitempty"`
	Files  int64     `json:"files"`
	Dirs   int64     `json:"dirs"`
	Bytes  int64     `json:"bytes"`
	// BlobsAdded and BytesAdded are what this snapshot's backup added to the repository.
	BlobsAdded int64 `json:"blobs_added"`
	BytesAdded int64 `json:"bytes_added"`
}

// snapshotObject is the stored form of a Snapshot, with a version.
type snapshotObject struct {
	V int `json:"v"`
	*Snapshot
}

const snapshotVersion = 1

// decodeSnapshot parses the plaintext of a snapshot object.
func decodeSnapshot(data []byte) (*Snapshot, error) {
	obj := snapshotObject{Snapshot: new(Snapshot)}
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("decode snapshot: %w", err)
	}
	if obj.V != snapshotVersion {
		return nil, fmt.Errorf("decode snapshot: version %d, this brr reads version %d", obj.V, snapshotVersion)
	}
	if obj.Tree.IsZero() {
		return nil, fmt.Errorf("decode snapshot: no tree")
	}
	return obj.Snapshot, nil
}

// SnapshotIDFor returns the snapshot id for a job: a keyed hash of the job id, so that a
// redelivered job writes (or finds) the same snapshot instead of a second one.
func (r *Repository) SnapshotIDFor(jobID string) ID {
	return r.BlobID([]byte("snapshot\x00" + jobID))
}

// SaveSnapshot saves sn under sn.ID: the commit point of a backup. The caller must have
// called Flush, so that everything the snapshot refers to is stored and indexed.
func (r *Repository) SaveSnapshot(ctx context.Context, sn *Snapshot) error {
	if sn.ID.IsZero() {
		return fmt.Errorf("save snapshot: no id set")
	}
	if sn.Tree.IsZero() {
		return fmt.Errorf("save snapshot %s: no tree", sn.ID.Short())
	}
	if !r.idx.present(blobKey{sn.Tree, TreeBlob}) {
		return fmt.Errorf("save snapshot %s: tree %s is not in the index; Flush before saving the snapshot", sn.ID.Short(), sn.Tree.Short())
	}
	if sn.Host == "" {
		sn.Host = r.opts.Host
	}
	return r.saveJSON(ctx, Handle{Type: SnapshotFile, Name: sn.ID.String()}, snapshotObject{V: snapshotVersion, Snapshot: sn})
}

// RemoveSnapshot deletes snapshot id (not its data: GC does that). A snapshot that does
// not exist gives an error wrapping brr.ErrNotFound; in a repository opened with
// Options.AppendOnly, every call gives an error wrapping ErrAppendOnly.
func (r *Repository) RemoveSnapshot(ctx context.Context, id ID) error {
	if r.opts.AppendOnly {
		return errAppendOnly("refusing to remove snapshot %s; %s", id.Short(), runElsewhere)
	}
	err := r.be.Remove(ctx, Handle{Type: SnapshotFile, Name: id.String()})
	if IsNotExist(err) {
		return fmt.Errorf("remove snapshot %s: %w", id.Short(), brr.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("remove snapshot %s: %w", id.Short(), err)
	}
	return nil
}

// LoadSnapshot loads snapshot id; one that does not exist gives an error wrapping
// brr.ErrNotFound, one that does not decrypt or decode an error wrapping ErrDamaged.
func (r *Repository) LoadSnapshot(ctx context.Context, id ID) (*Snapshot, error) {
	plain, err := r.loadObject(ctx, Handle{Type: SnapshotFile, Name: id.String()})
	if IsNotExist(err) {
		return nil, fmt.Errorf("snapshot %s: %w", id.Short(), brr.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	sn, err := decodeSnapshot(plain)
	if err != nil {
		return nil, fmt.Errorf("%w: snapshot %s: %w", ErrDamaged, id.Short(), err)
	}
	sn.ID = id
	return sn, nil
}

// snapshotNames lists the snapshot objects.
func (r *Repository) snapshotNames(ctx context.Context) ([]ID, error) {
	var ids []ID
	err := r.be.List(ctx, SnapshotFile, func(fi FileInfo) error {
		id, err := ParseID(fi.Name)
		if err != nil {
			return nil // not a snapshot brr wrote
		}
		ids = append(ids, id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	return ids, nil
}

// Snapshots loads every snapshot, oldest first. It fails on a snapshot that cannot be
// read; Check reports such snapshots instead.
func (r *Repository) Snapshots(ctx context.Context) ([]*Snapshot, error) {
	ids, err := r.snapshotNames(ctx)
	if err != nil {
		return nil, err
	}
	sns := make([]*Snapshot, 0, len(ids))
	for _, id := range ids {
		sn, err := r.LoadSnapshot(ctx, id)
		if errors.Is(err, brr.ErrNotFound) {
			continue // removed since listed (LoadSnapshot says so with brr.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		sns = append(sns, sn)
	}
	sortSnapshots(sns)
	return sns, nil
}

func sortSnapshots(sns []*Snapshot) {
	slices.SortFunc(sns, func(a, b *Snapshot) int {
		if c := a.Time.Compare(b.Time); c != 0 {
			return c
		}
		return strings.Compare(a.ID.String(), b.ID.String())
	})
}

// FindSnapshot resolves ref: "latest" is the newest snapshot (of source when it is not
// empty; taken at or before *asOf when asOf is not nil); anything else is an id or a hex
// prefix of at least 4 characters that must match exactly one snapshot. Not finding one
// gives an error wrapping brr.ErrNotFound.
func (r *Repository) FindSnapshot(ctx context.Context, ref, source string, asOf *time.Time) (*Snapshot, error) {
	if ref == "latest" {
		sns, err := r.Snapshots(ctx)
		if err != nil {
			return nil, err
		}
		for i := len(sns) - 1; i >= 0; i-- {
			sn := sns[i]
			if source != "" && sn.Source != source {
				continue
			}
			if asOf != nil && sn.Time.After(*asOf) {
				continue
			}
			return sn, nil
		}
		what := "no snapshot"
		if source != "" {
			what += fmt.Sprintf(" of %q", source)
		}
		if asOf != nil {
			what += " at or before " + asOf.UTC().Format(time.RFC3339)
		}
		return nil, fmt.Errorf("%s in repository %s: %w", what, r.be.Location(), brr.ErrNotFound)
	}
	ref = strings.ToLower(ref)
	if len(ref) < 4 || len(ref) > 64 {
		return nil, fmt.Errorf("snapshot %q: give \"latest\" or at least 4 hex characters of a snapshot id", ref)
	}
	if strings.Trim(ref, "0123456789abcdef") != "" {
		return nil, fmt.Errorf("snapshot %q: not a hex snapshot id; give \"latest\" or an id", ref)
	}
	ids, err := r.snapshotNames(ctx)
	if err != nil {
		return nil, err
	}
	var match []ID
	for _, id := range ids {
		if strings.HasPrefix(id.String(), ref) {
			match = append(match, id)
		}
	}
	switch len(match) {
	case 0:
		return nil, fmt.Errorf("no snapshot %s in repository %s: %w", ref, r.be.Location(), brr.ErrNotFound)
	case 1:
		return r.LoadSnapshot(ctx, match[0])
	}
	return nil, fmt.Errorf("snapshot prefix %s is ambiguous: %d snapshots match; give more characters", ref, len(match))
}
