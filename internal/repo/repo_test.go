package repo_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

var (
	password = []byte(testkit.Password)
	// Small packs, so that tests of a few MiB span several.
	testOpts = repo.Options{PackSize: 256 << 10, KDF: testkit.CheapKDF}
)

// setup creates a repository in a fresh directory.
func setup(t testing.TB) (*repo.Repository, *file.Backend) {
	t.Helper()
	return testkit.InitRepo(t, t.TempDir(), testOpts)
}

func reopen(t testing.TB, be repo.Backend) *repo.Repository {
	t.Helper()
	r, err := repo.Open(context.Background(), be, password, testOpts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	rng := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	_, _ = rng.Read(b)
	return b
}

// compressible returns text-like data that zstd shrinks a lot.
func compressible(seed uint64, n int) []byte {
	rng := rand.New(rand.NewPCG(seed, 1))
	words := []string{"backup ", "replication ", "recovery ", "nats ", "jetstream ", "\n", "brr "}
	var b bytes.Buffer
	for b.Len() < n {
		b.WriteString(words[rng.IntN(len(words))])
	}
	return b.Bytes()[:n]
}

func saveBlob(t testing.TB, r *repo.Repository, data []byte) repo.ID {
	t.Helper()
	id := r.BlobID(data)
	if _, _, err := r.SaveBlob(context.Background(), repo.DataBlob, id, data); err != nil {
		t.Fatalf("SaveBlob: %v", err)
	}
	return id
}

func TestInitOpenKeys(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	if _, err := repo.Init(ctx, be, password, testOpts); !errors.Is(err, repo.ErrAlreadyExists) {
		t.Fatalf("second Init: %v, want ErrAlreadyExists", err)
	}
	if err := r.AddKey(ctx, []byte("second password")); err != nil {
		t.Fatalf("AddKey: %v", err)
	}
	r1 := reopen(t, be)
	r2, err := repo.Open(ctx, be, []byte("second password"), testOpts)
	if err != nil {
		t.Fatalf("Open with second key: %v", err)
	}
	defer r2.Close()
	if r1.ID() != r.ID() || r2.ID() != r.ID() {
		t.Fatalf("ids %s %s, want %s", r1.ID(), r2.ID(), r.ID())
	}
	if r2.BlobID([]byte("x")) != r.BlobID([]byte("x")) {
		t.Fatal("two keys give different id keys")
	}
	_, err = repo.Open(ctx, be, []byte("wrong"), testOpts)
	if !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("Open with wrong password: %v, want ErrWrongPassword", err)
	}
	if !strings.Contains(err.Error(), "none of the repository's 2 keys") {
		t.Errorf("error %q does not say how many keys were tried", err)
	}

	empty, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := repo.Open(ctx, empty, password, testOpts); !errors.Is(err, repo.ErrNoRepository) || !strings.Contains(err.Error(), "create one first") {
		t.Fatalf("Open empty: %v, want ErrNoRepository", err)
	}
}

func TestBlobRoundTrip(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	blobs := [][]byte{
		[]byte("tiny"),
		{},
		compressible(1, 300<<10),
		randomBytes(2, 1<<20),
		randomBytes(3, 5000),
	}
	ids := make([]repo.ID, len(blobs))
	for i, b := range blobs {
		id := r.BlobID(b)
		added, stored, err := r.SaveBlob(ctx, repo.DataBlob, id, b)
		if err != nil || !added || stored <= 0 {
			t.Fatalf("SaveBlob %d: added=%v stored=%d err=%v", i, added, stored, err)
		}
		if !r.HasBlob(repo.DataBlob, id) {
			t.Fatalf("HasBlob %d false after SaveBlob", i)
		}
		if added, _, _ := r.SaveBlob(ctx, repo.DataBlob, id, b); added {
			t.Fatalf("SaveBlob %d twice added it twice", i)
		}
		if i == 2 && stored > len(b)/2 {
			t.Errorf("compressible blob stored in %d bytes of %d", stored, len(b))
		}
		if i == 3 && stored > len(b)+repo.Overhead+1 {
			t.Errorf("random blob stored in %d bytes of %d", stored, len(b))
		}
		ids[i] = id
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
	r2 := reopen(t, be)
	var buf []byte
	for i, id := range ids {
		if !r2.HasBlob(repo.DataBlob, id) {
			t.Fatalf("blob %d not in index after reopen", i)
		}
		if r2.HasBlob(repo.TreeBlob, id) {
			t.Fatalf("blob %d known as a tree", i)
		}
		got, err := r2.LoadBlob(ctx, repo.DataBlob, id, buf)
		if err != nil {
			t.Fatalf("LoadBlob %d: %v", i, err)
		}
		if !bytes.Equal(got, blobs[i]) {
			t.Fatalf("blob %d: got %d bytes, want %d", i, len(got), len(blobs[i]))
		}
		buf = got
	}
	if s := r2.Stats(); s.Blobs != len(blobs) || s.Packs == 0 {
		t.Errorf("Stats = %+v", s)
	}
	if s := r.Stats(); s.BlobsAdded != int64(len(blobs)) {
		t.Errorf("BlobsAdded = %d, want %d", s.BlobsAdded, len(blobs))
	}
}

// packFiles returns the paths of the pack files in a file repository.
func packFiles(t *testing.T, be *file.Backend) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(be.Dir(), "data", "*", "*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestTamperedBlob(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	data := randomBytes(7, 10000)
	id := saveBlob(t, r, data)
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	packs := packFiles(t, be)
	if len(packs) != 1 {
		t.Fatalf("%d packs, want 1", len(packs))
	}
	pb, _ := r.LookupBlob(repo.DataBlob, id)
	testkit.FlipByte(t, packs[0], int64(pb.Offset)+100)
	_, err := r.LoadBlob(ctx, repo.DataBlob, id, nil)
	if !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("LoadBlob of tampered blob: %v, want ErrDamaged", err)
	}
	if !strings.Contains(err.Error(), id.String()) || !strings.Contains(err.Error(), pb.Pack.String()) {
		t.Errorf("error %q does not name blob and pack", err)
	}
}

func TestConcurrentSaveAndFlush(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	const workers, perWorker = 8, 40
	// Workers save overlapping blobs: blob i is saved by two workers.
	blob := func(i int) []byte {
		if i%2 == 0 {
			return compressible(uint64(i), 20000+i)
		}
		return randomBytes(uint64(i), 30000+i)
	}
	var wg sync.WaitGroup
	var added sync.Map
	errs := make(chan error, workers)
	for w := range workers {
		wg.Go(func() {
			for j := range perWorker {
				i := (w/2)*perWorker + j
				b := blob(i)
				a, _, err := r.SaveBlob(ctx, repo.DataBlob, r.BlobID(b), b)
				if err != nil {
					errs <- err
					return
				}
				if a {
					if _, dup := added.LoadOrStore(i, true); dup {
						errs <- errors.New("blob added twice")
						return
					}
				}
				if j == perWorker/2 && w < 2 {
					if err := r.Flush(ctx); err != nil {
						errs <- err
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// Two concurrent Flushes.
	var fwg sync.WaitGroup
	ferr := make([]error, 2)
	for i := range 2 {
		fwg.Go(func() { ferr[i] = r.Flush(ctx) })
	}
	fwg.Wait()
	if ferr[0] != nil || ferr[1] != nil {
		t.Fatalf("Flush: %v, %v", ferr[0], ferr[1])
	}
	r2 := reopen(t, be)
	n := (workers / 2) * perWorker
	for i := range n {
		b := blob(i)
		got, err := r2.LoadBlob(ctx, repo.DataBlob, r2.BlobID(b), nil)
		if err != nil {
			t.Fatalf("blob %d: %v", i, err)
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("blob %d differs", i)
		}
	}
	if got := r2.Stats().Blobs; got != n {
		t.Fatalf("index has %d blobs, want %d", got, n)
	}
}

func TestReloadIndex(t *testing.T) {
	ctx := context.Background()
	r1, be := setup(t)
	r2 := reopen(t, be)
	id := saveBlob(t, r2, []byte("written by the second writer"))
	if err := r2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if r1.HasBlob(repo.DataBlob, id) {
		t.Fatal("first writer knows the blob before ReloadIndex")
	}
	if err := r1.ReloadIndex(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := r1.LoadBlob(ctx, repo.DataBlob, id, nil)
	if err != nil || string(got) != "written by the second writer" {
		t.Fatalf("LoadBlob after ReloadIndex: %q, %v", got, err)
	}
}

func TestUnflushedPacksAreUnreferenced(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	// Blobs larger than the pack size make the writer save packs without a Flush.
	var ids []repo.ID
	for i := range 3 {
		ids = append(ids, saveBlob(t, r, randomBytes(uint64(100+i), 300<<10)))
	}
	r.Close() // a crash: no Flush, so no index
	if len(packFiles(t, be)) == 0 {
		t.Fatal("no pack was saved before Close")
	}
	r2 := reopen(t, be)
	for _, id := range ids {
		if r2.HasBlob(repo.DataBlob, id) {
			t.Fatal("a blob of an unindexed pack is known after Open")
		}
	}
	rep, err := r2.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Fatalf("damage: %+v", rep.Damage)
	}
	if len(rep.Unreferenced) == 0 || len(rep.Unreferenced) != len(packFiles(t, be)) {
		t.Fatalf("Unreferenced = %v, packs on disk %d", rep.Unreferenced, len(packFiles(t, be)))
	}
}

func TestChunkerInRepository(t *testing.T) {
	r, _ := setup(t)
	data := randomBytes(9, 12<<20)
	var got [][]byte
	c := r.NewChunker(bytes.NewReader(data))
	buf := make([]byte, repo.MaxChunkSize)
	for {
		ch, err := c.Next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, bytes.Clone(ch))
	}
	if !bytes.Equal(bytes.Join(got, nil), data) {
		t.Fatal("chunks do not add up to the input")
	}
	if len(got) < 3 {
		t.Fatalf("%d chunks from 12 MiB", len(got))
	}
}

func BenchmarkSaveBlob(b *testing.B) {
	for _, kind := range []string{"random", "text"} {
		b.Run(kind, func(b *testing.B) {
			ctx := context.Background()
			opts := testOpts
			opts.PackSize = 0
			r, _ := testkit.InitRepo(b, b.TempDir(), opts)
			var data []byte
			if kind == "random" {
				data = randomBytes(1, repo.AvgChunkSize)
			} else {
				data = compressible(1, repo.AvgChunkSize)
			}
			b.SetBytes(int64(len(data)))
			b.ResetTimer()
			var n uint64
			var mu sync.Mutex
			b.RunParallel(func(pb *testing.PB) {
				buf := bytes.Clone(data)
				for pb.Next() {
					mu.Lock()
					n++
					buf[0], buf[1], buf[2], buf[3] = byte(n), byte(n>>8), byte(n>>16), byte(n>>24)
					mu.Unlock()
					if _, _, err := r.SaveBlob(ctx, repo.DataBlob, r.BlobID(buf), buf); err != nil {
						b.Error(err)
						return
					}
				}
			})
			if err := r.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// TestLargeFlushWritesSeveralIndexFiles: a Flush of more blobs than one index file names
// writes several index files, so none holds the whole set in memory, and a reopened
// repository (and Check) finds every blob through them.
func TestLargeFlushWritesSeveralIndexFiles(t *testing.T) {
	ctx := context.Background()
	repo.SetMaxIndexEntries(t, 300)
	r, be := setup(t)
	const n = 1000 // 1 KiB each: about 4 packs of 256 KiB, some 250 blobs to a pack
	ids := make([]repo.ID, n)
	for i := range ids {
		b := randomBytes(uint64(i), 1024)
		binary.LittleEndian.PutUint64(b, uint64(i))
		ids[i] = saveBlob(t, r, b)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	var files int
	if err := be.List(ctx, repo.IndexFile, func(repo.FileInfo) error { files++; return nil }); err != nil {
		t.Fatal(err)
	}
	if files < 4 {
		t.Fatalf("%d blobs in about 4 packs were indexed in %d index files, want one a pack (at most 300 blobs a file)", n, files)
	}
	r2 := reopen(t, be)
	if got := r2.Stats().Blobs; got != n {
		t.Fatalf("reopened repository knows %d blobs, want %d", got, n)
	}
	for _, i := range []int{0, 299, 300, n - 1} {
		got, err := r2.LoadBlob(ctx, repo.DataBlob, ids[i], nil)
		if err != nil || binary.LittleEndian.Uint64(got) != uint64(i) {
			t.Fatalf("blob %d: %x, %v", i, got, err)
		}
	}
	rep, err := r2.Check(ctx, repo.CheckOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("check: %+v, %v", rep, err)
	}
}

// A blob under the compression threshold (512 bytes) is stored as it is, however well it
// would compress, and one at the threshold is compressed; both read back the same after a
// reopen, from every size class of blob buffer, and a check that reads every blob finds
// nothing wrong. Readers take either form, so the threshold is the writer's choice.
func TestTinyBlobsStoredRaw(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	blobs := [][]byte{
		bytes.Repeat([]byte("a"), 511),
		bytes.Repeat([]byte("a"), 512),
		compressible(4, 3000),
		compressible(5, 200<<10),
		compressible(6, 1<<20),
		compressible(7, 3<<20),
	}
	ids := make([]repo.ID, len(blobs))
	for i, b := range blobs {
		ids[i] = r.BlobID(b)
		_, stored, err := r.SaveBlob(ctx, repo.DataBlob, ids[i], b)
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case i == 0 && stored != len(b)+repo.Overhead+1:
			t.Errorf("blob of %d bytes stored in %d, want %d: as it is", len(b), stored, len(b)+repo.Overhead+1)
		case i > 0 && stored >= len(b)/2:
			t.Errorf("compressible blob of %d bytes stored in %d", len(b), stored)
		}
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	r2 := reopen(t, be)
	for i, id := range ids {
		got, err := r2.LoadBlob(ctx, repo.DataBlob, id, nil)
		if err != nil || !bytes.Equal(got, blobs[i]) {
			t.Fatalf("blob %d: %d bytes, %v; want the %d bytes saved", i, len(got), err, len(blobs[i]))
		}
	}
	rep, err := r2.Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil || len(rep.Damage) != 0 || rep.Blobs != len(blobs) {
		t.Fatalf("check: %+v, %v; want %d blobs, no damage", rep, err, len(blobs))
	}
}
