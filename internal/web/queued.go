package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
)

// QueuedJob is a job that waits: published, and started by no worker yet. It is in the
// queue, or a worker pulled it ahead and waits for a free slot (it announced it
// accepted, an event that does not go to the results). Either way it has no entry in
// the results, so GET /api/v1/jobs does not list it.
type QueuedJob struct {
	ID      string          `json:"id"`
	Kind    brr.Kind        `json:"kind"`
	Pool    string          `json:"pool"`
	Created time.Time       `json:"created"`
	By      string          `json:"by,omitempty"`
	Args    json.RawMessage `json:"args"`
	// Seq is the job message's sequence in the jobs stream: the queue's order.
	Seq uint64 `json:"seq"`
	// CancelRequested says a cancel was asked: the job ends cancelled, without running,
	// when a worker takes it.
	CancelRequested bool `json:"cancel_requested,omitempty"`
}

// QueuedList is the answer of GET /api/v1/queue/jobs.
type QueuedList struct {
	// Jobs are the queued jobs of this worker's pools, oldest first (per pool).
	Jobs []QueuedJob `json:"jobs"`
	// More says the answer stopped at limit, or at the job messages one request reads
	// (2,000): there may be more queued jobs.
	More bool `json:"more,omitempty"`
}

// maxQueueScan bounds the job messages one request reads: those in flight are in the
// stream too, until they are acknowledged.
const maxQueueScan = 2000

// queuedJobs lists the jobs that no worker has started yet: the job messages of the jobs
// stream (a work queue, so a message is there until a worker settles it) that have no
// entry in the results bucket.
func (s *Server) queuedJobs(w http.ResponseWriter, r *http.Request) error {
	limit, err := intParam(r.URL.Query().Get("limit"), 50, 1, 500, "limit")
	if err != nil {
		return err
	}
	quiet, err := boolParam(r.URL.Query().Get("quiet"), "quiet")
	if err != nil {
		return err
	}
	out := QueuedList{Jobs: []QueuedJob{}}
	subj := s.client.Subjects()
	ctx := r.Context()
	stream, err := s.js.Stream(ctx, subj.JobsStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		writeJSON(w, http.StatusOK, out) // no worker has started: nothing is queued
		return nil
	}
	if err != nil {
		return fmt.Errorf("read the queue: %w", err)
	}
	results, err := s.js.KeyValue(ctx, subj.ResultsBucket())
	if err != nil {
		return fmt.Errorf("read the queue: open %s: %w", subj.ResultsBucket(), err)
	}
	cancels, err := s.js.KeyValue(ctx, subj.CancelBucket())
	if err != nil && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return fmt.Errorf("read the queue: open %s: %w", subj.CancelBucket(), err)
	}
	scanned := 0
	for _, pool := range s.cfg.Pools {
		for seq := uint64(1); ; seq++ {
			if len(out.Jobs) == limit || scanned == maxQueueScan {
				out.More = true
				break
			}
			raw, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(subj.Jobs(pool)))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				return fmt.Errorf("read the queue of pool %s: %w", pool, err)
			}
			scanned++
			seq = raw.Sequence
			job, ok := s.queued(ctx, raw, results, cancels)
			if ok && !(quiet && job.Kind == brr.KindPing) {
				out.Jobs = append(out.Jobs, job)
			}
		}
		if out.More {
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// queued returns the job of raw when no worker has taken it yet. A message that is not
// a job is left out: the worker that takes it records it (under its id when the
// envelope parses) and sends it to the dead letters.
func (s *Server) queued(ctx context.Context, raw *jetstream.RawStreamMsg, results, cancels jetstream.KeyValue) (QueuedJob, bool) {
	var wire struct {
		ID      string          `json:"id"`
		Kind    brr.Kind        `json:"kind"`
		Pool    string          `json:"pool"`
		Created time.Time       `json:"created"`
		By      string          `json:"by"`
		Args    json.RawMessage `json:"args"`
	}
	if _, err := brr.DecodeJob(raw.Data); err != nil || json.Unmarshal(raw.Data, &wire) != nil {
		return QueuedJob{}, false
	}
	if _, err := results.Get(ctx, wire.ID); !errors.Is(err, jetstream.ErrKeyNotFound) {
		return QueuedJob{}, false // taken (or the bucket cannot say): not queued
	}
	job := QueuedJob{ID: wire.ID, Kind: wire.Kind, Pool: wire.Pool, Created: wire.Created, By: wire.By, Args: wire.Args, Seq: raw.Sequence}
	if cancels != nil {
		// A cancel applies to the messages stored before it (see brr.CancelRequest).
		if e, err := cancels.Get(ctx, wire.ID); err == nil && !e.Created().Before(raw.Time) {
			job.CancelRequested = true
		}
	}
	return job, true
}
