package state

import (
	"encoding/json"
	"errors"
	"fmt"

	"go.etcd.io/bbolt"

	"github.com/brr-dev/brr"
)

// bucketPoints indexes recovery points: repo name -> bucket of label -> RecoveryPoint
// (JSON). The repositories hold the points themselves; the index lets a worker answer
// for a repository it cannot read, with what it last saw there. It is made on the first
// write, so that a database of an older worker needs no migration.
var bucketPoints = []byte("points")

// PutPoint indexes p under its repo and label, replacing what was there.
func (db *DB) PutPoint(p brr.RecoveryPoint) error {
	if p.Repo == "" || p.Label == "" {
		return errors.New("put recovery point: it has no repo or no label")
	}
	data, err := json.Marshal(p)
	if err != nil {
		return fmt.Errorf("put recovery point %s/%s: encode: %w", p.Repo, p.Label, err)
	}
	err = db.update(false, func(tx *bbolt.Tx) error {
		b, err := pointsBucket(tx, p.Repo)
		if err != nil {
			return err
		}
		return b.Put([]byte(p.Label), data)
	})
	if err != nil {
		return fmt.Errorf("put recovery point %s/%s: %w", p.Repo, p.Label, err)
	}
	return nil
}

// DeletePoint removes the point label of repo from the index; one that is not there is
// no error.
func (db *DB) DeletePoint(repo, label string) error {
	err := db.update(false, func(tx *bbolt.Tx) error {
		b := repoPoints(tx, repo)
		if b == nil {
			return nil
		}
		return b.Delete([]byte(label))
	})
	if err != nil {
		return fmt.Errorf("delete recovery point %s/%s: %w", repo, label, err)
	}
	return nil
}

// ReplacePoints makes points the whole index of repo: what a worker read from the
// repository itself.
func (db *DB) ReplacePoints(repo string, points []brr.RecoveryPoint) error {
	if repo == "" {
		return errors.New("replace recovery points: no repo")
	}
	vals := make(map[string][]byte, len(points))
	for _, p := range points {
		if p.Label == "" {
			return fmt.Errorf("replace recovery points of %s: a point has no label", repo)
		}
		p.Repo = repo
		data, err := json.Marshal(p)
		if err != nil {
			return fmt.Errorf("replace recovery points of %s: encode %s: %w", repo, p.Label, err)
		}
		vals[p.Label] = data
	}
	err := db.update(false, func(tx *bbolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(bucketPoints)
		if err != nil {
			return err
		}
		if top.Bucket([]byte(repo)) != nil {
			if err := top.DeleteBucket([]byte(repo)); err != nil {
				return err
			}
		}
		b, err := top.CreateBucket([]byte(repo))
		if err != nil {
			return err
		}
		for label, data := range vals {
			if err := b.Put([]byte(label), data); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("replace recovery points of %s: %w", repo, err)
	}
	return nil
}

// Points returns the indexed points of repo, by label; none for a repo never indexed.
func (db *DB) Points(repo string) ([]brr.RecoveryPoint, error) {
	var out []brr.RecoveryPoint
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		b := repoPoints(tx, repo)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var p brr.RecoveryPoint
			if err := json.Unmarshal(v, &p); err != nil {
				return fmt.Errorf("decode %q: %w", k, err)
			}
			out = append(out, p)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read recovery points of %s: %w", repo, err)
	}
	return out, nil
}

// pointsBucket returns the bucket of repo's points, creating it.
func pointsBucket(tx *bbolt.Tx, repo string) (*bbolt.Bucket, error) {
	top, err := tx.CreateBucketIfNotExists(bucketPoints)
	if err != nil {
		return nil, err
	}
	return top.CreateBucketIfNotExists([]byte(repo))
}

// repoPoints returns the bucket of repo's points, or nil.
func repoPoints(tx *bbolt.Tx, repo string) *bbolt.Bucket {
	top := tx.Bucket(bucketPoints)
	if top == nil {
		return nil
	}
	return top.Bucket([]byte(repo))
}
