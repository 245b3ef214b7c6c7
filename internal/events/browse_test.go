package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

// browseFixture is the query service of a worker with the real engine over one file
// repository, holding one snapshot made by hand: dirs directories of files files each,
// and /big, a file of three random blobs.
type browseFixture struct {
	nc     *nats.Conn
	client *brr.Client
	snap   string
	big    []byte
}

func startBrowse(tb testing.TB, dirs, files int) *browseFixture {
	tb.Helper()
	ctx := context.Background()
	r, _ := testkit.InitRepo(tb, tb.TempDir(), testkit.RepoOptions())
	rng := rand.New(rand.NewPCG(1, 2))
	var big []byte
	var content []repo.ID
	for range 3 {
		b := make([]byte, 300<<10)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		id := r.BlobID(b)
		if _, _, err := r.SaveBlob(ctx, repo.DataBlob, id, b); err != nil {
			tb.Fatal(err)
		}
		content = append(content, id)
		big = append(big, b...)
	}
	mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	root := &repo.Tree{Nodes: []*repo.Node{{Name: "big", Type: repo.NodeFile, Mode: 0o644, ModTime: mtime, Size: int64(len(big)), Content: content}}}
	for d := range dirs {
		t := &repo.Tree{}
		for f := range files {
			t.Nodes = append(t.Nodes, &repo.Node{Name: fmt.Sprintf("f%04d", f), Type: repo.NodeFile, Mode: 0o644, ModTime: mtime})
		}
		id, err := r.SaveTree(ctx, t)
		if err != nil {
			tb.Fatal(err)
		}
		root.Nodes = append(root.Nodes, &repo.Node{Name: fmt.Sprintf("d%04d", d), Type: repo.NodeDir, Mode: 0o755, ModTime: mtime, Subtree: id})
	}
	rootID, err := r.SaveTree(ctx, root)
	if err != nil {
		tb.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		tb.Fatal(err)
	}
	sn := &repo.Snapshot{ID: r.SnapshotIDFor("browse"), Time: mtime, Source: "/synthetic", Tree: rootID}
	if err := r.SaveSnapshot(ctx, sn); err != nil {
		tb.Fatal(err)
	}

	ns := natstest.Start(tb)
	nc := ns.Connect(tb)
	engine := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r}, DefaultRepo: "local", Host: "testhost", Worker: "w1"}
	cfg := events.Config{Worker: "w1", Host: "testhost"}
	testkit.Go(tb, "api", func(ctx context.Context) error { return events.ServeAPI(ctx, nc, cfg, engine, zerolog.Nop()) })
	c, err := brr.NewClient(nc)
	if err != nil {
		tb.Fatal(err)
	}
	testkit.Eventually(tb, 10*time.Second, "the query service answers", func() bool {
		_, err := c.Served(ctx, "")
		return err == nil
	})
	return &browseFixture{nc: nc, client: c, snap: sn.ID.String(), big: big}
}

// open opens a dump of /big by hand and returns the stream's subject.
func (f *browseFixture) open(t *testing.T) string {
	t.Helper()
	req, _ := json.Marshal(brr.DumpRequest{V: brr.Version, Snapshot: f.snap[:6], Path: "/big"})
	msg, err := f.nc.Request(brr.Subjects{}.API("default", "dump"), req, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var opened brr.StreamOpened
	if err := json.Unmarshal(msg.Data, &opened); err != nil || opened.Subject == "" {
		t.Fatalf("open a dump: %s (%v)", msg.Data, err)
	}
	return opened.Subject
}

// chunk asks for chunk seq (or stops the stream) by hand.
func (f *browseFixture) chunk(subject string, seq int64, stop bool) (*nats.Msg, error) {
	req, _ := json.Marshal(brr.StreamNext{V: brr.Version, Seq: seq, Stop: stop})
	return f.nc.Request(subject, req, 5*time.Second)
}

// gone waits until nobody serves subject any more.
func (f *browseFixture) gone(t *testing.T, subject string) {
	t.Helper()
	testkit.Eventually(t, 10*time.Second, "the stream is no longer served", func() bool {
		_, err := f.chunk(subject, 99, false)
		return errors.Is(err, nats.ErrNoResponders)
	})
}

// TestStreamProtocol reads a file in chunks through the client, then breaks the
// protocol by hand: a chunk out of order ends the stream with an error, a stop ends it,
// and a worker holds at most its quota of streams at once.
func TestStreamProtocol(t *testing.T) {
	f := startBrowse(t, 3, 5)
	ctx := testkit.Context(t, time.Minute)

	var got bytes.Buffer
	info, err := f.client.Dump(ctx, brr.DumpRequest{Snapshot: f.snap[:6], Path: "big"}, func(brr.DumpInfo) (io.Writer, error) { return &got, nil })
	if err != nil || !bytes.Equal(got.Bytes(), f.big) || info.Format != "file" || info.Size != int64(len(f.big)) {
		t.Fatalf("dump: %v, %d bytes (want %d), info %+v", err, got.Len(), len(f.big), info)
	}

	// By hand: every chunk at most StreamChunk bytes, the last with the size and hash.
	subject := f.open(t)
	var n int64
	for seq := int64(1); ; seq++ {
		msg, err := f.chunk(subject, seq, false)
		if err != nil {
			t.Fatal(err)
		}
		if e := msg.Header.Get(brr.HeaderError); e != "" {
			t.Fatal(e)
		}
		if len(msg.Data) > brr.StreamChunk {
			t.Fatalf("chunk %d has %d bytes, over %d", seq, len(msg.Data), brr.StreamChunk)
		}
		n += int64(len(msg.Data))
		if msg.Header.Get(brr.HeaderEOF) != "" {
			if msg.Header.Get(brr.HeaderSize) != fmt.Sprint(len(f.big)) || n != int64(len(f.big)) || seq < 4 {
				t.Fatalf("last chunk %d: size header %s, %d bytes came, want %d", seq, msg.Header.Get(brr.HeaderSize), n, len(f.big))
			}
			break
		}
	}
	f.gone(t, subject)

	subject = f.open(t)
	msg, err := f.chunk(subject, 2, false)
	if err != nil || !strings.Contains(msg.Header.Get(brr.HeaderError), "chunk 2 asked for, chunk 1 is next") {
		t.Fatalf("chunk out of order: %v %v", msg, err)
	}
	f.gone(t, subject)

	subject = f.open(t)
	if _, err := f.chunk(subject, 1, false); err != nil {
		t.Fatal(err)
	}
	if err := f.nc.Publish(subject, []byte(`{"v":1,"seq":2,"stop":true}`)); err != nil {
		t.Fatal(err)
	}
	f.gone(t, subject)

	// The quota: 16 streams open, the 17th is refused, and once one ends there is room.
	var open []string
	for range 16 {
		open = append(open, f.open(t))
	}
	req, _ := json.Marshal(brr.ListRequest{V: brr.Version, Snapshot: f.snap})
	msg, err = f.nc.Request(brr.Subjects{}.API("default", "ls"), req, 10*time.Second)
	if err != nil || !strings.Contains(string(msg.Data), "worker is busy") {
		t.Fatalf("a 17th stream: %s, %v; want a refusal", msg.Data, err)
	}
	if _, err := f.chunk(open[0], 1, true); err != nil && !errors.Is(err, nats.ErrTimeout) {
		t.Fatal(err)
	}
	testkit.Eventually(t, 10*time.Second, "a stream can be opened again", func() bool {
		_, err := f.client.List(ctx, brr.ListRequest{Snapshot: f.snap}, func(brr.TreeEntry) error { return nil })
		return err == nil
	})
}

// BenchmarkBrowseOverNATS lists one directory of 1000 files of a synthetic snapshot of
// a million files through the client, the query service and the engine: what `brr ls`
// costs besides starting the process. Run it with `make bench-browse`.
func BenchmarkBrowseOverNATS(b *testing.B) {
	const dirs, files = 1000, 1000
	f := startBrowse(b, dirs, files)
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		n := 0
		_, err := f.client.List(ctx, brr.ListRequest{Snapshot: f.snap[:8], Path: fmt.Sprintf("/d%04d", (i*37)%dirs)}, func(brr.TreeEntry) error {
			n++
			return nil
		})
		if err != nil || n != files {
			b.Fatalf("list: %d entries, %v", n, err)
		}
	}
}
