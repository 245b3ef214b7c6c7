package main

import (
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestKilledWorkerRepublishesNoDuplicates: the outbox removes what it published with the
// state database's next commit, or within 100 ms when none comes, not in a commit of its
// own. A worker is killed (SIGKILL) as the last of a burst of ping jobs ends, while
// published events still wait in its outbox for their removal (the test checks they do);
// restarted on its data dir, it publishes them again, and the streams drop the copies:
// every job has one succeeded event and one result, no message id is stored twice, and
// the outbox is empty once the worker stops.
func TestKilledWorkerRepublishesNoDuplicates(t *testing.T) {
	ns := natstest.StartListening(t)
	url := ns.ClientURL()
	w := bins.StartWorker(t, testkit.WorkerOptions{NATS: url})
	nc, c := testkit.Connect(t, url)
	ctx := testkit.Context(t, 5*time.Minute)
	var succeeded atomic.Int64
	if err := c.Subscribe(ctx, "brr.events.job.ping.succeeded", func(*brr.Event) { succeeded.Add(1) }); err != nil {
		t.Fatal(err)
	}

	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	msgIDs := func(stream string) map[string][]jetstream.RawStreamMsg {
		s, err := js.Stream(ctx, stream)
		if err != nil {
			t.Fatal(err)
		}
		info, err := s.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string][]jetstream.RawStreamMsg{}
		for seq := info.State.FirstSeq; seq > 0 && seq <= info.State.LastSeq; seq++ {
			m, err := s.GetMsg(ctx, seq)
			if err != nil {
				continue // deleted: a KV entry's older revision, say
			}
			id := m.Header.Get(jetstream.MsgIDHeader)
			seen[id] = append(seen[id], *m)
		}
		return seen
	}
	const burst = 200
	var ids []string
	hit := false
	for try := 1; try <= 5 && !hit; try++ {
		for range burst {
			res, err := c.Publish(ctx, brr.PingJob{})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, res.ID)
		}
		testkit.Eventually(t, 2*time.Minute, "the burst's succeeded events", func() bool { return succeeded.Load() >= int64(len(ids)) })
		w.Kill()
		db, err := state.Open(filepath.Join(w.DataDir, "state.db"), state.Options{})
		if err != nil {
			t.Fatal(err)
		}
		items, err := db.Outbox(0)
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		stored := msgIDs("BRR_EVENTS")
		n := 0 // items in the outbox whose event the stream already holds
		for _, it := range items {
			if len(stored[it.MsgID]) > 0 {
				n++
			}
		}
		t.Logf("try %d: killed with %d items in the outbox, %d of them events already stored", try, len(items), n)
		hit = n > 0
		w.Start()
	}
	if !hit {
		t.Fatal("no kill came while published items waited in the outbox for their removal")
	}
	// Every item is published again (or still) and then removed: the outbox is empty
	// once the worker stops.
	if code := w.Stop(time.Minute); code != 0 {
		t.Fatalf("brr-worker exited %d after SIGTERM", code)
	}
	db, err := state.Open(filepath.Join(w.DataDir, "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n, err := db.OutboxLen(); err != nil || n != 0 {
		t.Fatalf("outbox holds %d items after a clean stop (%v), want 0", n, err)
	}
	_ = db.Close()

	perJob := map[string]int{}
	for id, ms := range msgIDs("BRR_EVENTS") {
		if len(ms) > 1 {
			t.Errorf("event msg id %s stored %d times in BRR_EVENTS", id, len(ms))
		}
		if e, err := brr.DecodeEvent(ms[0].Data); err == nil && e.Type == brr.EventJob && e.Status == brr.StatusSucceeded {
			perJob[e.JobID]++
		}
	}
	for id, ms := range msgIDs("KV_BRR_RESULTS") {
		if len(ms) > 1 {
			t.Errorf("result msg id %s stored %d times in KV_BRR_RESULTS", id, len(ms))
		}
	}
	kv, err := js.KeyValue(ctx, "BRR_RESULTS")
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range ids {
		if perJob[id] != 1 {
			t.Errorf("job %s has %d succeeded events, want 1", id, perJob[id])
		}
		entry, err := kv.Get(ctx, id)
		if err != nil {
			t.Errorf("result of job %s: %v", id, err)
			continue
		}
		if e, err := brr.DecodeEvent(entry.Value()); err != nil || e.Status != brr.StatusSucceeded {
			t.Errorf("result of job %s = %s (%v), want succeeded", id, entry.Value(), err)
		}
	}
}
