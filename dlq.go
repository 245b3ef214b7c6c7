package brr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetterEntry is a dead letter with its sequence in the dead-letter stream, which
// identifies it for deletion.
type DeadLetterEntry struct {
	Seq uint64 `json:"seq"`
	DeadLetter
	// stored is when the entry reached the dead-letter stream, which PurgeDead compares.
	stored time.Time
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
		e := DeadLetterEntry{Seq: md.Sequence.Stream, stored: md.Timestamp}
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
// then removes its entry from the dead-letter stream. jobID may also be the sequence of
// the entry, as `brr dlq ls` shows it (a job id is looked for first). The message id is
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
	found := c.findDead(entries, jobID)
	if len(found) == 0 {
		return PublishResult{}, fmt.Errorf("retry job %s: %w in %s (list them with: brr dlq ls)", jobID, ErrNotFound, c.subj.DLQStream())
	}
	dead := &found[len(found)-1] // the newest entry of the job wins
	if dead.JobID != "" {
		jobID = dead.JobID
	}
	job, err := DecodeJob(dead.Request)
	if err != nil {
		return PublishResult{}, fmt.Errorf("retry job %s: its request cannot run again (%w); publish a corrected job instead", jobID, err)
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

// findDead returns the entries that ref names: those of the job with id ref, oldest
// first, or else the one entry whose sequence (the SEQ column of `brr dlq ls`) is ref.
// A job id made of digits only is taken as a job id first.
func (c *Client) findDead(entries []DeadLetterEntry, ref string) []DeadLetterEntry {
	var out []DeadLetterEntry
	for _, e := range entries {
		if e.JobID != "" && e.JobID == ref {
			out = append(out, e)
		}
	}
	if len(out) > 0 {
		return out
	}
	seq, err := strconv.ParseUint(strings.TrimPrefix(ref, "#"), 10, 64)
	if err != nil {
		return nil
	}
	for _, e := range entries {
		if e.Seq == seq {
			return []DeadLetterEntry{e}
		}
	}
	return nil
}

// RemoveDead removes dead letters without running them again: every entry of the job
// with id ref, or the entry with sequence ref (which is how an entry that does not even
// decode is named). It returns what it removed; a ref that names nothing is an error
// wrapping ErrNotFound.
func (c *Client) RemoveDead(ctx context.Context, ref string) ([]DeadLetterEntry, error) {
	entries, err := c.DeadLetters(ctx)
	if err != nil {
		return nil, fmt.Errorf("remove dead letter %s: %w", ref, err)
	}
	found := c.findDead(entries, ref)
	if len(found) == 0 {
		return nil, fmt.Errorf("remove dead letter %s: %w in %s: give a job id or a SEQ that brr dlq ls shows", ref, ErrNotFound, c.subj.DLQStream())
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	st, err := c.js.Stream(ctx, c.subj.DLQStream())
	if err != nil {
		return nil, fmt.Errorf("remove dead letter %s: %w", ref, err)
	}
	removed := found[:0]
	for _, e := range found {
		err := st.DeleteMsg(ctx, e.Seq)
		if err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return removed, fmt.Errorf("remove dead letter %s (seq %d): %w", ref, e.Seq, err)
		}
		if err == nil {
			removed = append(removed, e)
		}
	}
	return removed, nil
}

// PurgeDead removes every dead letter that reached the dead-letter stream before before,
// or every one when before is zero, and returns how many it removed. Entries are in the
// stream in the order they arrived, so this is one purge up to the first newer entry.
func (c *Client) PurgeDead(ctx context.Context, before time.Time) (int, error) {
	entries, err := c.DeadLetters(ctx)
	if err != nil {
		return 0, fmt.Errorf("purge dead letters: %w", err)
	}
	n := 0
	for _, e := range entries {
		if !before.IsZero() && !e.stored.Before(before) {
			break
		}
		n++
	}
	if n == 0 {
		return 0, nil
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	st, err := c.js.Stream(ctx, c.subj.DLQStream())
	if err != nil {
		return 0, fmt.Errorf("purge dead letters: %w", err)
	}
	// Up to, not including, the sequence after the last entry to go: an entry that arrived
	// since the listing stays.
	if err := st.Purge(ctx, jetstream.WithPurgeSequence(entries[n-1].Seq+1)); err != nil {
		return 0, fmt.Errorf("purge dead letters: %w", err)
	}
	return n, nil
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
	// decoded, or else the "id" of the request when it is a JSON object with a valid id,
	// or "seq-<n>" when it had none of these.
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
