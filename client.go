package brr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/brr-dev/brr/internal/natsutil"
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

// InboxPrefix is the inbox prefix of NATS user user in brr's deployments, "_INBOX_<user>":
// deploy/nats/accounts.conf lets each user subscribe to its own "_INBOX_<user>.>" and to
// no other inbox, so that no credential reads the replies meant for another (job acks,
// job results, query answers, the messages of its consumers). Connect a user with those
// permissions with it, or its replies are refused:
//
//	nc, err := nats.Connect(url, nats.UserInfo("publisher", password),
//		nats.CustomInboxPrefix(brr.InboxPrefix("publisher")))
//
// A .creds file names no user that the client could read: use the prefix its JWT allows.
func InboxPrefix(user string) string { return "_INBOX_" + user }

// ValidateInboxPrefix checks an inbox prefix: dot-separated tokens without wildcards or
// white space, and not ending in a dot ("_INBOX_publisher", "_INBOX.app1").
func ValidateInboxPrefix(prefix string) error {
	for _, tok := range strings.Split(prefix, ".") {
		if tok == "" || strings.ContainsAny(tok, "*> \t\r\n") {
			return fmt.Errorf("%w: inbox prefix %q: use dot-separated tokens without '*', '>' or white space, such as %q", ErrInvalid, prefix, InboxPrefix("publisher"))
		}
	}
	return nil
}

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

func (c *Client) publishErr(err error) error {
	switch {
	case errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, nats.ErrNoResponders), errors.Is(err, jetstream.ErrStreamNotFound):
		return c.noStream(c.subj.JobsStream())
	case errors.Is(err, jetstream.ErrJetStreamNotEnabled), errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount):
		return fmt.Errorf("JetStream is not enabled on %s: run the server with JetStream (nats-server -js) or let brr-worker embed one: %w", c.where(), err)
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return c.whyTimeout(err)
	}
	return err
}

// whyAsk bounds the question whyTimeout asks: a worker answers a ping at once.
const whyAsk = 3 * time.Second

// whyTimeout adds to err, a JetStream request that the server did not answer in time,
// what the pool's worker says keeps its NATS from storing (brr.PingReply.Problem): a
// full JetStream store makes nats-server drop publishes without an answer, and its only
// trace is in the server's log. err is returned as it is when no worker says anything.
func (c *Client) whyTimeout(err error) error {
	ctx, cancel := context.WithTimeout(context.Background(), whyAsk)
	defer cancel()
	var reply PingReply
	if c.askPool(ctx, c.pool, "ping", struct {
		V int `json:"v"`
	}{Version}, &reply) != nil || reply.Problem == "" {
		return err
	}
	return fmt.Errorf("%w: worker %s says: %s", err, reply.Worker, reply.Problem)
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
	// Each batch is read through a consumer of its own, which a server of a cluster may
	// not know of yet: see natsutil.Unanswered.
	var unanswered natsutil.Unanswered
	for {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("read %s: %w", stream, err)
		}
		batch, err := cons.FetchNoWait(scanBatch)
		if err == nil {
			var n int
			var done bool
			n, done, err = readBatch(batch, fn)
			if err == nil && (n == 0 || done) {
				return nil
			}
			if n > 0 {
				unanswered.Answered()
			}
		}
		if err != nil {
			if err := unanswered.Again(ctx, err); err != nil {
				return fmt.Errorf("read %s: %w", stream, err)
			}
		}
	}
}

// scanBatch is how many messages scan asks for at once: each batch costs the server a
// consumer.
const scanBatch = 1024

// readBatch calls fn with each message of batch and returns how many there were and
// whether the last one was the last of the consumer's.
func readBatch(batch jetstream.MessageBatch, fn func(jetstream.Msg)) (n int, done bool, err error) {
	for m := range batch.Messages() {
		n++
		fn(m)
		if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
			done = true
		}
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && !errors.Is(err, nats.ErrTimeout) {
		return n, done, err
	}
	return n, done, nil
}

// ask asks a worker of the client's pool the query (brr.api.<pool>.<query>) with req and
// decodes the answer into reply, whose version it checks; what names the question in
// errors ("list snapshots").
func (c *Client) ask(ctx context.Context, what, query string, req, reply any) error {
	if err := c.askPool(ctx, c.pool, query, req, reply); err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}

// askPool is ask of pool, with errors that do not name the question.
func (c *Client) askPool(ctx context.Context, pool, query string, req, reply any) error {
	if err := c.checkConnected(); err != nil {
		return err
	}
	data, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	msg, err := c.nc.RequestWithContext(ctx, c.subj.API(pool, query), data)
	if errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("%w serves pool %q on %s: start one with brr-worker, or name another pool", ErrNoWorker, pool, c.where())
	}
	if err != nil {
		return fmt.Errorf("ask pool %q: %w", pool, err)
	}
	var v struct {
		V int `json:"v"`
	}
	if err := json.Unmarshal(msg.Data, &v); err != nil {
		return fmt.Errorf("%w: reply is not valid JSON: %v", ErrInvalid, err)
	}
	if v.V != Version {
		return fmt.Errorf("%w: reply has version %d, this code reads version %d", ErrUnknownVersion, v.V, Version)
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		return fmt.Errorf("%w: reply is not valid JSON: %v", ErrInvalid, err)
	}
	return nil
}
