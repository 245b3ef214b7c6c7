package brr_test

import (
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/nats-io/nats.go"

	"github.com/brr-dev/brr"
)

func TestClientCheckpoints(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)

	if _, err := b.client.Checkpoints(ctx, ""); !errors.Is(err, brr.ErrNoWorker) {
		t.Fatalf("Checkpoints with no worker: err = %v, want ErrNoWorker", err)
	}
	if _, err := b.client.Checkpoints(ctx, "bad name"); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("Checkpoints of a bad repo name: err = %v, want ErrInvalid", err)
	}

	t0 := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	var (
		mu    sync.Mutex
		asked []brr.CheckpointsRequest
	)
	sub, err := b.nc.Subscribe(b.subj.API(brr.DefaultPool, "checkpoints"), func(m *nats.Msg) {
		var req brr.CheckpointsRequest
		_ = json.Unmarshal(m.Data, &req)
		mu.Lock()
		asked = append(asked, req)
		mu.Unlock()
		reply := brr.CheckpointsReply{V: brr.Version}
		switch req.Repo {
		case "":
			reply.Points = []brr.RecoveryPoint{
				{Repo: "local", Label: "release-1", Snapshot: "abcd", Time: t0, SnapshotTime: t0.Add(-time.Hour)},
				{Repo: "offsite", Label: "audit", Snapshot: "ef01", Time: t0},
			}
			reply.Unread = map[string]string{"offsite": "bucket gone (points shown from this worker's index, as last seen)"}
		case "empty":
		default:
			reply.Error = `repo "` + req.Repo + `" is not configured (configured: local, offsite)`
		}
		data, _ := json.Marshal(reply)
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}

	reply, err := b.client.Checkpoints(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(reply.Points) != 2 || reply.Points[0].Label != "release-1" || !reply.Points[0].SnapshotTime.Equal(t0.Add(-time.Hour)) {
		t.Fatalf("Checkpoints = %+v", reply)
	}
	if !strings.Contains(reply.Unread["offsite"], "bucket gone") {
		t.Fatalf("Unread = %v, want offsite's reason", reply.Unread)
	}
	if reply, err := b.client.Checkpoints(ctx, "empty"); err != nil || reply.Points == nil || len(reply.Points) != 0 {
		t.Fatalf("Checkpoints of a repo without points = %+v, %v; want an empty list", reply, err)
	}
	_, err = b.client.Checkpoints(ctx, "nosuch")
	if err == nil || !strings.Contains(err.Error(), `repo "nosuch" is not configured`) {
		t.Fatalf("Checkpoints of an unknown repo: err = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(asked) != 3 || asked[0].V != brr.Version || asked[0].Repo != "" || asked[2].Repo != "nosuch" {
		t.Fatalf("requests = %+v", asked)
	}
}
