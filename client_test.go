package brr_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
)

// bundle is what a client test works with: a server with the streams a worker would have
// created, a client, and a second connection playing the worker.
type bundle struct {
	srv     *natstest.Server
	client  *brr.Client
	js      jetstream.JetStream // the worker's side
	nc      *nats.Conn          // the worker's side
	results jetstream.KeyValue
	subj    brr.Subjects
}

func setup(t *testing.T) *bundle {
	t.Helper()
	srv := natstest.Start(t)
	nc, js := srv.JetStream(t)
	createStreams(t, js)
	kv, err := js.KeyValue(context.Background(), brr.Subjects{}.ResultsBucket())
	if err != nil {
		t.Fatal(err)
	}
	client, err := brr.NewClient(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{srv: srv, client: client, js: js, nc: nc, results: kv}
}

// createStreams creates the streams and the results bucket as the workers do.
func createStreams(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	s := brr.Subjects{}
	for _, cfg := range []jetstream.StreamConfig{
		{Name: s.JobsStream(), Subjects: []string{s.AllJobs()}, Retention: jetstream.WorkQueuePolicy, Duplicates: 10 * time.Minute},
		{Name: s.EventsStream(), Subjects: []string{s.Events("")}},
		{Name: s.DLQStream(), Subjects: []string{s.AllDLQ()}},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			t.Fatalf("create stream %s: %v", cfg.Name, err)
		}
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.ResultsBucket()}); err != nil {
		t.Fatalf("create bucket: %v", err)
	}
}

// jobEvent is a job lifecycle event as a worker writes it.
func jobEvent(id string, kind brr.Kind, status brr.Status) *brr.Event {
	return &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventJob, Status: status, Time: time.Now().UTC(), Worker: "w1", JobID: id, Kind: kind, Pool: brr.DefaultPool}
}

// putResult writes e as the job's latest event, as a worker does.
func (b *bundle) putResult(t *testing.T, e *brr.Event) {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.results.Put(context.Background(), e.JobID, data); err != nil {
		t.Fatalf("put result: %v", err)
	}
}

// publishEvent publishes e on the event stream, as a worker does.
func (b *bundle) publishEvent(t *testing.T, e *brr.Event) {
	t.Helper()
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.js.Publish(context.Background(), b.subj.Event(e), data, jetstream.WithMsgID(e.ID)); err != nil {
		t.Fatalf("publish event: %v", err)
	}
}

func (b *bundle) streamMsgs(t *testing.T, name string) uint64 {
	t.Helper()
	st, err := b.js.Stream(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

func TestNoStreams(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	client, err := brr.NewClient(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t, 20*time.Second)
	_, err = client.Publish(ctx, brr.PingJob{})
	if !errors.Is(err, brr.ErrNoStream) || !strings.Contains(err.Error(), "stream BRR_JOBS not found: is a brr-worker running") {
		t.Fatalf("Publish with no stream: %v", err)
	}
	if _, err := client.Wait(ctx, "x", nil); !errors.Is(err, brr.ErrNoStream) {
		t.Fatalf("Wait with no bucket: %v", err)
	}
	if _, err := client.Jobs(ctx, 5); !errors.Is(err, brr.ErrNoStream) {
		t.Fatalf("Jobs with no bucket: %v", err)
	}
	if err := client.Subscribe(ctx, "", func(*brr.Event) {}); !errors.Is(err, brr.ErrNoStream) {
		t.Fatalf("Subscribe with no stream: %v", err)
	}
	if _, err := client.DeadLetters(ctx); !errors.Is(err, brr.ErrNoStream) || !strings.Contains(err.Error(), "BRR_DLQ") {
		t.Fatalf("DeadLetters with no stream: %v", err)
	}
}

func TestNoServer(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	client, err := brr.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
	ctx := testkit.Context(t, 20*time.Second)
	if _, err := client.Publish(ctx, brr.PingJob{}); !errors.Is(err, brr.ErrNotConnected) {
		t.Fatalf("Publish on a closed connection: %v", err)
	}
	if _, err := client.Job(ctx, "x"); !errors.Is(err, brr.ErrNotConnected) {
		t.Fatalf("Job on a closed connection: %v", err)
	}
	if _, err := client.Snapshots(ctx, "", ""); !errors.Is(err, brr.ErrNotConnected) {
		t.Fatalf("Snapshots on a closed connection: %v", err)
	}
}

func TestNewClientOptions(t *testing.T) {
	t.Parallel()
	srv := natstest.Start(t)
	nc := srv.Connect(t)
	if _, err := brr.NewClient(nc, brr.WithPool("a b")); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("NewClient with a bad pool: %v", err)
	}
	if _, err := brr.NewClient(nc, brr.WithPrefix("a..b")); err == nil {
		t.Fatal("NewClient with a bad prefix: no error")
	}
	c, err := brr.NewClient(nc, brr.WithPrefix("acme.brr"), brr.WithPool("host1"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Subjects().JobsStream(), "ACME_BRR_JOBS"; got != want {
		t.Fatalf("JobsStream = %q, want %q", got, want)
	}
	if _, err := c.Publish(testkit.Context(t, 20*time.Second), brr.PingJob{}); err == nil || !strings.Contains(err.Error(), "ACME_BRR_JOBS") {
		t.Fatalf("Publish with a prefix and no stream: %v", err)
	}
}

func TestValidateInboxPrefix(t *testing.T) {
	for _, tt := range []struct {
		prefix string
		ok     bool
	}{
		{brr.InboxPrefix("publisher"), true},
		{"_INBOX", true},
		{"_INBOX.app1", true},
		{"", false},
		{"_INBOX.", false},
		{".x", false},
		{"_INBOX.*", false},
		{"_INBOX.>", false},
		{"_INBOX_my user", false},
	} {
		err := brr.ValidateInboxPrefix(tt.prefix)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, brr.ErrInvalid)) {
			t.Errorf("ValidateInboxPrefix(%q) = %v, want ok %v", tt.prefix, err, tt.ok)
		}
	}
	if got, want := brr.InboxPrefix("publisher"), "_INBOX_publisher"; got != want {
		t.Errorf("InboxPrefix = %q, want %q", got, want)
	}
}
