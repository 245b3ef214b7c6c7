package natsobj_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/repo/natsobj"
	"github.com/brr-dev/brr/internal/testkit"
	"github.com/nats-io/nats.go/jetstream"
)

func TestConformanceCached(t *testing.T) {
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	n := 0
	backendtest.Run(t, func(t *testing.T) repo.Backend {
		n++
		be, err := natsobj.OpenWithOptions(context.Background(), js, fmt.Sprintf("repo-%d", n), natsobj.Options{CacheDir: t.TempDir(), WholePacks: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { be.Close() })
		return be
	})
}

// setup starts a server and opens a backend with a cache in dir of size bytes.
func setup(t testing.TB, dir string, size int64) (jetstream.JetStream, *natsobj.Backend) {
	t.Helper()
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	return js, open(t, js, dir, size)
}

func open(t testing.TB, js jetstream.JetStream, dir string, size int64) *natsobj.Backend {
	t.Helper()
	be, err := natsobj.OpenWithOptions(context.Background(), js, "repo", natsobj.Options{CacheDir: dir, CacheSize: size, WholePacks: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

func savePack(t testing.TB, be repo.Backend, size int) (repo.Handle, []byte) {
	t.Helper()
	h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
	data := backendtest.RandomData(t, size)
	if err := be.Save(context.Background(), h, repo.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	return h, data
}

// checkRange loads [off, off+n) of h and compares it with data; a Load may return before
// the pack is in the cache, and checkRange waits for that.
func checkRange(t testing.TB, be repo.Backend, h repo.Handle, data []byte, off, n int) {
	t.Helper()
	got, err := be.Load(context.Background(), h, int64(off), int64(n))
	if err != nil {
		t.Fatalf("Load(%s, %d, %d): %v", h.Name[:8], off, n, err)
	}
	if !bytes.Equal(got, data[off:off+n]) {
		t.Fatalf("Load(%s, %d, %d) returned the wrong bytes", h.Name[:8], off, n)
	}
	if be, ok := be.(*natsobj.Backend); ok {
		be.WaitFills()
	}
}

// cacheFiles returns the files in dir, which must all be 0600.
func cacheFiles(t *testing.T, dir string) (names []string, bytes int64) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		fi, err := de.Info()
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
			t.Errorf("%s: mode %v, want %v", de.Name(), got, want)
		}
		names = append(names, de.Name())
		bytes += fi.Size()
	}
	return names, bytes
}

func TestCacheFetchesPackOnce(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cache")
	_, be := setup(t, dir, 0)
	const size, blob = 16 << 20, 1 << 20
	h, data := savePack(t, be, size)

	// Blob by blob, back to front: without the cache this reads 136 MiB.
	for off := size - blob; off >= 0; off -= blob {
		checkRange(t, be, h, data, off, blob-100)
	}
	if got := be.Fetched(); got != size {
		t.Fatalf("%d range reads fetched %d bytes, want the pack's %d once", size/blob, got, size)
	}

	// Many at once, on a cold cache, share one download.
	be.PurgeCache()
	var wg sync.WaitGroup
	for off := 0; off < size; off += blob / 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := be.Load(context.Background(), h, int64(off), blob/4)
			if err != nil || !bytes.Equal(got, data[off:off+blob/4]) {
				t.Errorf("Load(%d, %d) = %d bytes, %v; not the pack's", off, blob/4, len(got), err)
			}
		}()
	}
	wg.Wait()
	be.WaitFills()
	if got := be.Fetched(); got != 2*size {
		t.Fatalf("64 concurrent range reads fetched %d bytes, want the pack's %d once", got-size, size)
	}

	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o700); got != want {
		t.Errorf("cache dir mode %v, want %v", got, want)
	}
	if names, _ := cacheFiles(t, dir); len(names) != 1 || !strings.HasPrefix(names[0], h.Name+".") {
		t.Errorf("cache dir holds %v, want the one pack", names)
	}
}

func TestCacheBypass(t *testing.T) {
	dir := t.TempDir()
	_, be := setup(t, dir, 1<<20)
	ctx := context.Background()
	// Whole loads, other types and packs larger than the cache go to the server.
	big, bigData := savePack(t, be, 2<<20)
	checkRange(t, be, big, bigData, 1<<20, 1000)
	small, smallData := savePack(t, be, 1000)
	if _, err := be.Load(ctx, small, 0, 0); err != nil {
		t.Fatal(err)
	}
	idx := repo.Handle{Type: repo.IndexFile, Name: backendtest.RandomID(t)}
	if err := be.Save(ctx, idx, repo.NewByteReader(smallData)); err != nil {
		t.Fatal(err)
	}
	if _, err := be.Load(ctx, idx, 10, 10); err != nil {
		t.Fatal(err)
	}
	if names, _ := cacheFiles(t, dir); len(names) != 0 {
		t.Fatalf("cache dir holds %v, want nothing", names)
	}
	checkRange(t, be, small, smallData, 10, 10)
	if names, _ := cacheFiles(t, dir); len(names) != 1 {
		t.Fatalf("cache dir holds %v after a range read of a small pack, want it", names)
	}
}

func TestCacheEviction(t *testing.T) {
	dir := t.TempDir()
	const max, size = 3 << 20, 1 << 20
	_, be := setup(t, dir, max)
	var hs []repo.Handle
	var datas [][]byte
	for range 6 {
		h, data := savePack(t, be, size)
		hs, datas = append(hs, h), append(datas, data)
		checkRange(t, be, h, data, 100, 1000)
		if got := be.CacheUsed(); got > max {
			t.Fatalf("cache holds %d bytes, more than its %d", got, max)
		}
		if _, got := cacheFiles(t, dir); got > max {
			t.Fatalf("cache dir holds %d bytes, more than %d", got, max)
		}
	}
	if got, want := be.Fetched(), int64(6*size); got != want {
		t.Fatalf("fetched %d bytes, want %d", got, want)
	}
	// The last three are cached; reading the oldest of them makes the next-oldest the one
	// dropped for pack 0.
	checkRange(t, be, hs[3], datas[3], 0, 10)
	checkRange(t, be, hs[5], datas[5], 0, 10)
	if got, want := be.Fetched(), int64(6*size); got != want {
		t.Fatalf("reads of cached packs fetched %d bytes", got-want)
	}
	checkRange(t, be, hs[0], datas[0], 0, 10)
	checkRange(t, be, hs[3], datas[3], 10, 10)
	if got, want := be.Fetched(), int64(7*size); got != want {
		t.Fatalf("fetched %d bytes, want %d (pack 0 again)", got, want)
	}
	checkRange(t, be, hs[4], datas[4], 0, 10)
	if got, want := be.Fetched(), int64(8*size); got != want {
		t.Fatalf("fetched %d bytes, want %d (pack 4, the least recently used, again)", got, want)
	}
}

func TestCacheReplaced(t *testing.T) {
	_, be := setup(t, t.TempDir(), 0)
	h, first := savePack(t, be, 1<<20)
	checkRange(t, be, h, first, 1000, 1000)
	second := backendtest.RandomData(t, 1<<20)
	if err := be.Save(context.Background(), h, repo.NewByteReader(second)); err != nil {
		t.Fatal(err)
	}
	checkRange(t, be, h, second, 1000, 1000)
	shorter := backendtest.RandomData(t, 5000)
	if err := be.Save(context.Background(), h, repo.NewByteReader(shorter)); err != nil {
		t.Fatal(err)
	}
	checkRange(t, be, h, shorter, 1000, 1000)
	if _, err := be.Load(context.Background(), h, 1<<19, 10); err == nil {
		t.Fatal("Load past the end of the replaced pack succeeded")
	}
}

// cacheFile returns the path of h's file in the cache in dir.
func cacheFile(t *testing.T, dir string, h repo.Handle) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dir, h.Name+".*"))
	if err != nil || len(m) != 1 {
		t.Fatalf("cache file of %s: %v %v", h.Name[:8], m, err)
	}
	return m[0]
}

func TestCacheCorrupt(t *testing.T) {
	dir := t.TempDir()
	_, be := setup(t, dir, 0)
	const size = 4 << 20
	h, data := savePack(t, be, size)
	checkRange(t, be, h, data, 0, 10)

	if err := os.Truncate(cacheFile(t, dir, h), size/2); err != nil {
		t.Fatal(err)
	}
	checkRange(t, be, h, data, size-1000, 1000)
	if got, want := be.Fetched(), int64(2*size); got != want {
		t.Fatalf("fetched %d bytes after truncating the cached pack, want it again (%d)", got, want)
	}

	// A flipped byte is caught by the block checksums.
	checkRange(t, be, h, data, 0, 10)
	path := cacheFile(t, dir, h)
	testkit.FlipByte(t, path, 3<<20+5)
	checkRange(t, be, h, data, 3<<20, 100)
	if got, want := be.Fetched(), int64(3*size); got != want {
		t.Fatalf("fetched %d bytes after flipping a byte of the cached pack, want %d", got, want)
	}

	// Gone altogether.
	checkRange(t, be, h, data, 0, 10)
	if err := os.Remove(cacheFile(t, dir, h)); err != nil {
		t.Fatal(err)
	}
	checkRange(t, be, h, data, 5, 10)
	if got, want := be.Fetched(), int64(4*size); got != want {
		t.Fatalf("fetched %d bytes after removing the cached pack, want %d", got, want)
	}
}

func TestCacheReopen(t *testing.T) {
	dir := t.TempDir()
	js, be := setup(t, dir, 0)
	const size = 2 << 20
	h1, d1 := savePack(t, be, size)
	h2, d2 := savePack(t, be, size)
	checkRange(t, be, h1, d1, 10, 10)
	checkRange(t, be, h2, d2, 10, 10)
	be.Close()
	testkit.FlipByte(t, cacheFile(t, dir, h2), 12345)
	partial := filepath.Join(dir, "fill-123.tmp")
	if err := os.WriteFile(partial, []byte("half a pack"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, "notes.txt")
	if err := os.WriteFile(other, []byte("not the cache's"), 0o600); err != nil {
		t.Fatal(err)
	}

	be = open(t, js, dir, 0)
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Errorf("a partial download survived Open: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("Open removed a file that is not the cache's: %v", err)
	}
	checkRange(t, be, h1, d1, size-100, 100)
	if got := be.Fetched(); got != 0 {
		t.Fatalf("a pack cached by the last run fetched %d bytes", got)
	}
	// The file that does not match its digest is not used.
	checkRange(t, be, h2, d2, size-100, 100)
	if got := be.Fetched(); got != size {
		t.Fatalf("a corrupt pack from the last run: fetched %d bytes, want %d", got, size)
	}
}

func TestCacheCancelled(t *testing.T) {
	_, be := setup(t, t.TempDir(), 0)
	h, data := savePack(t, be, 8<<20)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := be.Load(ctx, h, 10, 10); err == nil {
		t.Fatal("Load with a cancelled context succeeded")
	}
	// A reader that gives up does not spoil the download for the others.
	ctx, cancel = context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_, _ = be.Load(ctx, h, 20, 10)
	}()
	cancel()
	checkRange(t, be, h, data, 8<<20-10, 10)
	wg.Wait()
}

// BenchmarkLoadRanges reads every 1 MiB range (the average blob) of four 16 MiB packs,
// in pack order as a restore does, from file://, from nats:// without a cache and from
// nats:// with a cache emptied before each pass (each pack fetched once); nats-whole
// reads each pack whole, the least any reading of each pack from the server costs.
func BenchmarkLoadRanges(b *testing.B) {
	const packs, size, blob = 4, 16 << 20, 1 << 20
	s := natstest.Start(b)
	_, js := s.JetStream(b)
	ctx := context.Background()
	fileBe, err := file.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	plain, err := natsobj.Open(ctx, js, "repo", 1)
	if err != nil {
		b.Fatal(err)
	}
	cached := open(b, js, b.TempDir(), 0)
	var hs []repo.Handle
	for range packs {
		h, data := savePack(b, plain, size)
		if err := fileBe.Save(ctx, h, repo.NewByteReader(data)); err != nil {
			b.Fatal(err)
		}
		hs = append(hs, h)
	}
	for _, workers := range []int{1, 4} {
		for _, bc := range []struct {
			name string
			be   repo.Backend
		}{{"file", fileBe}, {"nats", plain}, {"nats-cache", cached}, {"nats-whole", plain}} {
			b.Run(fmt.Sprintf("%s/workers=%d", bc.name, workers), func(b *testing.B) {
				b.SetBytes(packs * size)
				for range b.N {
					if bc.name == "nats-whole" {
						loadAll(b, plain, hs, size, 0, workers)
						continue
					}
					if bc.be == cached {
						cached.PurgeCache()
					}
					loadAll(b, bc.be, hs, size, blob, workers)
				}
			})
		}
	}
}

// loadAll reads the ranges of blob bytes of packs of size bytes with workers goroutines
// taking them in order; blob 0 reads each pack whole.
func loadAll(b *testing.B, be repo.Backend, hs []repo.Handle, size, blob, workers int) {
	type task struct {
		h   repo.Handle
		off int
	}
	tasks := make(chan task)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range tasks {
				if _, err := be.Load(context.Background(), t.h, int64(t.off), int64(blob)); err != nil {
					b.Error(err)
				}
			}
		}()
	}
	for _, h := range hs {
		if blob == 0 {
			tasks <- task{h, 0}
			continue
		}
		for off := 0; off < size; off += blob {
			tasks <- task{h, off}
		}
	}
	close(tasks)
	wg.Wait()
}

// TestCacheOverwrite replaces a pack again and again while readers read ranges of it
// through the cache: a reader may see an error, never bytes of no version or of two.
func TestCacheOverwrite(t *testing.T) {
	_, be := setup(t, t.TempDir(), 0)
	ctx := context.Background()
	const size = 1 << 20
	versions := [][]byte{backendtest.RandomData(t, size), backendtest.RandomData(t, size), backendtest.RandomData(t, size)}
	h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
	if err := be.Save(ctx, h, repo.NewByteReader(versions[0])); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	for r := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				off := (r*7919 + i*104729) % (size - 5000)
				got, err := be.Load(ctx, h, int64(off), 5000)
				if err != nil {
					continue
				}
				match := false
				for _, v := range versions {
					match = match || bytes.Equal(got, v[off:off+5000])
				}
				if !match {
					t.Errorf("Load(%d, 5000) during overwrites returned bytes of no saved version", off)
					return
				}
			}
		}()
	}
	for i := 1; i <= 20; i++ {
		if err := be.Save(ctx, h, repo.NewByteReader(versions[i%len(versions)])); err != nil {
			t.Errorf("Save #%d: %v", i, err)
			break
		}
	}
	close(done)
	wg.Wait()
	checkRange(t, be, h, versions[20%len(versions)], 1000, 1000)
}

// TestCacheRecheck replaces and removes a cached pack through another backend, as another
// worker would: the cache serves what it has for CacheRecheck after the server last
// confirmed it, and asks the server again after that.
func TestCacheRecheck(t *testing.T) {
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	_, js2 := s.JetStream(t)
	ctx := context.Background()
	other, err := natsobj.Open(ctx, js2, "repo", 1)
	if err != nil {
		t.Fatal(err)
	}
	clock := testkit.NewClock(time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC))
	be := open(t, js, t.TempDir(), 0)
	be.SetCacheClock(clock.Now)
	strict, err := natsobj.OpenWithOptions(ctx, js, "repo", natsobj.Options{CacheDir: t.TempDir(), CacheRecheck: -1, WholePacks: true})
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()

	h, first := savePack(t, other, 1<<20)
	checkRange(t, be, h, first, 100, 100)
	checkRange(t, strict, h, first, 100, 100)
	second := backendtest.RandomData(t, 1<<20)
	if err := other.Save(ctx, h, repo.NewByteReader(second)); err != nil {
		t.Fatal(err)
	}
	checkRange(t, strict, h, second, 100, 100)
	clock.Add(natsobj.DefaultCacheRecheck - time.Millisecond)
	checkRange(t, be, h, first, 100, 100) // not asked yet
	clock.Add(time.Millisecond)
	checkRange(t, be, h, second, 100, 100)

	if err := other.Remove(ctx, h); err != nil {
		t.Fatal(err)
	}
	if _, err := strict.Load(ctx, h, 100, 100); !repo.IsNotExist(err) {
		t.Fatalf("Load of a removed pack with CacheRecheck -1: err = %v, want ErrNotExist", err)
	}
	clock.Add(natsobj.DefaultCacheRecheck)
	if _, err := be.Load(ctx, h, 100, 100); !repo.IsNotExist(err) {
		t.Fatalf("Load of a removed pack after CacheRecheck: err = %v, want ErrNotExist", err)
	}

	// Saves and removes through the backend itself are seen at once.
	h2, third := savePack(t, be, 1<<20)
	checkRange(t, be, h2, third, 100, 100)
	fourth := backendtest.RandomData(t, 1<<20)
	if err := be.Save(ctx, h2, repo.NewByteReader(fourth)); err != nil {
		t.Fatal(err)
	}
	checkRange(t, be, h2, fourth, 100, 100)
	if err := be.Remove(ctx, h2); err != nil {
		t.Fatal(err)
	}
	if _, err := be.Load(ctx, h2, 100, 100); !repo.IsNotExist(err) {
		t.Fatalf("Load of a pack removed through the backend: err = %v, want ErrNotExist", err)
	}
}

// TestCacheDiskFails takes the cache's directory away: range reads go to the server.
func TestCacheDiskFails(t *testing.T) {
	dir := t.TempDir()
	_, be := setup(t, dir, 0)
	h, data := savePack(t, be, 2<<20)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	checkRange(t, be, h, data, 1<<20, 1000)
	checkRange(t, be, h, data, 10, 1000)
	if got, want := be.Fetched(), int64(1<<20+1000+10+1000); got != want {
		t.Fatalf("fetched %d bytes, want %d: the ranges from the server", got, want)
	}
}
