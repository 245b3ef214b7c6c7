package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
)

// beat publishes a heartbeat of worker id, sent at t, as a worker does; refused are the
// repos it refuses.
func beat(t *testing.T, js jetstream.JetStream, id string, at time.Time, refused ...brr.RefusedRepo) {
	t.Helper()
	e := &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventHealth, Status: brr.Status(brr.CheckWorker), Time: at, Worker: id,
		Heartbeat: &brr.WorkerInfo{ID: id, Host: "host-" + id, Version: "v1", Pools: []string{"default", "edge"}, Concurrency: 4,
			InFlight: 1, JobsDone: 12, JobsFailed: 2, Started: at.Add(-90 * time.Minute), UptimeSeconds: 5400,
			DiskFreeBytes: 3 << 30, DiskTotalBytes: 12 << 30, NATSRTTMS: 0.4, IntervalSeconds: 1, Time: at, RefusedRepos: refused}}
	data, _ := json.Marshal(e)
	if _, err := js.Publish(context.Background(), brr.Subjects{}.Event(e), data); err != nil {
		t.Fatal(err)
	}
}

func TestWorkers(t *testing.T) {
	t.Parallel()
	srv := natstest.StartListening(t)
	startWorker(t, srv)
	_, js := srv.JetStream(t)
	url := srv.ClientURL()

	r := brrCmd(t, url, "workers")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "no worker has sent a heartbeat lately") {
		t.Fatalf("workers with no heartbeat: %v", r)
	}

	now := time.Now().UTC()
	beat(t, js, "w-gone", now.Add(-20*time.Second)) // silent for 20 intervals of 1s
	beat(t, js, "w-live", now.Add(-3*time.Second))
	beat(t, js, "w-live", now) // the latest counts
	const why = "repo local refused: this worker's repo local is another repository; to fix: ..."
	beat(t, js, "w-split", now, brr.RefusedRepo{Repo: "local", Pool: "default", Message: why})

	r = brrCmd(t, url, "workers")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "WORKER") || !strings.HasSuffix(lines[0], "REFUSED") {
		t.Fatalf("workers: %v", r)
	}
	if split := strings.Fields(lines[3]); split[0] != "w-split" || split[len(split)-1] != "local" || !strings.HasSuffix(lines[2], " -") {
		t.Fatalf("REFUSED column:\n%s", r.stdout)
	}
	if want := "worker w-split refuses repo local: " + why + "\n"; r.stderr != want {
		t.Fatalf("workers stderr = %q, want %q", r.stderr, want)
	}
	gone, live := strings.Fields(lines[1]), strings.Fields(lines[2])
	if gone[0] != "w-gone" || gone[1] != "MISSING" || live[0] != "w-live" || live[1] != "live" {
		t.Fatalf("workers rows:\n%s", r.stdout)
	}
	for _, want := range []string{"host-w-live", "default,edge", "1h30m0s", "3.0 GiB (25%)", "0.4 ms"} {
		if !strings.Contains(lines[2], want) {
			t.Errorf("live row %q lacks %q", lines[2], want)
		}
	}

	r = brrCmd(t, url, "workers", "--json")
	objs := jsonLines(t, "workers --json", r.stdout)
	if r.code != 0 || len(objs) != 3 || objs[0]["id"] != "w-gone" || objs[0]["missing"] != true || objs[1]["missing"] != nil ||
		objs[1]["jobs_done"] != float64(12) || objs[1]["disk_total_bytes"] != float64(12<<30) || objs[1]["refused_repos"] != nil || r.stderr != "" {
		t.Fatalf("workers --json: %v", r)
	}
	if refused, _ := objs[2]["refused_repos"].([]any); len(refused) != 1 || refused[0].(map[string]any)["message"] != why {
		t.Fatalf("workers --json: refused_repos of w-split = %v", objs[2]["refused_repos"])
	}
}

func TestWorkersNoStream(t *testing.T) {
	t.Parallel()
	srv := natstest.StartListening(t)
	r := brrCmd(t, srv.ClientURL(), "workers")
	if r.code != 3 || !strings.Contains(r.stderr, "stream BRR_EVENTS not found: is a brr-worker running") {
		t.Fatalf("workers with no streams: %v", r)
	}
}
