package brr

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

type publishOptions struct {
	id   string
	pool string
	by   string
}

// PublishOption configures Publish.
type PublishOption func(*publishOptions)

// WithID sets the job id (default: a new NewID). Publishing the same id twice within the
// stream's duplicate window publishes it once: the second Publish reports Duplicate.
func WithID(id string) PublishOption { return func(o *publishOptions) { o.id = id } }

// WithJobPool sends the job to pool instead of the client's pool.
func WithJobPool(pool string) PublishOption { return func(o *publishOptions) { o.pool = pool } }

// WithBy records who asked for the job (a user, a host, a schedule).
func WithBy(by string) PublishOption { return func(o *publishOptions) { o.by = by } }

// PublishResult is what the server said about a published job.
type PublishResult struct {
	ID   string `json:"id"`
	Pool string `json:"pool"`
	Kind Kind   `json:"kind"`
	// Stream and Seq say where the job is stored; for a duplicate, where the first copy is.
	Stream string `json:"stream"`
	Seq    uint64 `json:"seq"`
	// Duplicate is true when a job with this id was already published within the
	// duplicate window: this publish was dropped and the first one stands.
	Duplicate bool `json:"duplicate"`
	// ResultRevision, set by RetryDead, is the revision of the job's entry in the results
	// bucket when the job was queued again (0: it had none, or Duplicate); that entry is
	// the earlier run's result. Pass it to Wait as AfterRevision(ResultRevision) to wait
	// for the new run.
	ResultRevision uint64 `json:"result_revision,omitempty"`
}

func (c *Client) newJob(args JobArgs, opts []PublishOption) (*Job, error) {
	if args == nil {
		return nil, fmt.Errorf("%w: no job args", ErrInvalid)
	}
	o := publishOptions{pool: c.pool}
	for _, opt := range opts {
		opt(&o)
	}
	job := NewJob(args)
	if o.id != "" {
		job.ID = o.id
	}
	job.Pool = o.pool
	job.By = o.by
	return job, nil
}

// Publish sends a job with args to the workers and returns once the job stream stored it.
// The job is validated first: an invalid job is an error wrapping ErrInvalid, and nothing
// is published. The job id is the message's Nats-Msg-Id, so publishing again with the
// same WithID is safe: the server keeps one copy and reports Duplicate.
func (c *Client) Publish(ctx context.Context, args JobArgs, opts ...PublishOption) (PublishResult, error) {
	job, err := c.newJob(args, opts)
	if err != nil {
		return PublishResult{}, err
	}
	return c.PublishJob(ctx, job)
}

// PublishJob publishes job as it is, after validating it.
func (c *Client) PublishJob(ctx context.Context, job *Job) (PublishResult, error) {
	msg, err := c.jobMsg(job)
	if err != nil {
		return PublishResult{}, err
	}
	if err := c.checkConnected(); err != nil {
		return PublishResult{}, fmt.Errorf("publish job %s: %w", job.ID, err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	ack, err := c.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(c.subj.JobsStream()))
	if err != nil {
		return PublishResult{}, fmt.Errorf("publish job %s: %w", job.ID, c.publishErr(err))
	}
	return PublishResult{ID: job.ID, Pool: job.Pool, Kind: job.Kind, Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

func (c *Client) jobMsg(job *Job) (*nats.Msg, error) {
	if job == nil {
		return nil, fmt.Errorf("%w: nil job", ErrInvalid)
	}
	if err := job.Validate(); err != nil {
		return nil, err
	}
	data, err := json.Marshal(job)
	if err != nil {
		return nil, fmt.Errorf("encode job %s: %w", job.ID, err)
	}
	if len(data) > MaxJobSize {
		return nil, fmt.Errorf("%w: job %s is %d bytes, the limit is %d", ErrInvalid, job.ID, len(data), MaxJobSize)
	}
	msg := nats.NewMsg(c.subj.Job(job.Pool, job.Kind))
	msg.Header.Set(jetstream.MsgIDHeader, job.ID)
	msg.Data = data
	return msg, nil
}

// PublishFuture is a job published without waiting for the server's ack.
type PublishFuture struct {
	ID   string
	Pool string
	Kind Kind
	f    jetstream.PubAckFuture
	c    *Client
}

// PublishAsync publishes a job like Publish but does not wait for the server to store
// it; Result waits. Many jobs in flight at once is how `brr bench` reaches the server's
// rate. It blocks only while too many publishes are waiting for their acks.
func (c *Client) PublishAsync(args JobArgs, opts ...PublishOption) (*PublishFuture, error) {
	job, err := c.newJob(args, opts)
	if err != nil {
		return nil, err
	}
	msg, err := c.jobMsg(job)
	if err != nil {
		return nil, err
	}
	if err := c.checkConnected(); err != nil {
		return nil, fmt.Errorf("publish job %s: %w", job.ID, err)
	}
	f, err := c.js.PublishMsgAsync(msg, jetstream.WithExpectStream(c.subj.JobsStream()))
	if err != nil {
		return nil, fmt.Errorf("publish job %s: %w", job.ID, c.publishErr(err))
	}
	return &PublishFuture{ID: job.ID, Pool: job.Pool, Kind: job.Kind, f: f, c: c}, nil
}

// Result waits for the server's ack of the job.
func (p *PublishFuture) Result(ctx context.Context) (PublishResult, error) {
	select {
	case ack := <-p.f.Ok():
		return PublishResult{ID: p.ID, Pool: p.Pool, Kind: p.Kind, Stream: ack.Stream, Seq: ack.Sequence, Duplicate: ack.Duplicate}, nil
	case err := <-p.f.Err():
		return PublishResult{}, fmt.Errorf("publish job %s: %w", p.ID, p.c.publishErr(err))
	case <-ctx.Done():
		return PublishResult{}, fmt.Errorf("publish job %s: wait for ack: %w", p.ID, ctx.Err())
	}
}
