package natsobj_test

import (
	"bytes"
	"context"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/repo/natsobj"
	"github.com/brr-dev/brr/internal/testkit"
)

// shortReader is a RewindReader that gives at most a random number of bytes per Read, so
// that the object store's chunks (one per Read) have many sizes.
type shortReader struct {
	*repo.ByteReader
	rng *rand.Rand
}

func (r *shortReader) Read(p []byte) (int, error) {
	if n := 1 + r.rng.IntN(300<<10); n < len(p) {
		p = p[:n]
	}
	return r.ByteReader.Read(p)
}

func openRanged(t testing.TB, js jetstream.JetStream) *natsobj.Backend {
	t.Helper()
	be, err := natsobj.Open(context.Background(), js, "repo", 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

// openMode is openRanged with batched direct gets (batch) or a direct get per chunk; it
// fails the test when batches are asked for and the server does not get them.
func openMode(t testing.TB, js jetstream.JetStream, batch bool) *natsobj.Backend {
	t.Helper()
	be := openRanged(t, js)
	setMode(t, be, batch)
	return be
}

func setMode(t testing.TB, be *natsobj.Backend, batch bool) {
	t.Helper()
	if batch && !be.Batching() {
		t.Fatal("the backend does not use batched direct gets on an embedded server of this version")
	}
	be.SetBatching(batch)
}

// modes runs test with batched direct gets and with a direct get per chunk.
func modes(t *testing.T, test func(t *testing.T, batch bool)) {
	t.Run("batch", func(t *testing.T) { test(t, true) })
	t.Run("single", func(t *testing.T) { test(t, false) })
}

// A range of a pack read by chunk is exactly the bytes a file:// backend gives for the
// same range: at and across chunk borders, for packs of chunks of one size, of many
// sizes, and of chunks interleaved in the stream with another pack's; through Load and
// through LoadInto; and a short range fetches one chunk, not the pack.
func TestRangedReadsMatchFile(t *testing.T) { modes(t, testRangedReadsMatchFile) }

func testRangedReadsMatchFile(t *testing.T, batch bool) {
	ctx := context.Background()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	be := openMode(t, js, batch)
	fileBe, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	cs := be.ChunkSize()
	rng := rand.New(rand.NewPCG(14, 20))

	type pack struct {
		h    repo.Handle
		size int
	}
	var packs []pack
	save := func(size int, rd func([]byte) repo.RewindReader) {
		h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
		data := backendtest.RandomData(t, size)
		if err := be.Save(ctx, h, rd(data)); err != nil {
			t.Error(err)
			return
		}
		if err := fileBe.Save(ctx, h, repo.NewByteReader(data)); err != nil {
			t.Error(err)
			return
		}
		packs = append(packs, pack{h, size})
	}
	plain := func(b []byte) repo.RewindReader { return repo.NewByteReader(b) }
	save(5*cs+777, plain) // full chunks and a short last one
	save(1000, plain)     // one chunk
	save(3*cs, plain)     // ends on a chunk border
	save(3*cs+12345, func(b []byte) repo.RewindReader {
		return &shortReader{repo.NewByteReader(b), rand.New(rand.NewPCG(1, 2))}
	})
	// Packs saved at once: their chunks interleave in the stream.
	var mu sync.Mutex
	var wg sync.WaitGroup
	for k := range 4 {
		wg.Go(func() {
			h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
			data := backendtest.RandomData(t, 4*cs+99)
			var rd repo.RewindReader = repo.NewByteReader(data)
			if k%2 == 0 {
				rd = &shortReader{repo.NewByteReader(data), rand.New(rand.NewPCG(3, 4))}
			}
			if err := be.Save(ctx, h, rd); err != nil {
				t.Error(err)
				return
			}
			if err := fileBe.Save(ctx, h, repo.NewByteReader(data)); err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			packs = append(packs, pack{h, len(data)})
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}

	check := func(p pack, off, n int) {
		t.Helper()
		if off < 0 || n <= 0 || off+n > p.size {
			return
		}
		want, err := fileBe.Load(ctx, p.h, int64(off), int64(n))
		if err != nil {
			t.Fatal(err)
		}
		got, err := be.Load(ctx, p.h, int64(off), int64(n))
		if err != nil {
			t.Fatalf("Load(%s, %d, %d) of %d bytes: %v", p.h.Name[:8], off, n, p.size, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Load(%s, %d, %d) of %d bytes: not the file backend's bytes", p.h.Name[:8], off, n, p.size)
		}
		buf := bytes.Repeat([]byte{0xa5}, n)
		if err := be.LoadInto(ctx, p.h, int64(off), buf); err != nil {
			t.Fatalf("LoadInto(%s, %d, %d): %v", p.h.Name[:8], off, n, err)
		}
		if !bytes.Equal(buf, want) {
			t.Fatalf("LoadInto(%s, %d, %d): not the file backend's bytes", p.h.Name[:8], off, n)
		}
	}
	for _, p := range packs {
		check(p, 0, p.size)
		for b := 0; b <= p.size; b += cs {
			for _, d := range []int{-2, -1, 0, 1} {
				for _, n := range []int{1, 2, 3, cs - 1, cs, cs + 1, 2*cs + 5} {
					check(p, b+d, n)
				}
			}
		}
		// Random ranges: fewer than at the borders, since the test runs once per mode.
		for range 30 {
			off := rng.IntN(p.size)
			check(p, off, 1+rng.IntN(min(p.size-off, 3*cs)))
		}
		for range 30 {
			off := rng.IntN(p.size)
			check(p, off, 1+rng.IntN(min(p.size-off, 4096)))
		}
		if _, err := be.Load(ctx, p.h, int64(p.size-10), 11); err == nil {
			t.Fatalf("Load past the end of %s succeeded", p.h.Name[:8])
		}
	}

	// A fresh backend reads a short range of the first pack with the chunk that holds it,
	// and the first and last chunk, from which it knows where the others are.
	fresh := openMode(t, js, batch)
	p := packs[0]
	check2, err := fresh.Load(ctx, p.h, int64(2*cs+100), 100)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := fileBe.Load(ctx, p.h, int64(2*cs+100), 100)
	if !bytes.Equal(check2, want) {
		t.Fatal("a fresh backend read the wrong bytes")
	}
	if got, want := fresh.Fetched(), int64(2*cs+777); got != want {
		t.Fatalf("a 100-byte range fetched %d bytes, want three chunks (%d)", got, want)
	}
	// Another range of chunks 0 and 1 fetches only chunk 1: chunk 0 is kept.
	if _, err := fresh.Load(ctx, p.h, int64(cs-50), 100); err != nil {
		t.Fatal(err)
	}
	if got, want := fresh.Fetched(), int64(3*cs+777); got != want {
		t.Fatalf("after a second range %d bytes fetched, want four chunks (%d)", got, want)
	}
}

// Reading a pack range after range (ranges that end inside chunks, as a restore reads
// them) fetches every chunk once: a chunk read in part is kept for the next range, and
// dropped once read to its end. However the ranges fall, the chunks kept stay within
// their bound.
func TestRangedReadsChunkCache(t *testing.T) { modes(t, testRangedReadsChunkCache) }

func testRangedReadsChunkCache(t *testing.T, batch bool) {
	ctx := context.Background()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	be := openRanged(t, js)
	cs := be.ChunkSize()
	h, data := savePack(t, be, 8*cs+4321)

	reader := openMode(t, js, batch)
	for off := 0; off < len(data); off += 300001 {
		n := min(300001, len(data)-off)
		checkRange(t, reader, h, data, off, n)
		if used := reader.ChunkCacheUsed(); used > natsobj.ChunkCacheSize {
			t.Fatalf("chunk cache holds %d bytes, bound %d", used, natsobj.ChunkCacheSize)
		}
	}
	if got := reader.Fetched(); got != int64(len(data)) {
		t.Fatalf("reading the pack in ranges fetched %d bytes, want each chunk once (%d)", got, len(data))
	}
	if used := reader.ChunkCacheUsed(); used != 0 {
		t.Fatalf("after the pack was read to its end the chunk cache holds %d bytes, want 0", used)
	}

	// Short ranges all over several packs, from four readers at once, keep nearly every
	// chunk they touch: the cache must drop some.
	var hs [][]byte
	var handles []repo.Handle
	for range 3 {
		h, d := savePack(t, be, 6*cs)
		handles, hs = append(handles, h), append(hs, d)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for range 60 {
				k := rng.IntN(len(hs))
				off := rng.IntN(len(hs[k]) - 10)
				got, err := reader.Load(ctx, handles[k], int64(off), 10)
				if err != nil || !bytes.Equal(got, hs[k][off:off+10]) {
					t.Errorf("Load(%d, %d, 10) = %v: wrong bytes", k, off, err)
					return
				}
				if used := reader.ChunkCacheUsed(); used > natsobj.ChunkCacheSize {
					t.Errorf("chunk cache holds %d bytes, bound %d", used, natsobj.ChunkCacheSize)
					return
				}
			}
		})
	}
	wg.Wait()
	if used := reader.ChunkCacheUsed(); used < natsobj.ChunkCacheSize-int64(cs) {
		t.Fatalf("chunk cache holds %d bytes after short reads all over 18 chunks: want it near its bound %d (the test reads too little)", used, natsobj.ChunkCacheSize)
	}
}

// A pack replaced (another worker saved it again: new chunks, the old purged) or removed
// since its chunk map was made is read as it is now.
func TestRangedReadsReplaced(t *testing.T) { modes(t, testRangedReadsReplaced) }

func testRangedReadsReplaced(t *testing.T, batch bool) {
	ctx := context.Background()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	// Every read asks the server whether the chunk map is current.
	be, err := natsobj.OpenWithOptions(ctx, js, "repo", natsobj.Options{CacheRecheck: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	setMode(t, be, batch)
	other := openRanged(t, js)
	cs := be.ChunkSize()
	h, data := savePack(t, be, 3*cs)
	checkRange(t, be, h, data, cs-10, 20)
	data2 := backendtest.RandomData(t, 3*cs)
	if err := other.Save(ctx, h, repo.NewByteReader(data2)); err != nil {
		t.Fatal(err)
	}
	checkRange(t, be, h, data2, cs-10, 20)
	checkRange(t, be, h, data2, 2*cs+5, 20)
	if err := other.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := be.Load(ctx, h, 10, 10); !repo.IsNotExist(err) {
		t.Fatalf("Load of a pack removed by another backend: %v, want ErrNotExist", err)
	}
}

// Prefetch of a pack, with ranged reads, makes its chunk map, which reads its first and
// last chunk, and no more: a range of the first chunk then fetches nothing.
func TestRangedPrefetch(t *testing.T) {
	ctx := context.Background()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	be := openRanged(t, js)
	cs := be.ChunkSize()
	h, data := savePack(t, be, 2*cs+10)
	reader := openRanged(t, js)
	reader.Prefetch(ctx, h)
	reader.Prefetch(ctx, h)
	reader.WaitPrefetches()
	if !reader.KnowsMap(h.Name) {
		t.Fatal("no chunk map after a prefetch")
	}
	if got, want := reader.Fetched(), int64(cs+10); got != want {
		t.Fatalf("two prefetches fetched %d bytes, want the first and the last chunk once (%d)", got, want)
	}
	checkRange(t, reader, h, data, 5, 10)
	if got, want := reader.Fetched(), int64(cs+10); got != want {
		t.Fatalf("a range of the first chunk after the prefetch fetched %d bytes more", got-want)
	}
}

// A restore from a nats:// repository (ranged reads, a pack cache directory as the worker
// has, the restorer's loader with its prefetches) gives back the tree backed up, and
// fills neither the pack cache nor the chunk cache past its bound.
func TestRestoreFromNATS(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 20, Sizes: []int{3 << 20, 1 << 20, 5000, 70 << 10}, Small: 300})
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	be, err := natsobj.OpenWithOptions(ctx, js, "restore", natsobj.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	r, sn := initAndBackUp(t, be, repo.Options{KDF: testkit.CheapKDF}, src)
	be2, err := natsobj.OpenWithOptions(ctx, js, "restore", natsobj.Options{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be2.Close() })
	r2, err := repo.Open(ctx, be2, []byte(testkit.Password), repo.Options{KDF: testkit.CheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r2.Close() })
	_ = r
	target := filepath.Join(t.TempDir(), "out")
	restore(t, r2, sn, target)
	testkit.SameTree(t, src, target)
	if used := be2.CacheUsed(); used != 0 {
		t.Fatalf("the pack cache holds %d bytes after a ranged restore, want 0", used)
	}
	if used := be2.ChunkCacheUsed(); used > natsobj.ChunkCacheSize {
		t.Fatalf("the chunk cache holds %d bytes, bound %d", used, natsobj.ChunkCacheSize)
	}
	if be2.Fetched() == 0 {
		t.Fatal("the restore fetched nothing from the server")
	}
}

// A backend with ranged reads does not use the pack cache: it empties what a run with
// whole-pack reads left in the directory, and fills nothing there.
func TestRangedEmptiesPackCache(t *testing.T) {
	ctx := context.Background()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	dir := t.TempDir()
	whole := open(t, js, dir, 0)
	h, data := savePack(t, whole, 3*whole.ChunkSize())
	checkRange(t, whole, h, data, 10, 100)
	if names, _ := cacheFiles(t, dir); len(names) != 1 {
		t.Fatalf("whole-pack reads left %v in the cache, want the pack", names)
	}
	whole.Close()

	ranged, err := natsobj.OpenWithOptions(ctx, js, "repo", natsobj.Options{CacheDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ranged.Close() })
	if names, _ := cacheFiles(t, dir); len(names) != 0 {
		t.Fatalf("after an open with ranged reads the cache has %v, want nothing", names)
	}
	checkRange(t, ranged, h, data, 2*ranged.ChunkSize()-5, 100)
	if names, _ := cacheFiles(t, dir); len(names) != 0 || ranged.CacheUsed() != 0 {
		t.Fatalf("a ranged read put %v in the pack cache, want nothing", names)
	}
}
