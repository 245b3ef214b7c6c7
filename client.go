package brr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Errors of the client, besides the sentinels of error.go; checked with errors.Is.
var (
	// ErrNoStream is wrapped when a stream or bucket that the workers create does not exist:
	// no brr-worker has run against this NATS yet (or it uses another prefix).
	ErrNoStream = errors.New("stream not found")
	// ErrNoWorker is wrapped when no worker of the pool answers a query.
	ErrNoWorker = errors.New("no worker")
	// ErrNotConnected is wrapped when the NATS connection is closed or reconnecting.
	ErrNotConnected = errors.New("not connected to NATS")
)

// DefaultRequestTimeout bounds the client's calls whose context has no deadline, so that
// a call to a server that went away returns an error instead of hanging.
const DefaultRequestTimeout = 10 * time.Second

// Client publishes jobs to the workers, waits for their results, reads the job table and
// the dead-letter stream, and subscribes to events. It works over a NATS connection that
// the caller dialled and owns; it never dials, and Close is the caller's nc.Close.
//
// A Client is safe for concurrent use.
type Client struct {
	nc     *nats.Conn
	js     jetstream.JetStream
	subj   Subjects
	prefix string
	pool   string
}

type clientOptions struct {
	prefix string
	pool   string
}

// ClientOption configures NewClient.
type ClientOption func(*clientOptions)

// WithPrefix sets the first token of every subject and the stem of every stream name
// (default "brr"); it must match the workers'.
func WithPrefix(prefix string) ClientOption { return func(o *clientOptions) { o.prefix = prefix } }

// WithPool sets the pool jobs go to and queries ask (default "default").
func WithPool(pool string) ClientOption { return func(o *clientOptions) { o.pool = pool } }

var prefixPattern = namePattern

// NewClient returns a client on nc. It does not talk to the server: a missing stream
// shows up as a clear error on the first call that needs it.
func NewClient(nc *nats.Conn, opts ...ClientOption) (*Client, error) {
	if nc == nil {
		return nil, errors.New("new client: nil NATS connection")
	}
	o := clientOptions{prefix: DefaultPrefix, pool: DefaultPool}
	for _, opt := range opts {
		opt(&o)
	}
	for _, tok := range strings.Split(o.prefix, ".") {
		if !prefixPattern.MatchString(tok) {
			return nil, fmt.Errorf("new client: prefix %q: use dot-separated tokens of letters, digits, '-' or '_'", o.prefix)
		}
	}
	if err := ValidatePool(o.pool); err != nil {
		return nil, fmt.Errorf("new client: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("new client: jetstream: %w", err)
	}
	return &Client{nc: nc, js: js, subj: Subjects{Prefix: o.prefix}, prefix: o.prefix, pool: o.pool}, nil
}

// Subjects returns the subjects and names the client uses.
func (c *Client) Subjects() Subjects { return c.subj }

// Pool returns the client's default pool.
func (c *Client) Pool() string { return c.pool }

// where names the server for error messages.
func (c *Client) where() string {
	if u := c.nc.ConnectedUrlRedacted(); u != "" {
		return u
	}
	if s := c.nc.Servers(); len(s) > 0 {
		return s[0]
	}
	return "the NATS server"
}

func (c *Client) checkConnected() error {
	if c.nc.IsConnected() {
		return nil
	}
	return fmt.Errorf("%w (connection %s): check that the server is up and reachable", ErrNotConnected, strings.ToLower(c.nc.Status().String()))
}

// noStream is the error for a stream or bucket that the workers have not created.
func (c *Client) noStream(name string) error {
	return fmt.Errorf("%w: stream %s not found: is a brr-worker running and connected to %s?", ErrNoStream, name, c.where())
}

// withTimeout gives ctx DefaultRequestTimeout when it has no deadline.
func withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultRequestTimeout)
}

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

func (c *Client) publishErr(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrStreamNotFound):
		return c.noStream(c.subj.JobsStream())
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("JetStream is not enabled on %s: run the server with JetStream (nats-server -js) or let brr-worker embed one: %w", c.where(), err)
	}
	return err
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

func (c *Client) results(ctx context.Context) (jetstream.KeyValue, error) {
	if err := c.checkConnected(); err != nil {
		return nil, err
	}
	kv, err := c.js.KeyValue(ctx, c.subj.ResultsBucket())
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, c.noStream("KV_" + c.subj.ResultsBucket())
		}
		return nil, fmt.Errorf("open bucket %s: %w", c.subj.ResultsBucket(), c.publishErr(err))
	}
	return kv, nil
}

// Wait waits for the job id to end and returns its final event (succeeded, failed or
// dead). It is correct whether the job ended long ago, is running, or has not been
// taken yet: it watches the job's key in the results bucket, which delivers the latest
// event first and then every update.
//
// onEvent, when not nil, is called in Wait's goroutine with every lifecycle event and
// with the job's progress events, which travel only on the event stream. A job that
// ended failed or dead returns its event and an error that wraps ErrJobFailed and says
// why. Wait returns ctx's error when ctx ends first.
func (c *Client) Wait(ctx context.Context, id string, onEvent func(*Event)) (*Event, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	kv, err := c.results(ctx)
	if err != nil {
		return nil, fmt.Errorf("wait for job %s: %w", id, err)
	}
	progress := make(chan *Event, 64)
	if onEvent != nil {
		sub, err := c.nc.Subscribe(c.prefix+".events.job.*."+string(StatusProgress), func(m *nats.Msg) {
			e, err := DecodeEvent(m.Data)
			if err != nil || e.JobID != id {
				return
			}
			select {
			case progress <- e:
			default: // a slow caller misses progress, never the result
			}
		})
		if err != nil {
			return nil, fmt.Errorf("wait for job %s: subscribe to progress: %w", id, err)
		}
		defer func() { _ = sub.Unsubscribe() }()
	}
	w, err := kv.Watch(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("wait for job %s: watch result: %w", id, err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for job %s: %w", id, ctx.Err())
		case e := <-progress:
			onEvent(e)
		case entry, ok := <-w.Updates():
			if !ok {
				if err := ctx.Err(); err != nil {
					return nil, fmt.Errorf("wait for job %s: %w", id, err)
				}
				return nil, fmt.Errorf("wait for job %s: watch ended: %w", id, ErrNotConnected)
			}
			if entry == nil || entry.Operation() != jetstream.KeyValuePut {
				continue
			}
			e, err := DecodeEvent(entry.Value())
			if err != nil {
				return nil, fmt.Errorf("wait for job %s: decode result: %w", id, err)
			}
			if onEvent != nil {
				onEvent(e)
			}
			if e.Status.Final() {
				return e, jobErr(e)
			}
		}
	}
}

// jobErr is the error of a final event: nil for succeeded, ErrJobFailed with the reason
// otherwise.
func jobErr(e *Event) error {
	if e.Status == StatusSucceeded {
		return nil
	}
	reason := e.Error
	if reason == "" {
		reason = "no reason given"
	}
	return fmt.Errorf("%w: %s job %s is %s: %s", ErrJobFailed, e.Kind, e.JobID, e.Status, reason)
}

// Job returns the latest lifecycle event of job id, or an error wrapping ErrNotFound.
func (c *Client) Job(ctx context.Context, id string) (*Event, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	kv, err := c.results(ctx)
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	entry, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, fmt.Errorf("job %s: %w (no worker has taken it yet, or it expired)", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	e, err := DecodeEvent(entry.Value())
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return e, nil
}

// Jobs returns the latest lifecycle event of the limit most recently updated jobs, newest
// first; limit <= 0 means every job in the results bucket.
func (c *Client) Jobs(ctx context.Context, limit int) ([]*Event, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := c.results(ctx); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	name := "KV_" + c.subj.ResultsBucket()
	st, err := c.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	last := st.CachedInfo().State.LastSeq
	keyPrefix := "$KV." + c.subj.ResultsBucket() + "."
	// Older revisions of a key are gone or older than its latest, so the newest stream
	// messages are the newest jobs: read a window from the end, widen it until it holds
	// limit jobs or the whole stream.
	window := uint64(4*limit + 64)
	for {
		start := uint64(1)
		if limit > 0 && last > window {
			start = last - window + 1
		}
		type rev struct {
			seq uint64
			e   *Event
		}
		latest := map[string]rev{}
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{keyPrefix + ">"}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start}
		err := c.scan(ctx, name, cfg, func(m jetstream.Msg) {
			key := strings.TrimPrefix(m.Subject(), keyPrefix)
			md, err := m.Metadata()
			if err != nil {
				return
			}
			if m.Headers().Get("KV-Operation") != "" || m.Headers().Get("Nats-Marker-Reason") != "" {
				delete(latest, key)
				return
			}
			e, err := DecodeEvent(m.Data())
			if err != nil {
				return
			}
			latest[key] = rev{md.Sequence.Stream, e}
		})
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		if limit <= 0 || len(latest) >= limit || start == 1 {
			revs := make([]rev, 0, len(latest))
			for _, r := range latest {
				revs = append(revs, r)
			}
			sort.Slice(revs, func(i, j int) bool { return revs[i].seq > revs[j].seq })
			if limit > 0 && len(revs) > limit {
				revs = revs[:limit]
			}
			out := make([]*Event, len(revs))
			for i, r := range revs {
				out[i] = r.e
			}
			return out, nil
		}
		window *= 4
	}
}

// scan reads the messages of stream that cfg selects, as they are now, and calls fn with
// each in order.
func (c *Client) scan(ctx context.Context, stream string, cfg jetstream.OrderedConsumerConfig, fn func(jetstream.Msg)) error {
	cons, err := c.js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return c.noStream(stream)
		}
		return fmt.Errorf("read %s: %w", stream, err)
	}
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		batch, err := cons.FetchNoWait(256)
		if err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		n := 0
		done := false
		for m := range batch.Messages() {
			n++
			fn(m)
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				done = true
			}
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		if n == 0 || done {
			return nil
		}
	}
}

type subscribeOptions struct {
	deliverAll bool
	since      time.Time
}

// SubscribeOption configures Subscribe.
type SubscribeOption func(*subscribeOptions)

// DeliverAll makes Subscribe start with the oldest event the stream keeps.
func DeliverAll() SubscribeOption { return func(o *subscribeOptions) { o.deliverAll = true } }

// DeliverSince makes Subscribe start with the first event stored at or after t.
func DeliverSince(t time.Time) SubscribeOption { return func(o *subscribeOptions) { o.since = t } }

// eventFilter checks that filter is under the client's events prefix; empty means all events.
func (c *Client) eventFilter(filter string) (string, error) {
	all := c.subj.Events("")
	if filter == "" {
		return all, nil
	}
	if !strings.HasPrefix(filter, strings.TrimSuffix(all, ">")) || strings.ContainsAny(filter, " \t\r\n") {
		return "", fmt.Errorf("%w: event filter %q is not under %q; use e.g. %q", ErrInvalid, filter, all, c.subj.Events(EventJob))
	}
	return filter, nil
}

func (c *Client) eventsStream(ctx context.Context) error {
	if err := c.checkConnected(); err != nil {
		return err
	}
	if _, err := c.js.Stream(ctx, c.subj.EventsStream()); err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return c.noStream(c.subj.EventsStream())
		}
		return fmt.Errorf("look up stream %s: %w", c.subj.EventsStream(), c.publishErr(err))
	}
	return nil
}

// Subscribe calls fn with each event whose subject matches filter, in stream order, in
// one goroutine. filter is a subject filter under the events prefix, such as
// Subjects{}.Events(EventHealth) or "brr.events.job.*.failed"; empty means every event.
// By default only events published after the call are delivered; see DeliverAll and
// DeliverSince. Subscribe returns once the subscription is in place; delivery goes on
// until ctx is done. Events that do not decode (a newer version) are skipped.
func (c *Client) Subscribe(ctx context.Context, filter string, fn func(*Event), opts ...SubscribeOption) error {
	filter, err := c.eventFilter(filter)
	if err != nil {
		return err
	}
	var o subscribeOptions
	for _, opt := range opts {
		opt(&o)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverNewPolicy}
	switch {
	case o.deliverAll:
		cfg.DeliverPolicy = jetstream.DeliverAllPolicy
	case !o.since.IsZero():
		since := o.since
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	sctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := c.eventsStream(sctx); err != nil {
		return fmt.Errorf("subscribe to %s: %w", filter, err)
	}
	cons, err := c.js.OrderedConsumer(sctx, c.subj.EventsStream(), cfg)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", filter, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		if ctx.Err() != nil {
			return
		}
		e, err := DecodeEvent(m.Data())
		if err != nil {
			return
		}
		fn(e)
	}, jetstream.ConsumeErrHandler(func(jetstream.ConsumeContext, error) {}))
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", filter, err)
	}
	go func() {
		<-ctx.Done()
		cc.Stop()
	}()
	return nil
}

// Events returns the stored events that match filter (as for Subscribe) and were
// published at or after since (the zero time: all of them), oldest first, at most limit
// of the newest when limit > 0.
func (c *Client) Events(ctx context.Context, filter string, since time.Time, limit int) ([]*Event, error) {
	filter, err := c.eventFilter(filter)
	if err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := c.eventsStream(ctx); err != nil {
		return nil, fmt.Errorf("read events %s: %w", filter, err)
	}
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, DeliverPolicy: jetstream.DeliverAllPolicy}
	if !since.IsZero() {
		cfg.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		cfg.OptStartTime = &since
	}
	var out []*Event
	err = c.scan(ctx, c.subj.EventsStream(), cfg, func(m jetstream.Msg) {
		if e, err := DecodeEvent(m.Data()); err == nil {
			out = append(out, e)
			if limit > 0 && len(out) > 2*limit {
				out = append(out[:0:0], out[len(out)-limit:]...)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("read events %s: %w", filter, err)
	}
	if limit > 0 && len(out) > limit {
		out = out[len(out)-limit:]
	}
	return out, nil
}

// Snapshots asks a worker of the client's pool for the snapshots in repo (empty: the
// worker's default repo), only those of source when it is set, oldest first as the worker
// lists them.
func (c *Client) Snapshots(ctx context.Context, repo, source string) ([]Snapshot, error) {
	if err := ValidateRepoName(repo); err != nil {
		return nil, err
	}
	if source != "" {
		if err := validateAbs("source", source); err != nil {
			return nil, err
		}
	}
	if err := c.checkConnected(); err != nil {
		return nil, fmt.Errorf("list snapshots: %w", err)
	}
	data, err := json.Marshal(SnapshotsRequest{V: Version, Repo: repo, Source: source})
	if err != nil {
		return nil, fmt.Errorf("list snapshots: encode request: %w", err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	msg, err := c.nc.RequestWithContext(ctx, c.subj.API(c.pool, "snapshots"), data)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("list snapshots: %w serves pool %q on %s: start one with brr-worker, or name another pool", ErrNoWorker, c.pool, c.where())
	}
	if err != nil {
		return nil, fmt.Errorf("list snapshots: ask pool %q: %w", c.pool, err)
	}
	var reply SnapshotsReply
	if err := json.Unmarshal(msg.Data, &reply); err != nil {
		return nil, fmt.Errorf("list snapshots: %w: reply is not valid JSON: %v", ErrInvalid, err)
	}
	if reply.V != Version {
		return nil, fmt.Errorf("list snapshots: %w: reply has version %d, this code reads version %d", ErrUnknownVersion, reply.V, Version)
	}
	if reply.Error != "" {
		return nil, fmt.Errorf("list snapshots of repo %q: %s", reply.Repo, reply.Error)
	}
	return reply.Snapshots, nil
}
