package health_test

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/health"
)

// A worker's heartbeats carry its named sources, as Sources says them at each beat.
func TestHeartbeatCarriesSources(t *testing.T) {
	b := setup(t)
	ctx := context.Background()
	now := time.Now().UTC()
	sources := []brr.SourceInfo{
		{Name: "app", Kind: brr.SourcePath, Path: "/srv/app", Tags: []string{"app"}},
		{Name: "appdb", Kind: brr.SourceSQLite, Path: "/srv/app/app.db", Repo: "offsite", Watch: &brr.SourceWatch{DelayMS: 5000, MaxDelayMS: 60000}},
		{Name: "pg", Kind: brr.SourceCommand},
	}
	hb := health.NewHeartbeat(b.nc, b.js, health.Config{Worker: "w1", Host: "h1", Interval: interval, Now: func() time.Time { return now }},
		health.Worker{Pools: []string{"default"}, Started: now, Sources: func() []brr.SourceInfo { return sources }}, zerolog.Nop())
	none := health.NewHeartbeat(b.nc, b.js, health.Config{Worker: "w2", Host: "h2", Interval: interval, Now: func() time.Time { return now }},
		health.Worker{Pools: []string{"default"}, Started: now}, zerolog.Nop())
	for _, h := range []*health.Heartbeat{hb, none} {
		if err := h.Publish(ctx); err != nil {
			t.Fatalf("publish heartbeat: %v", err)
		}
	}
	workers, err := b.client.Workers(ctx)
	if err != nil || len(workers) != 2 {
		t.Fatalf("Workers = %+v, %v; want w1 and w2", workers, err)
	}
	if got := workers[0].Sources; !reflect.DeepEqual(got, sources) {
		t.Fatalf("sources in w1's heartbeat = %+v, want %+v", got, sources)
	}
	if got := workers[1].Sources; got != nil {
		t.Fatalf("sources in w2's heartbeat = %+v, want none", got)
	}
}
