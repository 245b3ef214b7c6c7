package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/brr-dev/brr"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Queries answers the questions the CLI asks the workers of a pool over request/reply,
// for what lives in a repository rather than in a stream. Queries that also implement
// PointQueries answer "checkpoints" too.
type Queries interface {
	Snapshots(ctx context.Context, repo, source string) ([]brr.Snapshot, error)
}

// apiConcurrency bounds the queries one worker answers at once; a listing reads a
// repository's snapshot files and should not starve the jobs.
const apiConcurrency = 4

// fallbackDelay is how long a worker that refuses a repo waits before it answers a query,
// so that a worker of the pool that serves every repo answers first.
const fallbackDelay = 3 * time.Second

// ServeAPI answers queries on brr.api.<pool>.<query> for every pool of cfg until ctx is
// done. The workers of a pool share a queue group, so each request is answered by one
// of them. A request that cannot be decoded gets a reply with Error set, never silence,
// so the CLI says what was wrong instead of timing out.
//
// The query "ping" says that a worker serves the pool (brr.PingReply, with cfg.Worker):
// it is answered at once, beside the listings, so that a client learns whether to wait
// for a job before it publishes one; when no worker serves the pool, nobody listens and
// the client's request fails with no responders. The answer carries cfg.Problem, so
// that a client whose publish timed out can say why.
//
// A worker that refuses a repo (cfg.Refused) would answer for it from no repository or
// from the wrong one, and a request names its repo only in its body. So it serves in a
// queue group of its own, workers-<pool>-fallback, which gets every request as well, and
// answers fallbackDelay late: the client takes the first answer, a worker's of the pool's
// own group, and this one's counts only when no such worker answers. It answers pings at
// once: it does serve the pool. What a worker refuses changes as its pool's registry
// does: ServeAPI looks every refusalCheck and moves to the other group when it must.
func ServeAPI(ctx context.Context, nc *nats.Conn, cfg Config, q Queries, log zerolog.Logger) error {
	cfg = cfg.withDefaults()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		closed bool
	)
	respond := func(m *nats.Msg, reply any) {
		data, err := json.Marshal(reply)
		if err != nil {
			log.Error().Err(err).Str("subject", m.Subject).Msg("encode api reply")
			return
		}
		if err := m.Respond(data); err != nil {
			log.Warn().Err(err).Str("subject", m.Subject).Msg("send api reply")
		}
	}
	pong := func() brr.PingReply { return brr.PingReply{V: brr.Version, Worker: cfg.Worker, Problem: cfg.problem()} }
	streams := &streamer{nc: nc, subj: cfg.Subjects, log: log, idle: brr.StreamIdle}
	defer streams.wait()
	sem := make(chan struct{}, apiConcurrency)
	// serve answers m in a goroutine of its own, once a slot is free.
	serve := func(m *nats.Msg) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		mu.Lock()
		if closed {
			mu.Unlock()
			<-sem
			return
		}
		wg.Add(1)
		mu.Unlock()
		go func() {
			defer func() { <-sem; wg.Done() }()
			var reply any
			if b, pool, query, ok := browseQuery(q, m.Subject); ok {
				reply = streams.browse(ctx, b, pool, query, m.Data)
			} else if pq, ok := q.(PointQueries); ok && strings.HasSuffix(m.Subject, ".checkpoints") {
				reply = checkpoints(ctx, pq, m.Data, cfg.refused())
			} else {
				reply = snapshots(ctx, q, m.Data)
			}
			respond(m, reply)
		}()
	}
	// handle answers a request at once; fallback answers it fallbackDelay late.
	handle := func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		if strings.HasSuffix(m.Subject, ".ping") {
			respond(m, pong()) // nothing to read: not worth a slot
			return
		}
		serve(m)
	}
	fallback := func(m *nats.Msg) {
		if m.Reply == "" {
			return
		}
		if strings.HasSuffix(m.Subject, ".ping") {
			respond(m, pong())
			return
		}
		// Wait without holding up the subscription or a slot.
		mu.Lock()
		if closed {
			mu.Unlock()
			return
		}
		wg.Add(1)
		mu.Unlock()
		go func() {
			defer wg.Done()
			t := time.NewTimer(fallbackDelay)
			defer t.Stop()
			select {
			case <-t.C:
				serve(m)
			case <-ctx.Done():
			}
		}()
	}

	queries := []string{"ping", "snapshots"}
	if _, ok := q.(PointQueries); ok {
		queries = append(queries, "checkpoints")
	}
	if _, ok := q.(Browser); ok {
		queries = append(queries, browseQueries...)
	}
	// subscribe subscribes in the pool's own group, or in its fallback group.
	subscribe := func(refusing bool) ([]*nats.Subscription, error) {
		var subs []*nats.Subscription
		for _, pool := range cfg.Pools {
			group, h := cfg.Subjects.Consumer(pool), handle
			if refusing {
				group, h = group+"-fallback", fallback
			}
			for _, query := range queries {
				subject := cfg.Subjects.API(pool, query)
				s, err := nc.QueueSubscribe(subject, group, h)
				if err != nil {
					unsubscribe(subs)
					return nil, fmt.Errorf("subscribe %s: %w", subject, err)
				}
				subs = append(subs, s)
			}
		}
		if err := nc.Flush(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			unsubscribe(subs)
			return nil, fmt.Errorf("subscribe to api subjects: %w", err)
		}
		return subs, nil
	}
	refusing := len(cfg.refused()) > 0
	subs, err := subscribe(refusing)
	if err != nil {
		return err
	}
	tick := time.NewTicker(refusalCheck)
	defer tick.Stop()
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-tick.C:
			now := len(cfg.refused()) > 0
			if now == refusing {
				continue
			}
			// Into the other group before out of this one: a request may be answered
			// twice meanwhile, never not at all.
			next, err := subscribe(now)
			if err != nil {
				log.Warn().Err(err).Msg("move the query service to the other queue group; trying again")
				continue
			}
			unsubscribe(subs)
			subs, refusing = next, now
			log.Info().Bool("refusing", refusing).Msg("query service moved queue group: a worker that refuses a repo answers only when no other worker does")
		}
	}
	unsubscribe(subs)
	mu.Lock()
	closed = true
	mu.Unlock()
	wg.Wait()
	return nil
}

// refusalCheck is how often ServeAPI looks whether the worker refuses a repo now.
const refusalCheck = time.Second

// unsubscribe ends subs.
func unsubscribe(subs []*nats.Subscription) {
	for _, s := range subs {
		_ = s.Unsubscribe()
	}
}

// snapshots answers one snapshots request.
func snapshots(ctx context.Context, q Queries, data []byte) brr.SnapshotsReply {
	reply := brr.SnapshotsReply{V: brr.Version}
	var req brr.SnapshotsRequest
	if reply.Error = decodeRequest("snapshots", data, &req, &req.V); reply.Error != "" {
		return reply
	}
	reply.Repo = req.Repo
	list, err := q.Snapshots(ctx, req.Repo, req.Source)
	if err != nil {
		reply.Error = err.Error()
		return reply
	}
	if list == nil {
		list = []brr.Snapshot{}
	}
	reply.Snapshots = list
	if reply.Repo == "" && len(list) > 0 {
		reply.Repo = list[0].Repo // the worker's default repo
	}
	return reply
}

// decodeRequest decodes the request of query into req, whose version field is v, and
// returns what the reply says when it cannot be answered: it is not JSON, or of another
// version.
func decodeRequest(query string, data []byte, req any, v *int) string {
	if err := json.Unmarshal(data, req); err != nil {
		return fmt.Sprintf("%s request is not valid JSON (%v): send {\"v\":%d,\"repo\":\"NAME\"}", query, err, brr.Version)
	}
	if *v != brr.Version {
		return fmt.Sprintf("%s request has version %d, this worker reads version %d: upgrade the client or the worker", query, *v, brr.Version)
	}
	return ""
}

// PointQueries answers the checkpoints query. ServeAPI serves it when its Queries
// implement it too; *jobs.Engine does.
type PointQueries interface {
	// Checkpoints lists the recovery points of repo, or of every repo when it is empty;
	// unread names the repos that could not be read, with why (their points come from
	// an index).
	Checkpoints(ctx context.Context, repo string) (points []brr.RecoveryPoint, unread map[string]string, err error)
}

// checkpoints answers one checkpoints request; a request for every repo names the repos
// refused among those that could not be read, with why.
func checkpoints(ctx context.Context, q PointQueries, data []byte, refused map[string]string) brr.CheckpointsReply {
	reply := brr.CheckpointsReply{V: brr.Version, Points: []brr.RecoveryPoint{}}
	var req brr.CheckpointsRequest
	if reply.Error = decodeRequest("checkpoints", data, &req, &req.V); reply.Error != "" {
		return reply
	}
	points, unread, err := q.Checkpoints(ctx, req.Repo)
	if err != nil {
		reply.Error = err.Error()
		return reply
	}
	if points != nil {
		reply.Points = points
	}
	reply.Unread = unread
	if req.Repo == "" && len(refused) > 0 {
		if reply.Unread == nil {
			reply.Unread = map[string]string{}
		}
		for name, why := range refused {
			reply.Unread[name] = why
		}
	}
	return reply
}
