package brr

import "context"

// PingReply is what a worker answers on brr.api.<pool>.ping, the query that tells
// whether any worker serves a pool (Client.Served). The worker answers at once, whatever
// the request holds, without reading a repository. It is not a ping job (PingJob), which
// goes through the job stream and the whole pipeline.
//
//	{"v":1,"worker":"db1-3f9c"}
type PingReply struct {
	V int `json:"v"`
	// Worker is the id of the worker that answered: one of the pool's, whichever the
	// queue group picked.
	Worker string `json:"worker"`
	// Problem, when set, is what keeps the worker's NATS from storing jobs and events
	// now, for people, with what to do: the JetStream store of its embedded server is
	// full. A publish that times out adds it to its error.
	Problem string `json:"problem,omitempty"`
}

// Served asks whether a worker serves pool (empty: the client's pool). It returns the id
// of the worker that answered, or an error wrapping ErrNoWorker when none listens: a job
// published to that pool would then wait in the queue until a worker of the pool starts.
// It is one request, answered without reading a repository: ask it before publishing a
// job that you mean to wait for, so that the wait does not last forever.
func (c *Client) Served(ctx context.Context, pool string) (string, error) {
	if pool == "" {
		pool = c.pool
	}
	if err := ValidatePool(pool); err != nil {
		return "", err
	}
	var reply PingReply
	if err := c.askPool(ctx, pool, "ping", struct {
		V int `json:"v"`
	}{Version}, &reply); err != nil {
		return "", err
	}
	return reply.Worker, nil
}
