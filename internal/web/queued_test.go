package web

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestQueuedJobs lists the jobs that wait in the queue of a pool no worker consumes
// ("idle"): in the order of the queue, with what they ask, bounded by limit; a message
// that is not a job is left out; a cancel asked for one shows; one a worker has taken
// (its lifecycle event is in the results) is no longer queued; quiet leaves out pings;
// and a job of the pool the worker consumes runs and is not listed.
func TestQueuedJobs(t *testing.T) {
	f := setup(t, func(c *Config) { c.Pools = []string{brr.DefaultPool, "idle"} })
	ctx := testkit.Context(t, time.Minute)
	for _, id := range []string{"q-1", "q-2", "q-3"} {
		if _, err := f.client.Publish(ctx, brr.BackupJob{Path: "/srv/" + id}, brr.WithJobPool("idle"), brr.WithID(id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.js.Publish(ctx, brr.Subjects{}.Job("idle", brr.KindBackup), []byte(`{"v":1,"id":"q-bad","kind":"backup"`)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Publish(ctx, brr.PingJob{}, brr.WithJobPool("idle"), brr.WithID("q-ping")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Publish(ctx, brr.PingJob{}, brr.WithID("runs")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.client.Wait(ctx, "runs", nil); err != nil {
		t.Fatalf("the ping of the default pool: %v", err)
	}

	ids := func(l QueuedList) []string {
		var out []string
		for _, j := range l.Jobs {
			out = append(out, j.ID)
		}
		return out
	}
	var l QueuedList
	decode(t, f.get("/api/v1/queue/jobs"), http.StatusOK, &l)
	if got := ids(l); len(got) != 4 || got[3] != "q-ping" {
		t.Fatalf("queued = %v, want q-1, q-2, q-3 and q-ping", got)
	}
	decode(t, f.get("/api/v1/queue/jobs?quiet=true"), http.StatusOK, &l)
	if got := ids(l); len(got) != 3 || got[0] != "q-1" || got[1] != "q-2" || got[2] != "q-3" || l.More {
		t.Fatalf("quiet: queued = %v (more %v), want q-1, q-2, q-3", got, l.More)
	}
	j := l.Jobs[0]
	var args brr.BackupJob
	if j.Pool != "idle" || j.Kind != brr.KindBackup || j.Created.IsZero() || j.Seq == 0 || j.Seq >= l.Jobs[1].Seq ||
		json.Unmarshal(j.Args, &args) != nil || args.Path != "/srv/q-1" || j.CancelRequested {
		t.Errorf("q-1 = %+v (args %s)", j, j.Args)
	}
	decode(t, f.get("/api/v1/queue/jobs?quiet=true&limit=2"), http.StatusOK, &l)
	if got := ids(l); len(got) != 2 || got[1] != "q-2" || !l.More {
		t.Errorf("limit=2: %v (more %v), want q-1, q-2 and more", got, l.More)
	}
	if r := f.get("/api/v1/queue/jobs?limit=0"); r.status != http.StatusBadRequest {
		t.Errorf("limit=0: %d %s, want 400", r.status, r.body)
	}

	// A cancel asked while it waits.
	if status, _, body := f.statusOnly("DELETE", "/api/v1/jobs/q-2", testKey, ""); status != http.StatusAccepted {
		t.Fatalf("DELETE q-2: %d %s", status, body)
	}
	// A worker took q-1: its first lifecycle event is in the results.
	kv, err := f.js.KeyValue(ctx, brr.Subjects{}.ResultsBucket())
	if err != nil {
		t.Fatal(err)
	}
	e := &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventJob, Status: brr.StatusAccepted, Time: time.Now().UTC(),
		Worker: "w-other", JobID: "q-1", Kind: brr.KindBackup, Pool: "idle"}
	data, _ := json.Marshal(e)
	if _, err := kv.Put(ctx, "q-1", data); err != nil {
		t.Fatal(err)
	}
	decode(t, f.get("/api/v1/queue/jobs?quiet=true"), http.StatusOK, &l)
	if got := ids(l); len(got) != 2 || got[0] != "q-2" || !l.Jobs[0].CancelRequested || got[1] != "q-3" || l.Jobs[1].CancelRequested {
		t.Errorf("after q-1 was taken and q-2 cancelled: %+v, want q-2 (cancel asked) and q-3", l.Jobs)
	}
}
