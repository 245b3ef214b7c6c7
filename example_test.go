package brr_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
)

// exampleServer starts an in-process NATS server with JetStream and the streams a
// brr-worker creates, so that the examples run on their own. An app connects to the
// server its workers use instead: nats.Connect("nats://127.0.0.1:4222").
func exampleServer() (*nats.Conn, func()) {
	dir, err := os.MkdirTemp("", "brr-example-")
	if err != nil {
		log.Fatal(err)
	}
	ns, err := server.NewServer(&server.Options{JetStream: true, StoreDir: dir, DontListen: true, NoLog: true, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		log.Fatal("nats-server not ready")
	}
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		log.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	s := brr.Subjects{}
	ctx := context.Background()
	for _, cfg := range []jetstream.StreamConfig{
		{Name: s.JobsStream(), Subjects: []string{s.AllJobs()}, Retention: jetstream.WorkQueuePolicy, Duplicates: 10 * time.Minute},
		{Name: s.EventsStream(), Subjects: []string{s.Events("")}},
	} {
		if _, err := js.CreateStream(ctx, cfg); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: s.ResultsBucket()}); err != nil {
		log.Fatal(err)
	}
	return nc, func() {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		_ = os.RemoveAll(dir)
	}
}

func ExampleClient_Publish() {
	nc, stop := exampleServer()
	defer stop()

	client, err := brr.NewClient(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	job := brr.BackupJob{Path: "/srv/app", Repo: "local", Tags: []string{"nightly"}}

	// The id makes the publish idempotent: an app that retries after a timeout cannot
	// start the backup twice.
	res, err := client.Publish(ctx, job, brr.WithID("nightly-2026-11-26"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("published", res.Kind, res.ID, "to", res.Stream)

	again, err := client.Publish(ctx, job, brr.WithID("nightly-2026-11-26"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("duplicate:", again.Duplicate)
	// Output:
	// published backup nightly-2026-11-26 to BRR_JOBS
	// duplicate: true
}

// A user of deploy/nats/accounts.conf may read only its own inboxes: connect with its
// prefix, or every request of the app is refused.
func ExampleInboxPrefix() {
	opts := []nats.Option{
		nats.UserInfo("publisher", os.Getenv("BRR_NATS_PASSWORD")),
		nats.CustomInboxPrefix(brr.InboxPrefix("publisher")),
	}
	_ = opts // nats.Connect("nats://nats.example.internal:4222", opts...)
	fmt.Println(brr.InboxPrefix("publisher"))
	// Output:
	// _INBOX_publisher
}

func ExampleClient_Served() {
	nc, stop := exampleServer() // with the streams, but no worker
	defer stop()

	client, err := brr.NewClient(nc)
	if err != nil {
		log.Fatal(err)
	}
	// Before waiting for a job: a job for a pool that no worker serves would wait in the
	// queue until one starts.
	worker, err := client.Served(context.Background(), "")
	switch {
	case errors.Is(err, brr.ErrNoWorker):
		fmt.Println("no worker serves pool", client.Pool())
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Println("served by", worker)
	}
	// Output:
	// no worker serves pool default
}

func ExampleClient_Subscribe() {
	nc, stop := exampleServer()
	defer stop()

	client, err := brr.NewClient(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	got := make(chan *brr.Event, 1)
	err = client.Subscribe(ctx, brr.Subjects{}.Events(brr.EventHealth), func(e *brr.Event) { got <- e })
	if err != nil {
		log.Fatal(err)
	}

	// A worker's heartbeat, published here by hand so that the example runs alone.
	hb := brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventHealth, Status: "worker",
		Time: time.Now().UTC(), Worker: "worker-1", Heartbeat: &brr.WorkerInfo{ID: "worker-1", InFlight: 2}}
	data, _ := json.Marshal(hb)
	if err := nc.Publish(brr.Subjects{}.Event(&hb), data); err != nil {
		log.Fatal(err)
	}

	e := <-got
	fmt.Println(e.Type, e.Status, e.Worker, e.Heartbeat.InFlight)
	// Output:
	// health worker worker-1 2
}

func ExampleClient_Watch() {
	nc, stop := exampleServer()
	defer stop()

	client, err := brr.NewClient(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()

	// Watch before publishing, under an id chosen here, so that no progress of the job
	// is missed however fast a worker takes it.
	id := brr.NewID()
	w, err := client.Watch(ctx, id, func(e *brr.Event) {
		if e.Status == brr.StatusProgress {
			fmt.Println("progress:", e.Progress.Files, "files")
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	defer w.Stop()
	if _, err := client.Publish(ctx, brr.BackupJob{Path: "/srv/app"}, brr.WithID(id)); err != nil {
		log.Fatal(err)
	}
	exampleWorker(nc, id) // a worker runs the job at once

	e, err := w.Result(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(e.Status, "snapshot", e.Result.Backup.Snapshot)
	// Output:
	// progress: 2 files
	// succeeded snapshot 3fa2c1d9
}

// exampleWorker plays a brr-worker by hand, so that the examples run alone: it reports
// progress of job id and then its success.
func exampleWorker(nc *nats.Conn, id string) {
	ctx := context.Background()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, brr.Subjects{}.ResultsBucket())
	if err != nil {
		log.Fatal(err)
	}
	for _, e := range []*brr.Event{
		{Status: brr.StatusProgress, Progress: &brr.Progress{Files: 2}},
		{Status: brr.StatusSucceeded, Result: &brr.Result{Backup: &brr.BackupResult{Snapshot: "3fa2c1d9"}}},
	} {
		e.V, e.ID, e.Type, e.Time, e.JobID, e.Kind = brr.Version, brr.NewID(), brr.EventJob, time.Now().UTC(), id, brr.KindBackup
		data, _ := json.Marshal(e)
		if _, err := js.Publish(ctx, brr.Subjects{}.Event(e), data); err != nil {
			log.Fatal(err)
		}
		if e.Status.Final() {
			if _, err := kv.Put(ctx, id, data); err != nil {
				log.Fatal(err)
			}
		}
	}
}
