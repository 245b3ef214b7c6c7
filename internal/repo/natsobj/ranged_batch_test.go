package natsobj_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/natsobj"
)

// countDirectGets counts the direct get requests sent for the stream of bucket "repo",
// seen by a plain subscription of another connection (which does not answer them).
func countDirectGets(t *testing.T, s *natstest.Server) *atomic.Int64 {
	t.Helper()
	nc, _ := s.JetStream(t)
	var n atomic.Int64
	sub, err := nc.Subscribe("$JS.API.DIRECT.GET.OBJ_repo", func(*nats.Msg) { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return &n
}

// A range over several chunks is one batched direct get (and a direct get per chunk
// without batches), and the bytes are the pack's.
func TestRangedBatchOneRequestPerRange(t *testing.T) {
	modes(t, func(t *testing.T, batch bool) {
		s := natstest.Start(t)
		_, js := s.JetStream(t)
		be := openRanged(t, js)
		cs := be.ChunkSize()
		h, data := savePack(t, be, 6*cs+10)
		reader := openMode(t, js, batch)
		checkRange(t, reader, h, data, 0, 1) // the chunk map: the first and last chunk
		gets := countDirectGets(t, s)
		before := reader.Fetched()
		checkRange(t, reader, h, data, cs+5, 4*cs-10) // chunks 1 to 4
		want := int64(1)
		if !batch {
			want = 4
		}
		if got := gets.Load(); got != want {
			t.Fatalf("a range over 4 chunks sent %d direct gets, want %d", got, want)
		}
		if got, want := reader.Fetched()-before, int64(4*cs); got != want {
			t.Fatalf("a range over 4 chunks fetched %d bytes, want %d", got, want)
		}
		// The rest of chunks 1 and 4 came from the chunk cache: no request.
		checkRange(t, reader, h, data, cs, 5)
		checkRange(t, reader, h, data, 5*cs-5, 5)
		if got := gets.Load(); got != want {
			t.Fatalf("ranges in chunks kept sent %d more direct gets", got-want)
		}
	})
}

// A pack replaced since its chunk map was made (the chunks the map names are purged) is
// read as it is now: the batch finds the old chunks gone, the map is made again.
func TestRangedReadsReplacedKnownMap(t *testing.T) {
	modes(t, func(t *testing.T, batch bool) {
		ctx := context.Background()
		s := natstest.Start(t)
		_, js := s.JetStream(t)
		reader := openMode(t, js, batch)
		other := openRanged(t, js)
		cs := reader.ChunkSize()
		h, data := savePack(t, other, 4*cs)
		checkRange(t, reader, h, data, cs, 2*cs) // whole chunks 1 and 2: none kept
		if !reader.KnowsMap(h.Name) {
			t.Fatal("no chunk map after a read")
		}
		data2 := backendtest.RandomData(t, 4*cs)
		if err := other.Save(ctx, h, repo.NewByteReader(data2)); err != nil {
			t.Fatal(err)
		}
		checkRange(t, reader, h, data2, cs, 2*cs)
		checkRange(t, reader, h, data2, 0, 4*cs)
	})
}

// A stream that does not allow direct gets (set by an operator, say) is read a chunk
// at a time through the stream's API, without batches.
func TestRangedNoDirectGets(t *testing.T) {
	ctx := context.Background()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	be := openRanged(t, js)
	cs := be.ChunkSize()
	h, data := savePack(t, be, 3*cs+7)
	st, err := js.Stream(ctx, "OBJ_repo")
	if err != nil {
		t.Fatal(err)
	}
	cfg := st.CachedInfo().Config
	cfg.AllowDirect = false
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	reader := openRanged(t, js)
	if reader.Batching() {
		t.Fatal("batched direct gets on a stream without direct gets")
	}
	checkRange(t, reader, h, data, 0, len(data))
	checkRange(t, reader, h, data, cs-3, cs+6)
}

func TestVersionAtLeast(t *testing.T) {
	for _, tc := range []struct {
		v    string
		want bool
	}{
		{"2.11.0", true}, {"2.15.2", true}, {"3.0.0", true}, {"2.12.0-RC.1", true},
		{"2.10.29", false}, {"2.9.0", false}, {"1.99.99", false}, {"2.11.0-beta", true},
		{"", false}, {"2.11", false}, {"v2.11.0", false}, {"2.x.0", false},
	} {
		if got := natsobj.VersionAtLeast(tc.v, natsobj.BatchMinVersion); got != tc.want {
			t.Errorf("VersionAtLeast(%q, 2.11.0) = %v, want %v", tc.v, got, tc.want)
		}
	}
}
