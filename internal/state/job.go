package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/bbolt"

	"github.com/brr-dev/brr"
)

// JobRecord is what a worker remembers of a job it took.
type JobRecord struct {
	ID      string          `json:"id"`
	Pool    string          `json:"pool"`
	Kind    brr.Kind        `json:"kind"`
	Request json.RawMessage `json:"request,omitempty"`
	Status  brr.Status      `json:"status"`
	// Attempts counts the deliveries of the job to this worker.
	Attempts int         `json:"attempts"`
	Worker   string      `json:"worker"`
	Repo     string      `json:"repo,omitempty"`
	Source   string      `json:"source,omitempty"`
	Snapshot string      `json:"snapshot,omitempty"`
	Created  time.Time   `json:"created"`
	Started  time.Time   `json:"started,omitzero"`
	Finished time.Time   `json:"finished,omitzero"`
	Result   *brr.Result `json:"result,omitempty"`
	Error    string      `json:"error,omitempty"`
}

// jobCreated is the part of a stored record PutJob reads back.
type jobCreated struct {
	Created time.Time `json:"created"`
}

func jobTimeKey(created time.Time, id string) []byte {
	return append(u64(timeKey(created)), id...)
}

// PutJob stores rec and enqueues out in one transaction; when rec.Status is
// brr.StatusSucceeded the job's id also goes into the processed set. Concurrent calls
// share a commit.
func (db *DB) PutJob(rec *JobRecord, out ...OutboxMsg) error {
	if rec == nil || rec.ID == "" {
		return errors.New("put job: record has no id")
	}
	data, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("put job %s: encode: %w", rec.ID, err)
	}
	msgs, err := encodeOutbox(out)
	if err != nil {
		return fmt.Errorf("put job %s: %w", rec.ID, err)
	}
	id := []byte(rec.ID)
	tkey := jobTimeKey(rec.Created, rec.ID)
	var finished []byte
	if rec.Status == brr.StatusSucceeded {
		f := rec.Finished
		if f.IsZero() {
			f = time.Now()
		}
		finished = u64(timeKey(f))
	}
	err = db.update(len(msgs) > 0, func(tx *bbolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		byTime := tx.Bucket(bucketJobsByTime)
		if old := jobs.Get(id); old != nil {
			var oc jobCreated
			if err := json.Unmarshal(old, &oc); err == nil && !oc.Created.Equal(rec.Created) {
				if err := byTime.Delete(jobTimeKey(oc.Created, rec.ID)); err != nil {
					return err
				}
			}
		}
		if err := jobs.Put(id, data); err != nil {
			return err
		}
		if err := byTime.Put(tkey, nil); err != nil {
			return err
		}
		if finished != nil {
			if err := tx.Bucket(bucketProcessed).Put(id, finished); err != nil {
				return err
			}
		}
		return appendOutbox(tx, msgs)
	})
	if err != nil {
		return fmt.Errorf("put job %s: %w", rec.ID, err)
	}
	return nil
}

// Job returns the record of job id; an unknown id is an error wrapping brr.ErrNotFound.
func (db *DB) Job(id string) (*JobRecord, error) {
	var rec *JobRecord
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		v := tx.Bucket(bucketJobs).Get([]byte(id))
		if v == nil {
			return fmt.Errorf("job %s: %w", id, brr.ErrNotFound)
		}
		rec = new(JobRecord)
		if err := json.Unmarshal(v, rec); err != nil {
			return fmt.Errorf("decode job %s: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return rec, nil
}

// Processed reports whether job id already succeeded on this worker.
func (db *DB) Processed(id string) (bool, error) {
	var ok bool
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		ok = tx.Bucket(bucketProcessed).Get([]byte(id)) != nil
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("look up processed job %s: %w", id, err)
	}
	return ok, nil
}

// Jobs returns up to limit job records, newest (by Created) first; limit <= 0 means all.
func (db *DB) Jobs(limit int) ([]*JobRecord, error) {
	var recs []*JobRecord
	err := db.bolt.View(func(tx *bbolt.Tx) error {
		jobs := tx.Bucket(bucketJobs)
		c := tx.Bucket(bucketJobsByTime).Cursor()
		for k, _ := c.Last(); k != nil && (limit <= 0 || len(recs) < limit); k, _ = c.Prev() {
			if len(k) < 8 {
				continue
			}
			id := k[8:]
			v := jobs.Get(id)
			if v == nil {
				continue
			}
			rec := new(JobRecord)
			if err := json.Unmarshal(v, rec); err != nil {
				return fmt.Errorf("decode job %s: %w", id, err)
			}
			recs = append(recs, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	return recs, nil
}

// PruneJobs removes the records of jobs created before olderThan, whatever their status,
// and the processed ids of jobs that finished before it. It returns how many records it
// removed.
func (db *DB) PruneJobs(olderThan time.Time) (int, error) {
	limit := timeKey(olderThan)
	n := 0
	err := db.bolt.Update(func(tx *bbolt.Tx) error {
		n = 0
		jobs := tx.Bucket(bucketJobs)
		byTime := tx.Bucket(bucketJobsByTime)
		var old [][]byte
		c := byTime.Cursor()
		for k, _ := c.First(); len(k) >= 8 && u64be(k[:8]) < limit; k, _ = c.Next() {
			old = append(old, append([]byte(nil), k...))
		}
		for _, k := range old {
			if err := byTime.Delete(k); err != nil {
				return err
			}
			if jobs.Get(k[8:]) != nil {
				if err := jobs.Delete(k[8:]); err != nil {
					return err
				}
				n++
			}
		}
		processed := tx.Bucket(bucketProcessed)
		var gone [][]byte
		if err := processed.ForEach(func(k, v []byte) error {
			if len(v) == 8 && u64be(v) < limit {
				gone = append(gone, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range gone {
			if err := processed.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("prune jobs: %w", err)
	}
	return n, nil
}
