package health_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/health"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// On a cluster, each turn of the repository check reads the verify events through a new
// consumer, which a server that does not host it may not know of yet ("no responders"):
// the check asks again instead of failing the turn, which would show as a warning.
func TestRepositoryCheckOnACluster(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	ctx := context.Background()
	s := brr.Subjects{}
	_, js := c.Servers[0].JetStream(t)
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: s.EventsStream(), Subjects: []string{s.Events("")}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	for i := range 3000 { // the check reads 256 events at a time
		e := &brr.Event{V: brr.Version, ID: fmt.Sprintf("e%d", i), Type: brr.EventJob, Kind: brr.KindVerify, Status: brr.StatusSucceeded,
			Time: time.Now(), JobID: fmt.Sprintf("v%d", i), Repo: "local"}
		data, _ := json.Marshal(e)
		if _, err := js.Publish(ctx, s.Event(e), data); err != nil {
			t.Fatal(err)
		}
	}
	for _, srv := range c.Servers {
		_, js := srv.JetStream(t)
		check := &health.RepositoryCheck{JS: js, Repos: func() []string { return []string{"local"} }, DefaultRepo: "local", MaxAge: time.Hour}
		for range 3 {
			out, err := check.Run(ctx, health.Tick{Now: time.Now()})
			if err != nil {
				t.Fatalf("a turn of the check through %s: %v", srv.Name(), err)
			}
			if len(out.Results) != 1 || out.Results[0].Status != brr.HealthOK {
				t.Fatalf("through %s: %+v, want local ok", srv.Name(), out.Results)
			}
		}
	}
}
