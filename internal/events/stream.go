package events

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// eventsDedupWindow is the duplicate window of the event stream: long enough for an
// outbox that publishes again after a lost ack, short enough to keep the server's
// dedup table small at thousands of events a second.
const eventsDedupWindow = 2 * time.Minute

// EnsureStreams creates the streams and buckets brr needs, or updates them to cfg:
// BRR_JOBS, BRR_EVENTS, BRR_DLQ, KV BRR_LEASES, KV BRR_RESULTS, KV BRR_HEALTH and KV
// BRR_REPOS. It is
// idempotent, and several workers may call it at once: the loser of a create race
// updates instead.
func EnsureStreams(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	cfg = cfg.withDefaults()
	s := cfg.Subjects
	streams := []jetstream.StreamConfig{
		{
			Name:              s.JobsStream(),
			Description:       "brr job requests, schedules and snoozed jobs",
			Subjects:          []string{s.AllJobs(), s.AllSchedules(), s.AllSnoozes()},
			Retention:         jetstream.WorkQueuePolicy,
			Storage:           jetstream.FileStorage,
			Replicas:          cfg.StreamReplicas,
			Duplicates:        cfg.DedupWindow,
			AllowMsgSchedules: true,
			AllowMsgTTL:       true,
		},
		{
			Name:        s.EventsStream(),
			Description: "brr events",
			Subjects:    []string{s.Events("")},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.StreamReplicas,
			MaxAge:      cfg.EventsMaxAge,
			Duplicates:  min(eventsDedupWindow, cfg.EventsMaxAge),
		},
		{
			Name:        s.DLQStream(),
			Description: "brr dead letters: jobs that failed for good",
			Subjects:    []string{s.AllDLQ()},
			Retention:   jetstream.LimitsPolicy,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.StreamReplicas,
			MaxAge:      cfg.DLQMaxAge,
			Duplicates:  min(cfg.DedupWindow, cfg.DLQMaxAge),
		},
	}
	for _, sc := range streams {
		if err := retryCreate(ctx, func() error {
			_, err := js.CreateOrUpdateStream(ctx, sc)
			return err
		}); err != nil {
			return fmt.Errorf("ensure stream %s: %w", sc.Name, err)
		}
	}
	buckets := []jetstream.KeyValueConfig{
		{
			Bucket:      s.LeasesBucket(),
			Description: "brr leases, one key per repo or source",
			History:     1,
			TTL:         cfg.LeaseTTL,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.StreamReplicas,
		},
		{
			Bucket:      s.ResultsBucket(),
			Description: "brr latest job event per job id",
			History:     1,
			TTL:         cfg.ResultsTTL,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.StreamReplicas,
		},
		{
			// A few keys, one per health check, rewritten every health interval: whose
			// turn the check is and its last results (internal/health).
			Bucket:      s.HealthBucket(),
			Description: "brr health check state, one key per check",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.StreamReplicas,
		},
		{
			// One key per job id, written by Client.Cancel, watched by every worker
			// (cancel.go); as long-lived as the results, so that a job that waits in the
			// queue or between attempts is still cancelled when it comes.
			Bucket:      s.CancelBucket(),
			Description: "brr cancel requests, one key per job id",
			History:     1,
			TTL:         cfg.ResultsTTL,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.StreamReplicas,
		},
		{
			// One key per pool and repo name, written once by the first worker of the pool
			// that serves a repo of that name (registry.go); kept until removed by hand.
			Bucket:      s.ReposBucket(),
			Description: "brr repository registry: which repository each repo name means, per pool",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    cfg.StreamReplicas,
		},
	}
	for _, kc := range buckets {
		if err := retryCreate(ctx, func() error {
			_, err := js.CreateOrUpdateKeyValue(ctx, kc)
			return err
		}); err != nil {
			return fmt.Errorf("ensure bucket %s: %w", kc.Bucket, err)
		}
	}
	return nil
}

// retryCreate runs create until it succeeds, fails with an error other than a
// create/update race, or has lost the race five times. CreateOrUpdate is update, then
// create when the stream is not found; a second worker doing the same in between makes
// the create fail with "name already in use", and the next update succeeds.
func retryCreate(ctx context.Context, create func() error) error {
	var err error
	for attempt := range 5 {
		if err = create(); err == nil || !isCreateRace(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 20 * time.Millisecond):
		}
	}
	return err
}

func isCreateRace(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeStreamNameInUse, jetstream.JSErrCodeStreamNotFound:
			return true
		}
	}
	return errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) || errors.Is(err, jetstream.ErrStreamNotFound)
}
