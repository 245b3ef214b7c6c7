package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
)

// beatSources publishes a heartbeat of worker id in pools, sent at, with its sources.
func beatSources(t *testing.T, js jetstream.JetStream, id string, pools []string, at time.Time, sources ...brr.SourceInfo) {
	t.Helper()
	e := &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventHealth, Status: brr.Status(brr.CheckWorker), Time: at, Worker: id,
		Heartbeat: &brr.WorkerInfo{ID: id, Host: "host-" + id, Pools: pools, IntervalSeconds: 1, Time: at, Sources: sources}}
	data, _ := json.Marshal(e)
	if _, err := js.Publish(context.Background(), brr.Subjects{}.Event(e), data); err != nil {
		t.Fatal(err)
	}
}

// `brr sources` lists the sources of the live workers of the pool, one row per source
// with the workers that have it, and its newest snapshot in its repo.
func TestSources(t *testing.T) {
	t.Parallel()
	srv := natstest.StartListening(t)
	nc, js := srv.JetStream(t)
	s := brr.Subjects{}
	if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: s.EventsStream(), Subjects: []string{s.Events("")}}); err != nil {
		t.Fatal(err)
	}
	url := srv.ClientURL()
	r := brrCmd(t, url, "sources")
	if r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "no live worker of pool default has a named source") {
		t.Fatalf("sources with no heartbeat: %v", r)
	}

	now := time.Now().UTC()
	snaps := map[string][]brr.Snapshot{
		"local": {
			{ID: "aaaaaaaaaaaaaaaa", Repo: "local", Source: "/srv/app", Host: "host-w1", Time: now.Add(-3 * time.Hour)},
			{ID: "bbbbbbbbbbbbbbbb", Repo: "local", Source: "/srv/app", Host: "host-w2", Time: now.Add(-time.Hour)},
			{ID: "cccccccccccccccc", Repo: "local", Source: "/srv/other", Host: "host-w1", Time: now},
		},
		"offsite": {{ID: "dddddddddddddddd", Repo: "offsite", Source: "source:appdb", Host: "host-w1", Time: now.Add(-2 * time.Minute)}},
	}
	sub, err := nc.Subscribe(s.API("default", "snapshots"), func(m *nats.Msg) {
		var req brr.SnapshotsRequest
		_ = json.Unmarshal(m.Data, &req)
		repo := req.Repo
		if repo == "" {
			repo = "local"
		}
		reply := brr.SnapshotsReply{V: brr.Version, Repo: repo, Snapshots: snaps[repo]}
		if repo == "broken" {
			reply.Error = "repository is locked"
		}
		data, _ := json.Marshal(reply)
		_ = m.Respond(data)
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })

	app := brr.SourceInfo{Name: "app", Kind: brr.SourcePath, Path: "/srv/app", Tags: []string{"app"}}
	appdb := brr.SourceInfo{Name: "appdb", Kind: brr.SourceSQLite, Path: "/srv/app/app.db", Repo: "offsite",
		Watch: &brr.SourceWatch{DelayMS: 5000, MaxDelayMS: 60000}}
	pg := brr.SourceInfo{Name: "pg", Kind: brr.SourceCommand}
	beatSources(t, js, "w2", []string{"default"}, now, app)
	beatSources(t, js, "w1", []string{"default", "edge"}, now, app, appdb, pg)
	beatSources(t, js, "w-gone", []string{"default"}, now.Add(-20*time.Second), brr.SourceInfo{Name: "gone", Kind: brr.SourcePath, Path: "/gone"})
	beatSources(t, js, "w-edge", []string{"edge"}, now, brr.SourceInfo{Name: "edgeonly", Kind: brr.SourcePath, Path: "/edge"})

	r = brrCmd(t, url, "sources")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 4 || r.stderr != "" {
		t.Fatalf("sources: %v\nwant a header and app, appdb and pg", r)
	}
	if got := strings.Fields(lines[0]); strings.Join(got, " ") != "NAME KIND PATH REPO WORKERS LAST SNAPSHOT AGE" {
		t.Fatalf("header %q", lines[0])
	}
	for i, want := range [][]string{
		{"app", "path", "/srv/app", "local", "w1,w2", "bbbbbbbbbbbb"},
		{"appdb", "sqlite", "/srv/app/app.db", "offsite", "w1", "dddddddddddd"},
		{"pg", "command", "-", "local", "w1", "never", "-"},
	} {
		if got := strings.Fields(lines[i+1]); len(got) < len(want) || strings.Join(got[:len(want)], " ") != strings.Join(want, " ") {
			t.Errorf("row %d = %q, want it to start with %q", i+1, lines[i+1], want)
		}
	}
	if !strings.HasSuffix(lines[1], "1h0m0s") || !strings.HasSuffix(lines[2], "2m0s") {
		t.Errorf("AGE column:\n%s", r.stdout)
	}

	r = brrCmd(t, url, "sources", "--json")
	objs := jsonLines(t, "sources --json", r.stdout)
	if r.code != 0 || len(objs) != 3 {
		t.Fatalf("sources --json: %v", r)
	}
	if o := objs[1]; o["name"] != "appdb" || o["kind"] != "sqlite" || o["source"] != "source:appdb" || o["repo"] != "offsite" ||
		o["latest"].(map[string]any)["id"] != "dddddddddddddddd" || o["watch"].(map[string]any)["delay_ms"] != float64(5000) {
		t.Fatalf("appdb in --json: %v", o)
	}
	if o := objs[2]; o["name"] != "pg" || o["source"] != "source:pg" || o["latest"] != nil || o["path"] != nil || o["command"] != nil {
		t.Fatalf("pg in --json: %v", o)
	}

	// Another pool's workers, and a repo that cannot be listed: the row says so, and the
	// command fails.
	beatSources(t, js, "w-edge", []string{"edge", "default"}, time.Now().UTC(), brr.SourceInfo{Name: "edgeonly", Kind: brr.SourcePath, Path: "/edge", Repo: "broken"})
	r = brrCmd(t, url, "sources")
	if r.code != 1 || !strings.Contains(r.stdout, "edgeonly") || !strings.Contains(r.stderr, `list snapshots of repo "broken": repository is locked`) {
		t.Fatalf("sources with a repo that cannot be listed: %v", r)
	}
	if row := strings.Fields(strings.Split(strings.TrimSpace(r.stdout), "\n")[3]); row[0] != "edgeonly" || row[5] != "?" {
		t.Fatalf("row of a source whose repo cannot be listed: %q", row)
	}
}
