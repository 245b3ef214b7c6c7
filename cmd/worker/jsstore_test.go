package main

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// TestStoreGuardRestartsJetStream: an embedded server whose JetStream went away (as
// nats-server does when a write runs out of space) is a problem the guard reports, and
// clears by starting JetStream again on the same store: the stream and its messages are
// back, and the same connection publishes again. A full disk itself needs a small file
// system, mounted by root: internal/faults TestJetStreamStoreFull.
func TestStoreGuardRestartsJetStream(t *testing.T) {
	dataDir := t.TempDir()
	ns, err := startEmbedded(dataDir, "127.0.0.1:0", "guard", zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = shutdownEmbedded(ns)() })
	nc, err := nats.Connect("", nats.InProcessServer(ns))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(ctx, "s.1", []byte("before")); err != nil {
		t.Fatal(err)
	}

	store := filepath.Join(dataDir, "jetstream")
	g := newStoreGuard(ns, store, zerolog.Nop())
	var changes []string
	g.changed = func(problem string, _, _ uint64) { changes = append(changes, problem) }
	g.check(time.Now())
	if p := g.Problem(); p != "" {
		t.Fatalf("problem of a healthy store: %s", p)
	}

	if err := ns.ShutdownJetStream(); err != nil {
		t.Fatal(err)
	}
	g.check(time.Now()) // finds the problem and starts JetStream again
	if len(changes) != 1 || !strings.Contains(changes[0], store) || !strings.Contains(changes[0], "JetStream is disabled") {
		t.Fatalf("changes = %q; want one problem naming the store and what happened", changes)
	}
	if !ns.JetStreamEnabled() {
		t.Fatal("the guard did not start JetStream again")
	}
	g.check(time.Now())
	if p := g.Problem(); p != "" || len(changes) != 2 || changes[1] != "" {
		t.Fatalf("after the restart: problem %q, changes %q; want it cleared", p, changes)
	}
	ack, err := js.Publish(ctx, "s.2", []byte("after"))
	if err != nil {
		t.Fatalf("publish after the restart: %v", err)
	}
	if ack.Sequence != 2 {
		t.Errorf("sequence after the restart = %d, want 2: the stream came back from the store", ack.Sequence)
	}
}

// TestStoreProblem: what a full store says names the store, the free space and the fix.
func TestStoreProblem(t *testing.T) {
	got := storeProblem("/var/lib/brr/jetstream", "write error: no space left on device", true, 1<<20, 1<<30)
	for _, want := range []string{"/var/lib/brr/jetstream is full", "no space left on device", "1.0 MiB free of 1.0 GiB", "free space on the file system of /var/lib/brr/jetstream", "without a restart"} {
		if !strings.Contains(got, want) {
			t.Errorf("storeProblem does not say %q: %s", want, got)
		}
	}
	got = storeProblem("/d", "write /d/x: input/output error", false, 0, 0)
	if !strings.Contains(got, "/d cannot be written (write /d/x: input/output error)") {
		t.Errorf("storeProblem of another write error = %s", got)
	}
}
