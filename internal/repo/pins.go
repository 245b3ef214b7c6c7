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

// Pin is a recovery point: a label that pins a snapshot, so that retention never removes
// it. Each pin is one encrypted object of type PinFile, named by a keyed hash of its
// label: a label is unique within a repository, and the object's name says nothing about
// it to someone without the key.
type Pin struct {
	Label    string    `json:"label"`
	Snapshot ID        `json:"snapshot"`
	Reason   string    `json:"reason,omitempty"`
	By       string    `json:"by,omitempty"`
	Time     time.Time `json:"time"`
	// JobID is the job that made the pin, so that the same job delivered again knows
	// the pin for its own even when "latest" has moved on.
	JobID string `json:"job_id,omitempty"`
}

// pinObject is the stored form of a Pin, with a version.
type pinObject struct {
	V int `json:"v"`
	*Pin
}

const pinVersion = 1

// ErrPinConflict is wrapped by SavePin's error when the label already pins another
// snapshot.
var ErrPinConflict = errors.New("recovery point label is in use")

// pinName is the object name of the pin labelled label.
func (r *Repository) pinName(label string) string {
	return r.BlobID([]byte("pin\x00" + label)).String()
}

// decodePin parses the plaintext of a pin object.
func decodePin(data []byte) (*Pin, error) {
	obj := pinObject{Pin: new(Pin)}
	if err := json.Unmarshal(data, &obj); err != nil {
		return nil, fmt.Errorf("decode recovery point: %w", err)
	}
	if obj.V != pinVersion {
		return nil, fmt.Errorf("decode recovery point: version %d, this brr reads version %d", obj.V, pinVersion)
	}
	if obj.Label == "" || obj.Snapshot.IsZero() {
		return nil, fmt.Errorf("decode recovery point: no label or no snapshot")
	}
	return obj.Pin, nil
}

// Pin loads the recovery point labelled label; one that does not exist gives an error
// wrapping brr.ErrNotFound, one that does not decrypt or decode an error wrapping
// ErrDamaged.
func (r *Repository) Pin(ctx context.Context, label string) (*Pin, error) {
	return r.loadPin(ctx, r.pinName(label), label)
}

// loadPin loads the pin object name; label, when set, is the label it must have.
func (r *Repository) loadPin(ctx context.Context, name, label string) (*Pin, error) {
	h := Handle{Type: PinFile, Name: name}
	plain, err := r.loadObject(ctx, h)
	if IsNotExist(err) {
		return nil, fmt.Errorf("recovery point %q: %w", label, brr.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	p, err := decodePin(plain)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrDamaged, h, err)
	}
	// The encryption authenticates an object's content, not its name: a pin copied to
	// another name would say it pins something it does not.
	if r.pinName(p.Label) != name || (label != "" && p.Label != label) {
		return nil, fmt.Errorf("%w: %s holds recovery point %q, which belongs under another name", ErrDamaged, h, p.Label)
	}
	return p, nil
}

// SavePin saves p. The snapshot it pins must exist (else an error wrapping
// brr.ErrNotFound). Saving a label that pins the same snapshot already does nothing, so
// that a job delivered again succeeds; a label that pins another snapshot gives an error
// wrapping ErrPinConflict, marked brr.Permanent.
func (r *Repository) SavePin(ctx context.Context, p Pin) error {
	if p.Label == "" {
		return fmt.Errorf("save recovery point: no label")
	}
	if p.Snapshot.IsZero() {
		return fmt.Errorf("save recovery point %q: no snapshot", p.Label)
	}
	if _, err := r.LoadSnapshot(ctx, p.Snapshot); err != nil {
		return fmt.Errorf("save recovery point %q: %w", p.Label, err)
	}
	old, err := r.Pin(ctx, p.Label)
	switch {
	case err == nil && old.Snapshot == p.Snapshot:
		return nil
	case err == nil:
		return brr.Permanent(fmt.Errorf("%w: recovery point %q already pins snapshot %s; remove it first (brr checkpoints rm %s) or choose another label",
			ErrPinConflict, p.Label, old.Snapshot.Short(), p.Label))
	case !errors.Is(err, brr.ErrNotFound):
		return fmt.Errorf("save recovery point %q: %w", p.Label, err)
	}
	if p.Time.IsZero() {
		p.Time = time.Now()
	}
	p.Time = p.Time.UTC()
	return r.saveJSON(ctx, Handle{Type: PinFile, Name: r.pinName(p.Label)}, pinObject{V: pinVersion, Pin: &p})
}

// RemovePin deletes the recovery point labelled label; one that does not exist gives an
// error wrapping brr.ErrNotFound. In a repository opened with Options.AppendOnly, every
// call gives an error wrapping ErrAppendOnly: a recovery point is what keeps a snapshot
// from retention, and removing it is the first step of deleting one.
func (r *Repository) RemovePin(ctx context.Context, label string) error {
	if r.opts.AppendOnly {
		return errAppendOnly("refusing to remove recovery point %q; %s", label, runElsewhere)
	}
	h := Handle{Type: PinFile, Name: r.pinName(label)}
	err := r.be.Remove(ctx, h)
	if IsNotExist(err) {
		return fmt.Errorf("recovery point %q: %w", label, brr.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("remove recovery point %q: %w", label, err)
	}
	return nil
}

// Pins loads every recovery point, sorted by label. A pin that cannot be read is an
// error (wrapping ErrDamaged when it does not decrypt or decode): what it pins is
// unknown, so retention must not go ahead without it.
func (r *Repository) Pins(ctx context.Context) ([]Pin, error) {
	var names []string
	err := r.be.List(ctx, PinFile, func(fi FileInfo) error {
		if _, err := ParseID(fi.Name); err == nil {
			names = append(names, fi.Name)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list recovery points: %w", err)
	}
	pins := make([]Pin, 0, len(names))
	for _, name := range names {
		p, err := r.loadPin(ctx, name, "")
		if errors.Is(err, brr.ErrNotFound) {
			continue // removed since listed
		}
		if err != nil {
			return nil, fmt.Errorf("load recovery points: %w", err)
		}
		pins = append(pins, *p)
	}
	slices.SortFunc(pins, func(a, b Pin) int { return strings.Compare(a.Label, b.Label) })
	return pins, nil
}
