package brr_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// Reading a stream that is replicated over a cluster, from a server that does not host
// the reading consumer, reads it all: the client reads in batches, each through a
// consumer created for it, and a batch asked before the server knows where that
// consumer lives gets "no responders"; the read asks again from where it was. (brr
// events failed partway through 20,000 events on a 3-node R3 cluster: bench-scale.)
func TestEventsFromAReplicatedStream(t *testing.T) {
	c := natstest.StartCluster(t, 3)
	nc := c.Servers[0].Connect(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s := brr.Subjects{}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: s.EventsStream(), Subjects: []string{s.Events("")}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	const n = 5000
	for i := range n {
		e := &brr.Event{V: 1, ID: fmt.Sprintf("e%d", i), Type: brr.EventJob, Kind: brr.KindPing, Status: brr.StatusSucceeded, JobID: fmt.Sprintf("j%d", i), Time: time.Now()}
		data, err := json.Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := js.PublishAsync(s.Event(e), data); err != nil {
			t.Fatal(err)
		}
		if i%1000 == 999 {
			<-js.PublishAsyncComplete()
		}
	}
	<-js.PublishAsyncComplete()
	for _, srv := range c.Servers {
		client, err := brr.NewClient(srv.Connect(t))
		if err != nil {
			t.Fatal(err)
		}
		for range 3 {
			got, err := client.Events(ctx, "", time.Time{}, 0)
			if err != nil {
				t.Fatalf("events read through %s: %v", srv.Name(), err)
			}
			if len(got) != n {
				t.Fatalf("events read through %s: %d, want %d", srv.Name(), len(got), n)
			}
		}
	}
}
