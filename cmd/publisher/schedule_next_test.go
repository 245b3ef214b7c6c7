package main

import (
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

func TestNextRun(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) // a Thursday
	for _, tt := range []struct {
		cron, tz string
		stored   time.Time
		want     time.Time
	}{
		{"0 30 2 * * *", "", time.Time{}, time.Date(2026, 11, 27, 2, 30, 0, 0, time.UTC)},
		{"0 30 2 * * *", "Europe/Paris", time.Time{}, time.Date(2026, 11, 27, 1, 30, 0, 0, time.UTC)},
		{"0 0 13 * * *", "Europe/Paris", time.Time{}, time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).Add(24 * time.Hour)},
		{"@hourly", "", time.Time{}, time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC)},
		{"@daily", "", time.Time{}, time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)},
		{"0 0 4 * * sun", "", time.Time{}, time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)},
		{"*/15 * * * * *", "", time.Time{}, time.Date(2026, 11, 26, 12, 0, 15, 0, time.UTC)},
		// @every counts from when the schedule was stored.
		{"@every 15m", "", now.Add(-40 * time.Minute), now.Add(5 * time.Minute)},
		{"@every 1h", "", now.Add(-10 * time.Minute), now.Add(50 * time.Minute)},
		{"@every 15m", "", time.Time{}, time.Time{}},
		{"nonsense", "", time.Time{}, time.Time{}},
	} {
		s := &brr.Schedule{Cron: tt.cron, TimeZone: tt.tz, Stored: tt.stored}
		if got := nextRun(s, now); !got.Equal(tt.want) {
			t.Errorf("nextRun(%q, %q) = %v, want %v", tt.cron, tt.tz, got, tt.want)
		}
	}
}

// TestNextRunAsTheServer: the next run brr schedule ls shows is the one the NATS server
// computes: each fired copy says, in Nats-Schedule-Next, when the next one comes, and
// nextRun from the copy's time agrees.
func TestNextRunAsTheServer(t *testing.T) {
	t.Parallel()
	srv := natstest.StartListening(t)
	nc, js := srv.JetStream(t)
	ctx := testkit.Context(t, time.Minute)
	if err := events.EnsureStreams(ctx, js, events.Config{}); err != nil {
		t.Fatal(err)
	}
	c, err := brr.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, cron, tz string }{
		{"cron", "*/2 * * * * *", "Europe/Paris"},
		{"every", "@every 3s", ""},
	} {
		if _, err := c.AddSchedule(ctx, tt.name, tt.cron, tt.tz, brr.PingJob{}, brr.WithJobPool(tt.name)); err != nil {
			t.Fatal(err)
		}
		cons, err := js.CreateOrUpdateConsumer(ctx, brr.Subjects{}.JobsStream(), jetstream.ConsumerConfig{
			Durable: "t-" + tt.name, FilterSubject: brr.Subjects{}.Jobs(tt.name), AckPolicy: jetstream.AckExplicitPolicy})
		if err != nil {
			t.Fatal(err)
		}
		all, err := c.Schedules(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var s *brr.Schedule
		for _, x := range all {
			if x.Name == tt.name {
				s = x
			}
		}
		for range 2 {
			msg, err := cons.Next(jetstream.FetchMaxWait(30 * time.Second))
			if err != nil {
				t.Fatalf("%s: no tick: %v", tt.name, err)
			}
			_ = msg.Ack()
			md, _ := msg.Metadata()
			serverNext, err := time.Parse(time.RFC3339Nano, msg.Headers().Get("Nats-Schedule-Next"))
			if err != nil {
				t.Fatalf("%s: Nats-Schedule-Next %q: %v", tt.name, msg.Headers().Get("Nats-Schedule-Next"), err)
			}
			if got := nextRun(s, md.Timestamp); !got.Equal(serverNext) {
				t.Errorf("%s: tick at %v: nextRun = %v, the server says %v", tt.name, md.Timestamp, got, serverNext)
			}
		}
	}
}
