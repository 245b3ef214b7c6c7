package events

import (
	"time"

	"github.com/brr-dev/brr"
)

// Config is what the worker's JetStream side needs to know: names, limits and timings.
// Zero fields take the defaults listed beside them (see withDefaults).
type Config struct {
	// Subjects names the subjects, streams and buckets (prefix "brr" by default).
	Subjects brr.Subjects
	// Pools are the pools this worker serves; default [brr.DefaultPool].
	Pools []string
	// Worker is this worker's id and Host its host name; both go into events and records.
	Worker, Host string
	// Concurrency is the number of jobs this worker runs at once; default 4.
	Concurrency int
	// AckWait is how long the server waits for an ack or an InProgress before it
	// redelivers a job; default 5s. Running jobs send InProgress every AckWait/3.
	AckWait time.Duration
	// MaxDeliver is how many times a job is delivered before it is dead; default 10.
	MaxDeliver int
	// BackoffBase and BackoffMax bound the delay before a job that failed with a
	// transient error is tried again; default 1s and 5m.
	BackoffBase, BackoffMax time.Duration
	// DrainTimeout is how long running jobs get to finish at shutdown; default 30s.
	DrainTimeout time.Duration
	// StreamReplicas is the replica count of every stream and bucket; default 1.
	StreamReplicas int
	// EventsMaxAge (default 7 days), DLQMaxAge (30 days), DedupWindow (10m), LeaseTTL (5s)
	// and ResultsTTL (7 days) size the streams and buckets.
	EventsMaxAge, DLQMaxAge, DedupWindow, LeaseTTL, ResultsTTL time.Duration
	// Refused returns the repos this worker has, or its pools registered, and does not
	// serve now, each with why (brr.RefusedRepo); nil refuses none. Such a worker answers
	// queries only when no other worker of the pool does (ServeAPI).
	Refused func() map[string]string
	// Problem returns what keeps this worker's NATS from storing now (its embedded
	// JetStream store is full), "" when nothing; nil is nothing. Its answer to a ping
	// carries it (brr.PingReply.Problem).
	Problem func() string
}

// DefaultAckWait and DefaultLeaseTTL make a job whose worker was killed run on another
// worker within about 7 s: the server redelivers it AckWait after the last InProgress
// (sent every AckWait/3), and its source or repo lease, renewed every LeaseTTL/3, has
// expired by then or within a second or two (a lease held by a worker that stopped
// renewing is waited out to its expiry, not half a TTL). Shorter would risk taking a live
// but stalled worker's job or lease.
const (
	DefaultAckWait  = 5 * time.Second
	DefaultLeaseTTL = 5 * time.Second
)

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if len(c.Pools) == 0 {
		c.Pools = []string{brr.DefaultPool}
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 4
	}
	if c.AckWait <= 0 {
		c.AckWait = DefaultAckWait
	}
	if c.MaxDeliver <= 0 {
		c.MaxDeliver = 10
	}
	if c.BackoffBase <= 0 {
		c.BackoffBase = time.Second
	}
	if c.BackoffMax <= 0 {
		c.BackoffMax = 5 * time.Minute
	}
	if c.BackoffMax < c.BackoffBase {
		c.BackoffMax = c.BackoffBase
	}
	if c.DrainTimeout <= 0 {
		c.DrainTimeout = 30 * time.Second
	}
	if c.StreamReplicas <= 0 {
		c.StreamReplicas = 1
	}
	if c.EventsMaxAge <= 0 {
		c.EventsMaxAge = 7 * 24 * time.Hour
	}
	if c.DLQMaxAge <= 0 {
		c.DLQMaxAge = 30 * 24 * time.Hour
	}
	if c.DedupWindow <= 0 {
		c.DedupWindow = 10 * time.Minute
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.ResultsTTL <= 0 {
		c.ResultsTTL = 7 * 24 * time.Hour
	}
	return c
}

// problem is what keeps the worker's NATS from storing now, "" when nothing does.
func (c Config) problem() string {
	if c.Problem == nil {
		return ""
	}
	return c.Problem()
}

// refused is what the worker refuses now.
func (c Config) refused() map[string]string {
	if c.Refused == nil {
		return nil
	}
	return c.Refused()
}
