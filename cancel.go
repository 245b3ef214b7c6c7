package brr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// CancelRequest asks the workers to cancel a job. It is kept in the KV bucket BRR_CANCEL
// under the job's id, for as long as the bucket's TTL (the results' TTL, 7 days by
// default), and every worker watches the bucket:
//
//	{"v":1,"id":"nightly-2026-11-26","time":"2026-11-26T12:03:00Z","by":"alice"}
//
// A worker running the job cancels its context and ends it with status cancelled; a
// worker that takes the job later (it was queued, waiting for a lease, or between two
// attempts) ends it cancelled without running it. The request applies to the job
// messages the server stored before it, so a job published again under the same id
// after the cancel runs.
type CancelRequest struct {
	V    int       `json:"v"`
	ID   string    `json:"id"`
	Time time.Time `json:"time"`
	// By says who asked; free text, for people.
	By string `json:"by,omitempty"`
}

// DecodeCancelRequest decodes a cancel request, refusing an unknown version or a bad id.
func DecodeCancelRequest(data []byte) (*CancelRequest, error) {
	var r CancelRequest
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("%w: cancel request is not valid JSON: %v", ErrInvalid, err)
	}
	if r.V != Version {
		return nil, fmt.Errorf("%w: cancel request has version %d, this code reads version %d", ErrUnknownVersion, r.V, Version)
	}
	if err := ValidateID(r.ID); err != nil {
		return nil, err
	}
	return &r, nil
}

// CancelResult says what Cancel found: the job's latest lifecycle event when the cancel
// was asked, if any; for a job that had ended, its final status.
type CancelResult struct {
	ID string `json:"id"`
	// Status is the job's status then: started (running, or between two attempts), or
	// empty when no worker has taken it yet (queued, scheduled, waiting for a lease, or
	// an id no job has: then the request waits for a job of that id until it expires),
	// or when its attempt started less than a moment ago (a worker writes the started
	// entry only once an attempt has run for 250 ms: docs/events.md).
	Status Status `json:"status,omitempty"`
	// Worker is the worker that last started it, if any.
	Worker string `json:"worker,omitempty"`
}

// CancelOption configures Cancel.
type CancelOption func(*CancelRequest)

// CancelBy records who asked for the cancel (a user, a host).
func CancelBy(by string) CancelOption { return func(r *CancelRequest) { r.By = by } }

// Cancel asks the workers to cancel job id, and returns once the request is stored; the
// job then ends with status cancelled (wait for it with Wait, which returns an error
// wrapping ErrJobCancelled). A running job stops within moments: what it wrote is
// left for its next run to use (a backup's packs are indexed, never a half-written
// snapshot; a restore's files are complete under their names or absent). A job no worker
// has taken yet ends cancelled when one takes it, without running.
//
// A job that already ended (succeeded, failed, dead or cancelled) is not touched: Cancel
// returns its final event and an error wrapping ErrJobEnded that says how it ended. A
// job that ends while the cancel is on its way keeps its end.
func (c *Client) Cancel(ctx context.Context, id string, opts ...CancelOption) (*CancelResult, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	req := CancelRequest{V: Version, ID: id, Time: time.Now().UTC()}
	for _, o := range opts {
		o(&req)
	}
	if len(req.By) > 256 {
		return nil, fmt.Errorf("%w: \"by\" is %d bytes, the limit is 256", ErrInvalid, len(req.By))
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	res := &CancelResult{ID: id}
	last, err := c.Job(ctx, id)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("cancel job %s: %w", id, err)
	case last.Status.Final():
		res.Status, res.Worker = last.Status, last.Worker
		return res, fmt.Errorf("%w: %s job %s ended %s at %s; there is nothing to cancel",
			ErrJobEnded, last.Kind, id, last.Status, last.Time.UTC().Format(time.RFC3339))
	default:
		res.Status, res.Worker = last.Status, last.Worker
	}
	kv, err := c.js.KeyValue(ctx, c.subj.CancelBucket())
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("cancel job %s: %w (workers older than cancel support do not create it)", id, c.noStream("KV_"+c.subj.CancelBucket()))
		}
		return nil, fmt.Errorf("cancel job %s: open bucket %s: %w", id, c.subj.CancelBucket(), c.publishErr(err))
	}
	data, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("cancel job %s: %w", id, err)
	}
	if _, err := kv.Put(ctx, id, data); err != nil {
		return nil, fmt.Errorf("cancel job %s: store the request: %w", id, c.publishErr(err))
	}
	return res, nil
}
