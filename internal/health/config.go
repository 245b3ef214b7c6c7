package health

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
)

// Config is what every part of the package needs to know. Zero fields take the defaults
// listed beside them.
type Config struct {
	// Subjects names the subjects, the event stream and the BRR_HEALTH bucket.
	Subjects brr.Subjects
	// Worker is this worker's id and Host its host name; both go into the events.
	Worker, Host string
	// Interval is how often heartbeats go out and checks run; default 15s. The workers of
	// a pool should share it: a check's turns are the multiples of the interval.
	Interval time.Duration
	// SummaryEvery makes every SummaryEvery-th turn of a check publish all its results,
	// changed or not; default 4.
	SummaryEvery int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// DefaultInterval is the health interval of a Config that sets none.
const DefaultInterval = 15 * time.Second

func (c Config) withDefaults() Config {
	if c.Interval <= 0 {
		c.Interval = DefaultInterval
	}
	if c.SummaryEvery <= 0 {
		c.SummaryEvery = 4
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// tick is the start of the interval that now falls in: the same instant on every worker
// whose clock agrees, whatever moment each one looks.
func (c Config) tick(now time.Time) time.Time { return now.Truncate(c.Interval) }

// summary reports whether tick is one on which checks publish every result.
func (c Config) summary(tick time.Time) bool {
	return (tick.UnixNano()/int64(c.Interval))%int64(c.SummaryEvery) == 0
}

// newEvent returns a health event for check (brr.events.health.<check>), stamped now.
func (c Config) newEvent(check string, now time.Time) *brr.Event {
	return &brr.Event{
		V:      brr.Version,
		ID:     brr.NewID(),
		Type:   brr.EventHealth,
		Status: brr.Status(check),
		Time:   now.UTC(),
		Worker: c.Worker,
		Host:   c.Host,
	}
}

// publish publishes e on its subject in the event stream, with its id as Nats-Msg-Id.
func (c Config) publish(ctx context.Context, js jetstream.JetStream, e *brr.Event) error {
	data, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("encode %s event: %w", e.Status, err)
	}
	if _, err := js.Publish(ctx, c.Subjects.Event(e), data, jetstream.WithMsgID(e.ID)); err != nil {
		return fmt.Errorf("publish %s: %w", c.Subjects.Event(e), err)
	}
	return nil
}

// bucket opens the BRR_HEALTH bucket that events.EnsureStreams creates.
func (c Config) bucket(ctx context.Context, js jetstream.JetStream) (jetstream.KeyValue, error) {
	kv, err := js.KeyValue(ctx, c.Subjects.HealthBucket())
	if err != nil {
		return nil, fmt.Errorf("open bucket %s (are the streams ensured?): %w", c.Subjects.HealthBucket(), err)
	}
	return kv, nil
}
