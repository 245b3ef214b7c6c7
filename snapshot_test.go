package brr_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/brr-dev/brr"
	"github.com/nats-io/nats.go"
)

func TestSnapshots(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)
	if _, err := b.client.Snapshots(ctx, "local", ""); !errors.Is(err, brr.ErrNoWorker) || !strings.Contains(err.Error(), `pool "default"`) {
		t.Fatalf("Snapshots with no worker: %v", err)
	}
	snap := brr.Snapshot{ID: "abcd", Repo: "local", Source: "/srv/app", Files: 2}
	sub, err := b.nc.Subscribe(b.subj.API("default", "snapshots"), func(m *nats.Msg) {
		var req brr.SnapshotsRequest
		reply := brr.SnapshotsReply{V: brr.Version}
		if err := json.Unmarshal(m.Data, &req); err != nil || req.V != brr.Version {
			reply.Error = "bad request"
		} else if req.Repo != "local" {
			reply.Repo = req.Repo
			reply.Error = `repo "` + req.Repo + `" is not configured (configured: local)`
		} else {
			reply.Repo = "local"
			if req.Source == "" || req.Source == snap.Source {
				reply.Snapshots = []brr.Snapshot{snap}
			}
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
	got, err := b.client.Snapshots(ctx, "local", "/srv/app")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].ID != "abcd" {
		t.Fatalf("Snapshots = %+v", got)
	}
	if got, err := b.client.Snapshots(ctx, "local", "/other"); err != nil || len(got) != 0 {
		t.Fatalf("Snapshots of another source = %+v, %v", got, err)
	}
	if _, err := b.client.Snapshots(ctx, "offsite", ""); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("Snapshots of an unknown repo: %v", err)
	}
	if _, err := b.client.Snapshots(ctx, "local", "relative"); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("Snapshots with a relative source: %v", err)
	}
}
