package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

// Sweeper moves to the dead-letter stream the jobs whose last delivery was never settled
// because the worker running it died: the server announces them with a MAX_DELIVERIES
// advisory and keeps them in BRR_JOBS, where no consumer will deliver them again.
type Sweeper struct {
	js    jetstream.JetStream
	store Store
	cfg   Config
	log   zerolog.Logger
}

// NewSweeper returns a Sweeper for the pools of cfg that records what it sweeps in store
// (and publishes it through store's outbox).
func NewSweeper(js jetstream.JetStream, store Store, cfg Config, log zerolog.Logger) *Sweeper {
	cfg = cfg.withDefaults()
	return &Sweeper{js: js, store: store, cfg: cfg, log: log.With().Str("worker", cfg.Worker).Logger()}
}

// maxDeliveriesAdvisory is the part of the server's advisory the sweeper reads.
type maxDeliveriesAdvisory struct {
	Stream     string `json:"stream"`
	Consumer   string `json:"consumer"`
	StreamSeq  uint64 `json:"stream_seq"`
	Deliveries uint64 `json:"deliveries"`
}

// AdvisorySubject is the subject of the advisory the server sends when a job of pool
// has been delivered MaxDeliver times without being settled.
func (s *Sweeper) AdvisorySubject(pool string) string {
	return "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES." + s.cfg.Subjects.JobsStream() + "." + s.cfg.Subjects.Consumer(pool)
}

// Run listens for the advisories of every pool until ctx is done. Each pool's workers
// share a queue group, so one of them sweeps each job.
func (s *Sweeper) Run(ctx context.Context) error {
	nc := s.js.Conn()
	advisories := make(chan *nats.Msg, 64)
	var subs []*nats.Subscription
	defer func() {
		for _, sub := range subs {
			_ = sub.Unsubscribe()
		}
	}()
	for _, pool := range s.cfg.Pools {
		sub, err := nc.ChanQueueSubscribe(s.AdvisorySubject(pool), "sweeper-"+s.cfg.Subjects.Consumer(pool), advisories)
		if err != nil {
			return fmt.Errorf("subscribe to max-deliveries advisories of pool %s: %w", pool, err)
		}
		subs = append(subs, sub)
	}
	if err := nc.Flush(); err != nil {
		return fmt.Errorf("subscribe to max-deliveries advisories: %w", err)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-advisories:
			var a maxDeliveriesAdvisory
			if err := json.Unmarshal(m.Data, &a); err != nil {
				s.log.Warn().Err(err).Str("subject", m.Subject).Msg("unreadable max-deliveries advisory")
				continue
			}
			if err := s.sweep(ctx, a); err != nil {
				s.log.Error().Err(err).Uint64("seq", a.StreamSeq).Msg("sweep job out of attempts")
			}
		}
	}
}

// sweep writes the dead letter of the job at a.StreamSeq and deletes it from BRR_JOBS.
func (s *Sweeper) sweep(ctx context.Context, a maxDeliveriesAdvisory) error {
	stream, err := s.js.Stream(ctx, s.cfg.Subjects.JobsStream())
	if err != nil {
		return fmt.Errorf("open stream %s: %w", s.cfg.Subjects.JobsStream(), err)
	}
	raw, err := stream.GetMsg(ctx, a.StreamSeq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil // a worker settled it after all
	}
	if err != nil {
		return fmt.Errorf("get job message %d: %w", a.StreamSeq, err)
	}
	rec := s.record(raw)
	if old, err := s.store.Job(rec.ID); err == nil && old != nil {
		if old.Status.Final() {
			// This worker already ended it; only the message is left over.
			return s.delete(ctx, stream, a.StreamSeq)
		}
		old.Worker = s.cfg.Worker
		rec = old
	}
	rec.Status = brr.StatusDead
	rec.Attempts = int(a.Deliveries)
	rec.Error = fmt.Sprintf("delivered %d times and never settled: the worker running its last attempt died or stalled", a.Deliveries)
	rec.Finished = time.Now().UTC()
	request := raw.Data
	if len(rec.Request) > 0 {
		request = rec.Request
	}
	out, err := deadLetterMsgs(s.cfg, rec, raw.Subject, request, int(a.Deliveries), a.StreamSeq)
	if err != nil {
		return err
	}
	e := s.cfg.newEvent(brr.EventJob, brr.StatusDead)
	e.JobID, e.Kind, e.Pool = rec.ID, rec.Kind, rec.Pool
	e.Repo, e.Source = rec.Repo, rec.Source
	e.Attempt = rec.Attempts
	e.Error = rec.Error
	out = append(s.cfg.outboxMsgs(e), out...)
	if err := s.store.PutJob(rec, out...); err != nil {
		return fmt.Errorf("record dead job %s: %w", rec.ID, err)
	}
	s.log.Warn().Str("job_id", rec.ID).Str("kind", string(rec.Kind)).Uint64("seq", a.StreamSeq).
		Uint64("deliveries", a.Deliveries).Msg("job out of attempts sent to the dead-letter stream")
	return s.delete(ctx, stream, a.StreamSeq)
}

func (s *Sweeper) delete(ctx context.Context, stream jetstream.Stream, seq uint64) error {
	if err := stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("delete job message %d: %w", seq, err)
	}
	return nil
}

// record returns what the sweeper knows of the job in raw: all of it when it decodes,
// else its subject's pool and kind and an id from its headers or sequence.
func (s *Sweeper) record(raw *jetstream.RawStreamMsg) *state.JobRecord {
	pool, kind, ok := s.cfg.Subjects.ParseJob(raw.Subject)
	if !ok {
		kind = invalidKind
	}
	rec := &state.JobRecord{Pool: pool, Kind: kind, Worker: s.cfg.Worker}
	if json.Valid(raw.Data) {
		rec.Request = raw.Data
	}
	if job, err := brr.DecodeJob(raw.Data); err == nil {
		if sch := raw.Header.Get(jetstream.SchedulerHeader); sch != "" {
			// Fired from a schedule: the job has its per-tick id, as the consumer gave it.
			fired(job, s.cfg.Subjects, sch, raw.Sequence, raw.Time)
			if data, err := json.Marshal(job); err == nil {
				rec.Request = data
			}
		}
		rec.ID, rec.Pool, rec.Kind, rec.Created = job.ID, job.Pool, job.Kind, job.Created
		scope := job.Args.Scope()
		rec.Repo, rec.Source = scope.Repo, scope.Source
		return rec
	}
	rec.ID = fallbackID(raw.Header.Get("Nats-Msg-Id"), envelopeID(raw.Data), raw.Sequence)
	return rec
}
