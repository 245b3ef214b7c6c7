package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/clock"
	"github.com/brr-dev/brr/internal/health"
	"github.com/brr-dev/brr/internal/state"
)

const (
	// storeCheckEvery is how often the guard looks at the embedded server's store: two
	// cheap calls (the server's health of its streams, and statfs).
	storeCheckEvery = 2 * time.Second
	// storeRoom is the free space the guard waits for before it starts JetStream again
	// after the store filled up: less would fill up again at once.
	storeRoom = 4 << 20
	// storeRetryMin and storeRetryMax bound the backoff between two restarts of
	// JetStream that did not make the store writable.
	storeRetryMin = 10 * time.Second
	storeRetryMax = 5 * time.Minute
)

// storeGuard watches the JetStream store of the worker's embedded nats-server, in
// data_dir/jetstream. When a write to it fails (the disk is full), nats-server v2.15
// logs "no space left on device", stops answering publishes to the stream (a client
// sees only "nats: timeout") and keeps the stream's write error until JetStream starts
// again, even once there is room. The guard finds that from the server's health and
// says what happened and what to do: in the log, in /readyz, in the pool's health
// report of this worker (API, dashboard, metrics), in a health event, and in the
// worker's answer to a ping, which the client adds to the error of a publish that timed
// out. When there is room again it starts JetStream again in the same process, and
// the streams and consumers come back from the store as they were: no restart.
type storeGuard struct {
	ns  *server.Server
	dir string // data_dir/jetstream, as the worker hands it to the server
	log zerolog.Logger
	// changed, when set, is called from Run with the new problem ("" when it cleared)
	// and the free and total bytes of the store's file system.
	changed func(problem string, free, total uint64)
	// restart starts JetStream again; restartJetStream unless a test sets another.
	restart func() error

	mu      sync.Mutex
	problem string
	// nextTry is when the guard may restart JetStream again, and backoff how long it
	// waits after that try.
	nextTry time.Time
	backoff time.Duration
}

func newStoreGuard(ns *server.Server, dir string, log zerolog.Logger) *storeGuard {
	g := &storeGuard{ns: ns, dir: dir, log: log.With().Str("component", "jetstream-store").Str("store", dir).Logger(), backoff: storeRetryMin}
	g.restart = g.restartJetStream
	return g
}

// Problem is what keeps the embedded JetStream from storing now, for people, with what
// to do; "" when nothing does.
func (g *storeGuard) Problem() string {
	if g == nil {
		return ""
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.problem
}

// Run checks the store every storeCheckEvery until ctx is done; then it returns nil.
func (g *storeGuard) Run(ctx context.Context) error {
	for {
		g.check(time.Now())
		if !clock.Sleep(ctx, storeCheckEvery) {
			return nil
		}
	}
}

// check looks at the store once: it records a problem found or cleared, and starts
// JetStream again when the store failed and there is room now.
func (g *storeGuard) check(now time.Time) {
	free, total, _ := health.DiskUsage(g.dir)
	werr, full := g.writeError()
	problem := ""
	if werr != "" {
		problem = storeProblem(g.dir, werr, full, free, total)
	}
	g.mu.Lock()
	was := g.problem
	g.problem = problem
	g.mu.Unlock()
	switch {
	case problem != "" && was == "":
		g.log.Error().Str("error", werr).Uint64("free_bytes", free).Msg(problem)
		g.nextTry = now // try as soon as there is room
	case problem == "" && was != "":
		g.log.Info().Uint64("free_bytes", free).Msg("the JetStream store can be written again: jobs flow again")
		g.backoff = storeRetryMin
	}
	if g.changed != nil && problem != was {
		g.changed(problem, free, total)
	}
	if problem == "" || now.Before(g.nextTry) || (full && free < storeRoom) {
		return
	}
	g.log.Warn().Uint64("free_bytes", free).Msg("starting JetStream of the embedded server again, to clear the store's write error")
	if err := g.restart(); err != nil {
		g.log.Error().Err(err).Dur("retry_in", g.backoff).Msg("start JetStream again")
	}
	g.nextTry = now.Add(g.backoff)
	g.backoff = min(2*g.backoff, storeRetryMax)
}

// writeError is the store's write error the server reports, "" when none, and whether
// it is a full disk. A JetStream that the server disabled counts as one: nats-server
// disables it when a clustered write runs out of space.
func (g *storeGuard) writeError() (werr string, full bool) {
	if !g.ns.JetStreamEnabled() {
		return "JetStream is disabled", false
	}
	hs := g.ns.Healthz(&server.HealthzOptions{Details: true})
	for _, e := range hs.Errors {
		if !strings.Contains(e.Error, "write error") {
			continue
		}
		if strings.Contains(e.Error, "no space left") {
			return e.Error, true
		}
		if werr == "" {
			werr = e.Error
		}
	}
	return werr, false
}

// restartJetStream shuts JetStream down, keeping its store, and starts it again on the
// same store dir: the streams and consumers are read back from the store without the
// write error that the old ones kept.
func (g *storeGuard) restartJetStream() error {
	if err := g.ns.ShutdownJetStream(); err != nil {
		return fmt.Errorf("shut down jetstream: %w", err)
	}
	if err := g.ns.EnableJetStream(&server.JetStreamConfig{StoreDir: g.dir, Strict: true}); err != nil {
		return fmt.Errorf("enable jetstream: %w", err)
	}
	return nil
}

// storeProblem says, for people, that the store at dir cannot be written and what to do.
func storeProblem(dir, werr string, full bool, free, total uint64) string {
	if full {
		return fmt.Sprintf("the JetStream store of the embedded NATS server at %s is full (no space left on device; %s free of %s): "+
			"jobs cannot be queued, taken or reported; free space on the file system of %s (or move data_dir to a larger disk): "+
			"the worker starts JetStream again by itself once %s are free, without a restart",
			dir, brr.FormatBytes(int64(free)), brr.FormatBytes(int64(total)), dir, brr.FormatBytes(storeRoom))
	}
	return fmt.Sprintf("the JetStream store of the embedded NATS server at %s cannot be written (%s): "+
		"jobs cannot be queued, taken or reported; see the worker's log, fix the store dir, "+
		"and the worker starts JetStream again by itself, without a restart", dir, werr)
}

// storeSubject is the subject of the disk health result about worker's JetStream store.
func storeSubject(worker string) string { return worker + ":jetstream" }

// storeChanged is the guard's changed for this worker: the problem goes into the pool's
// health as this worker reports it (monitor's local result of the disk check), and a
// brr.events.health.disk event into the outbox, which publishes it when JetStream takes
// it again: critical when the store fails, ok when it is writable again.
func (w *worker) storeChanged(monitor *health.Monitor) func(problem string, free, total uint64) {
	subj := brr.Subjects{Prefix: w.cfg.Prefix}
	return func(problem string, free, total uint64) {
		now := time.Now().UTC()
		res := brr.HealthCheck{Check: brr.CheckDisk, Subject: storeSubject(w.id), Status: brr.HealthCritical, Message: problem, Time: now, Since: now}
		if total > 0 {
			res.Value = 100 * float64(free) / float64(total)
		}
		if problem == "" {
			res.Status = brr.HealthOK
			res.Message = fmt.Sprintf("the JetStream store of the embedded NATS server of worker %s can be written again (%s free)", w.id, brr.FormatBytes(int64(free)))
			monitor.ClearLocal(res.Check, res.Subject)
		} else {
			monitor.SetLocal(res)
		}
		e := &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventHealth, Status: brr.Status(brr.CheckDisk), Time: now, Worker: w.id, Host: w.host, Check: &res}
		data, err := json.Marshal(e)
		if err == nil {
			err = w.db.Enqueue(state.OutboxMsg{Subject: subj.Event(e), MsgID: e.ID, Data: data})
		}
		if err != nil {
			w.log.Warn().Err(err).Msg("queue the health event of the JetStream store")
		}
	}
}
