package brr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetterEntry is a dead letter with its sequence in the dead-letter stream, which
// identifies it for deletion.
type DeadLetterEntry struct {
	Seq uint64 `json:"seq"`
	DeadLetter
}

// DeadLetters returns every entry of the dead-letter stream, oldest first. Entries that
// do not decode are returned with only Seq, Subject and Error set, so that they can be
// seen and removed.
func (c *Client) DeadLetters(ctx context.Context) ([]DeadLetterEntry, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := c.checkConnected(); err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	var out []DeadLetterEntry
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{c.subj.AllDLQ()}, DeliverPolicy: jetstream.DeliverAllPolicy}
	err := c.scan(ctx, c.subj.DLQStream(), cfg, func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			return
		}
		e := DeadLetterEntry{Seq: md.Sequence.Stream}
		if err := json.Unmarshal(m.Data(), &e.DeadLetter); err != nil {
			e.DeadLetter = DeadLetter{Subject: m.Subject(), Error: fmt.Sprintf("undecodable dead letter: %v", err)}
		}
		out = append(out, e)
	})
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	return out, nil
}

// RetryDead publishes the request of dead job jobID again, to the subject it came on, and
// then removes its entry from the dead-letter stream. The message id is
// "<id>-retry-<seq>", since the job's own id may still be in the job stream's duplicate
// window; the job inside keeps its id. A second RetryDead of the same entry (its removal
// failed) is reported as Duplicate and not run twice. An id with no dead letter is an
// error wrapping ErrNotFound.
//
// The job's result in the results bucket stays its dead event until a worker takes the
// job again, so a plain Wait right after RetryDead may return that old event. RetryDead
// reads the revision of that result before it publishes and returns it as ResultRevision;
// Wait with AfterRevision(res.ResultRevision) skips it and returns the new run's end. A
// Duplicate retry returns 0: the earlier RetryDead's ResultRevision is the one to use.
func (c *Client) RetryDead(ctx context.Context, jobID string) (PublishResult, error) {
	entries, err := c.DeadLetters(ctx)
	if err != nil {
		return PublishResult{}, fmt.Errorf("retry job %s: %w", jobID, err)
	}
	var dead *DeadLetterEntry
	for i := range entries {
		if entries[i].JobID == jobID {
			dead = &entries[i] // the newest entry of the job wins
		}
	}
	if dead == nil {
		return PublishResult{}, fmt.Errorf("retry job %s: %w in %s (list them with: brr dlq ls)", jobID, ErrNotFound, c.subj.DLQStream())
	}
	job, err := DecodeJob(dead.Request)
	if err != nil {
		return PublishResult{}, fmt.Errorf("retry job %s: its request cannot run again (%v); publish a corrected job instead", jobID, err)
	}
	subject := c.subj.Job(job.Pool, job.Kind)
	if pool, kind, ok := c.subj.ParseJob(dead.Subject); ok && pool == job.Pool && kind == job.Kind {
		subject = dead.Subject
	}
	if err := c.checkConnected(); err != nil {
		return PublishResult{}, fmt.Errorf("retry job %s: %w", jobID, err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	// Read before the publish: every result of the new run has a higher revision.
	rev, err := c.resultRevision(ctx, job.ID)
	if err != nil {
		return PublishResult{}, fmt.Errorf("retry job %s: %w", jobID, err)
	}
	msg := nats.NewMsg(subject)
	msg.Header.Set(jetstream.MsgIDHeader, jobID+"-retry-"+strconv.FormatUint(dead.Seq, 10))
	msg.Data = dead.Request
	ack, err := c.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(c.subj.JobsStream()))
	if err != nil {
		return PublishResult{}, fmt.Errorf("retry job %s: publish: %w", jobID, c.publishErr(err))
	}
	st, err := c.js.Stream(ctx, c.subj.DLQStream())
	if err == nil {
		err = st.DeleteMsg(ctx, dead.Seq)
	}
	if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return PublishResult{}, fmt.Errorf("retry job %s: published as %s #%d, but remove dead letter %d: %w (retrying again is safe)", jobID, ack.Stream, ack.Sequence, dead.Seq, err)
	}
	if ack.Duplicate {
		// An earlier RetryDead queued the job; its run may have ended already, and that
		// end must not be skipped.
		rev = 0
	}
	return PublishResult{ID: job.ID, Pool: job.Pool, Kind: job.Kind, Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate, ResultRevision: rev}, nil
}

// resultRevision is the revision of job id's entry in the results bucket, 0 when it has
// none (or there is no bucket yet: no worker has run).
func (c *Client) resultRevision(ctx context.Context, id string) (uint64, error) {
	kv, err := c.results(ctx)
	if errors.Is(err, ErrNoStream) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	entry, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read result of job %s: %w", id, err)
	}
	return entry.Revision(), nil
}

// DeadLetter is what a worker writes to brr.dlq.<pool>.<kind> (stream BRR_DLQ) when a job
// failed for good: the request exactly as it arrived, and why it failed. `brr dlq retry`
// publishes Request again.
type DeadLetter struct {
	V int `json:"v"`
	// JobID is the job's id, or the message's Nats-Msg-Id when the request could not be
	// decoded, or "seq-<n>" when it had neither.
	JobID   string `json:"job_id"`
	Pool    string `json:"pool"`
	Kind    Kind   `json:"kind"`
	Subject string `json:"subject"`
	// Request is the job message as it arrived (base64 in JSON: it may not be valid JSON).
	Request  []byte    `json:"request"`
	Error    string    `json:"error"`
	Status   Status    `json:"status"` // StatusFailed (permanent error) or StatusDead (out of attempts)
	Attempts int       `json:"attempts"`
	Worker   string    `json:"worker,omitempty"`
	Time     time.Time `json:"time"`
}
