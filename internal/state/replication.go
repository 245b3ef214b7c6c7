package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.etcd.io/bbolt"

	"github.com/brr-dev/brr"
)

// Replication buckets, created on first write: a worker that never replicates has none.
var (
	// scope (source repo id, NUL, target repo id) -> bucket of source blob id -> target blob id
	bucketBlobMap = []byte("replication_blobs")
	// from repo name, NUL, to repo name -> JSON ReplicationCursor
	bucketReplCursors = []byte("replication_cursors")
)

// LookupBlobMap returns, for those of ids that the blob map of scope (a pair of
// repositories) knows, the id of the target blob that holds the same content. Unknown
// ids are left out; an unknown scope gives an empty map.
func (db *DB) LookupBlobMap(scope string, ids [][32]byte) (map[[32]byte][32]byte, error) {
	out := make(map[[32]byte][32]byte)
	if len(ids) == 0 {
		return out, nil
	}
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketBlobMap)
		if b != nil {
			b = b.Bucket([]byte(scope))
		}
		if b == nil {
			return nil
		}
		for _, id := range ids {
			v := b.Get(id[:])
			if v == nil {
				continue
			}
			if len(v) != 32 {
				return fmt.Errorf("entry %x is %d bytes, want 32", id, len(v))
			}
			out[id] = [32]byte(v)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("look up blob map %q: %w", scope, err)
	}
	return out, nil
}

// UpdateBlobMap records pairs (source blob id -> target blob id) in the blob map of
// scope. The caller writes only pairs whose target blob is durable in the target.
func (db *DB) UpdateBlobMap(scope string, pairs map[[32]byte][32]byte) error {
	if scope == "" {
		return errors.New("update blob map: empty scope")
	}
	if len(pairs) == 0 {
		return nil
	}
	err := db.update(false, func(tx *bbolt.Tx) error {
		top, err := tx.CreateBucketIfNotExists(bucketBlobMap)
		if err != nil {
			return err
		}
		b, err := top.CreateBucketIfNotExists([]byte(scope))
		if err != nil {
			return err
		}
		for src, dst := range pairs {
			if err := b.Put(slices.Clone(src[:]), slices.Clone(dst[:])); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("update blob map %q: %w", scope, err)
	}
	return nil
}

// ReplicationCursor is where one replication target stands against its source, as the
// last replicate job this worker ran between them left it: the target's lag, and what
// that job copied.
type ReplicationCursor struct {
	From string `json:"from"`
	To   string `json:"to"`
	// LastRun is when that job ended; Copied lists the snapshots it copied (oldest
	// first) and Present counts those the target had already.
	LastRun time.Time `json:"last_run"`
	Copied  []string  `json:"copied,omitempty"`
	Present int       `json:"present"`
	// BlobsSent and BytesSent are what that job sent.
	BlobsSent int64 `json:"blobs_sent"`
	BytesSent int64 `json:"bytes_sent"`
	// Lag is how far the target was behind the source when that job ended.
	Lag brr.ReplicationLag `json:"lag"`
}

func cursorKey(from, to string) []byte { return []byte(from + "\x00" + to) }

// PutReplicationCursor records c as the cursor of c.To against c.From, replacing the one
// recorded before.
func (db *DB) PutReplicationCursor(c ReplicationCursor) error {
	if c.From == "" || c.To == "" {
		return fmt.Errorf("put replication cursor: from %q and to %q must both be set", c.From, c.To)
	}
	data, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("encode replication cursor %s -> %s: %w", c.From, c.To, err)
	}
	err = db.update(false, func(tx *bbolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(bucketReplCursors)
		if err != nil {
			return err
		}
		return b.Put(cursorKey(c.From, c.To), data)
	})
	if err != nil {
		return fmt.Errorf("put replication cursor %s -> %s: %w", c.From, c.To, err)
	}
	return nil
}

// ReplicationCursors returns every recorded cursor, ordered by source, then target.
func (db *DB) ReplicationCursors() ([]ReplicationCursor, error) {
	var out []ReplicationCursor
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		b := tx.Bucket(bucketReplCursors)
		if b == nil {
			return nil
		}
		return b.ForEach(func(k, v []byte) error {
			var c ReplicationCursor
			if err := json.Unmarshal(v, &c); err != nil {
				return fmt.Errorf("decode cursor %q: %w", strings.ReplaceAll(string(k), "\x00", " -> "), err)
			}
			out = append(out, c)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read replication cursors: %w", err)
	}
	return out, nil
}
