// Package backendtest is the conformance suite every repository backend passes. It exists
// so that the repository core can count on one contract (atomic saves, range loads,
// not-exist errors, listing by type) whatever stores its objects: a backend's own tests
// call Run with a constructor, and a new backend is done when Run passes.
package backendtest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"sync"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
)

// Run runs the conformance suite against backends made by newBackend, which is called
// once per sub-test and must return an empty backend (its cleanup registered on t).
func Run(t *testing.T, newBackend func(t *testing.T) repo.Backend) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, be repo.Backend)
	}{
		{"SaveLoadStatListRemove", testSaveLoadStatListRemove},
		{"RangeLoad", testRangeLoad},
		{"NotExist", testNotExist},
		{"Overwrite", testOverwrite},
		{"OverwriteAtomic", testOverwriteAtomic},
		{"ListEmpty", testListEmpty},
		{"ListStops", testListStops},
		{"TypesAreSeparate", testTypesAreSeparate},
		{"EmptyObject", testEmptyObject},
		{"ConcurrentSave", testConcurrentSave},
		{"Large", testLarge},
		{"Cancelled", testCancelled},
		{"ReaderFails", testReaderFails},
		{"ReaderRewound", testReaderRewound},
		{"Location", testLocation},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newBackend(t))
		})
	}
}

// RandomID returns a random 64-digit hex name, the shape of the repository's ids.
func RandomID(t testing.TB) string {
	t.Helper()
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b[:])
}

// RandomData returns n random bytes.
func RandomData(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// handleFor returns a new handle of type ft: "config" for the config type, a random id otherwise.
func handleFor(t testing.TB, ft repo.FileType) repo.Handle {
	if ft == repo.ConfigFile {
		return repo.Handle{Type: ft, Name: "config"}
	}
	return repo.Handle{Type: ft, Name: RandomID(t)}
}

// list returns the objects of type ft, sorted by name.
func list(t *testing.T, be repo.Backend, ft repo.FileType) []repo.FileInfo {
	t.Helper()
	var out []repo.FileInfo
	if err := be.List(context.Background(), ft, func(fi repo.FileInfo) error {
		out = append(out, fi)
		return nil
	}); err != nil {
		t.Fatalf("List(%s): %v", ft, err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func save(t *testing.T, be repo.Backend, h repo.Handle, data []byte) {
	t.Helper()
	if err := be.Save(context.Background(), h, repo.NewByteReader(data)); err != nil {
		t.Fatalf("Save(%s): %v", h, err)
	}
}

func load(t *testing.T, be repo.Backend, h repo.Handle) []byte {
	t.Helper()
	got, err := be.Load(context.Background(), h, 0, 0)
	if err != nil {
		t.Fatalf("Load(%s): %v", h, err)
	}
	return got
}

func testSaveLoadStatListRemove(t *testing.T, be repo.Backend) {
	ctx := context.Background()
	for _, ft := range repo.FileTypes {
		t.Run(string(ft), func(t *testing.T) {
			n := 3
			if ft == repo.ConfigFile {
				n = 1
			}
			want := map[string][]byte{}
			var handles []repo.Handle
			for i := 0; i < n; i++ {
				h := handleFor(t, ft)
				data := RandomData(t, 100+i*1000)
				save(t, be, h, data)
				want[h.Name] = data
				handles = append(handles, h)
			}
			for _, h := range handles {
				if got := load(t, be, h); !bytes.Equal(got, want[h.Name]) {
					t.Fatalf("Load(%s) = %d bytes, want the %d saved", h, len(got), len(want[h.Name]))
				}
				fi, err := be.Stat(ctx, h)
				if err != nil {
					t.Fatalf("Stat(%s): %v", h, err)
				}
				if got, want := fi.Size, int64(len(want[h.Name])); got != want {
					t.Fatalf("Stat(%s).Size = %d, want %d", h, got, want)
				}
				if fi.Name != h.Name {
					t.Fatalf("Stat(%s).Name = %q, want %q", h, fi.Name, h.Name)
				}
			}
			got := list(t, be, ft)
			if len(got) != n {
				t.Fatalf("List(%s) = %v, want %d objects", ft, got, n)
			}
			for _, fi := range got {
				data, ok := want[fi.Name]
				if !ok {
					t.Fatalf("List(%s) returned %q, which was not saved", ft, fi.Name)
				}
				if fi.Size != int64(len(data)) {
					t.Fatalf("List(%s): %s has size %d, want %d", ft, fi.Name, fi.Size, len(data))
				}
			}
			for _, h := range handles {
				if err := be.Remove(ctx, h); err != nil {
					t.Fatalf("Remove(%s): %v", h, err)
				}
				if _, err := be.Load(ctx, h, 0, 0); !errors.Is(err, repo.ErrNotExist) {
					t.Fatalf("Load(%s) after Remove: err = %v, want ErrNotExist", h, err)
				}
			}
			if got := list(t, be, ft); len(got) != 0 {
				t.Fatalf("List(%s) after removing all = %v, want none", ft, got)
			}
		})
	}
}

func testRangeLoad(t *testing.T, be repo.Backend) {
	ctx := context.Background()
	const size = 300_000 // more than one chunk in backends that chunk objects
	data := RandomData(t, size)
	h := repo.Handle{Type: repo.PackFile, Name: RandomID(t)}
	save(t, be, h, data)
	ok := []struct{ offset, length int64 }{
		{0, 0}, {0, size}, {0, 1}, {10, 0}, {size - 1, 1}, {size - 1, 0},
		{1000, 100}, {131071, 2}, {131072, 131072}, {200_000, 100_000}, {size, 0},
	}
	for _, r := range ok {
		got, err := be.Load(ctx, h, r.offset, r.length)
		if err != nil {
			t.Fatalf("Load(%s, %d, %d): %v", h, r.offset, r.length, err)
		}
		end := r.offset + r.length
		if r.length == 0 {
			end = size
		}
		if want := data[r.offset:end]; !bytes.Equal(got, want) {
			t.Fatalf("Load(%s, %d, %d) = %d bytes, not the %d expected", h, r.offset, r.length, len(got), len(want))
		}
	}
	bad := []struct{ offset, length int64 }{
		{0, size + 1}, {size, 1}, {size + 1, 0}, {size - 10, 11}, {-1, 0}, {0, -1},
	}
	for _, r := range bad {
		if got, err := be.Load(ctx, h, r.offset, r.length); err == nil {
			t.Fatalf("Load(%s, %d, %d) = %d bytes, want an error (past the end or negative)", h, r.offset, r.length, len(got))
		}
	}
}

func testNotExist(t *testing.T, be repo.Backend) {
	ctx := context.Background()
	for _, ft := range repo.FileTypes {
		h := handleFor(t, ft)
		if _, err := be.Load(ctx, h, 0, 0); !errors.Is(err, repo.ErrNotExist) {
			t.Errorf("Load(%s): err = %v, want ErrNotExist", h, err)
		}
		if _, err := be.Load(ctx, h, 10, 10); !errors.Is(err, repo.ErrNotExist) {
			t.Errorf("Load(%s, 10, 10): err = %v, want ErrNotExist", h, err)
		}
		if _, err := be.Stat(ctx, h); !errors.Is(err, repo.ErrNotExist) {
			t.Errorf("Stat(%s): err = %v, want ErrNotExist", h, err)
		}
		if err := be.Remove(ctx, h); !errors.Is(err, repo.ErrNotExist) {
			t.Errorf("Remove(%s): err = %v, want ErrNotExist", h, err)
		}
		// Removed objects are gone too.
		save(t, be, h, []byte("x"))
		if err := be.Remove(ctx, h); err != nil {
			t.Fatalf("Remove(%s): %v", h, err)
		}
		if _, err := be.Stat(ctx, h); !errors.Is(err, repo.ErrNotExist) {
			t.Errorf("Stat(%s) after Remove: err = %v, want ErrNotExist", h, err)
		}
		if err := be.Remove(ctx, h); !errors.Is(err, repo.ErrNotExist) {
			t.Errorf("second Remove(%s): err = %v, want ErrNotExist", h, err)
		}
	}
}

func testOverwrite(t *testing.T, be repo.Backend) {
	ctx := context.Background()
	for _, ft := range repo.FileTypes {
		h := handleFor(t, ft)
		save(t, be, h, RandomData(t, 5000))
		second := RandomData(t, 1234)
		save(t, be, h, second)
		if got := load(t, be, h); !bytes.Equal(got, second) {
			t.Fatalf("Load(%s) after overwrite = %d bytes, not the %d of the second save", h, len(got), len(second))
		}
		fi, err := be.Stat(ctx, h)
		if err != nil {
			t.Fatalf("Stat(%s): %v", h, err)
		}
		if fi.Size != int64(len(second)) {
			t.Fatalf("Stat(%s).Size = %d after overwrite, want %d", h, fi.Size, len(second))
		}
		if got := list(t, be, ft); len(got) != 1 || got[0].Size != int64(len(second)) {
			t.Fatalf("List(%s) after overwrite = %v, want one object of %d bytes", ft, got, len(second))
		}
	}
}

// testOverwriteAtomic overwrites one object again and again while readers load it: a
// reader may see an error (the backend may not keep the old version for it) but never
// anything but one complete version.
func testOverwriteAtomic(t *testing.T, be repo.Backend) {
	ctx := context.Background()
	h := repo.Handle{Type: repo.IndexFile, Name: RandomID(t)}
	versions := [][]byte{RandomData(t, 400_000), RandomData(t, 400_000), RandomData(t, 200_000)}
	save(t, be, h, versions[0])
	done := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var loads int
	for r := 0; r < 2; r++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				got, err := be.Load(ctx, h, 0, 0)
				if err != nil {
					continue
				}
				match := false
				for _, v := range versions {
					match = match || bytes.Equal(got, v)
				}
				if !match {
					t.Errorf("Load(%s) during overwrites returned %d bytes that are no saved version", h, len(got))
					return
				}
				mu.Lock()
				loads++
				mu.Unlock()
			}
		}()
	}
	for i := 1; i <= 20; i++ {
		if err := be.Save(ctx, h, repo.NewByteReader(versions[i%len(versions)])); err != nil {
			t.Errorf("Save(%s) #%d: %v", h, i, err)
			break
		}
	}
	close(done)
	wg.Wait()
	if got, want := load(t, be, h), versions[20%len(versions)]; !bytes.Equal(got, want) {
		t.Fatalf("Load(%s) after the overwrites = %d bytes, not the last version saved", h, len(got))
	}
	t.Logf("%d complete loads during 20 overwrites", loads)
}

func testListEmpty(t *testing.T, be repo.Backend) {
	for _, ft := range repo.FileTypes {
		if got := list(t, be, ft); len(got) != 0 {
			t.Fatalf("List(%s) of an empty backend = %v, want none", ft, got)
		}
	}
}

func testListStops(t *testing.T, be repo.Backend) {
	for i := 0; i < 5; i++ {
		save(t, be, repo.Handle{Type: repo.SnapshotFile, Name: RandomID(t)}, []byte("snapshot"))
	}
	stop := errors.New("stop here")
	calls := 0
	err := be.List(context.Background(), repo.SnapshotFile, func(repo.FileInfo) error {
		calls++
		if calls == 2 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("List returned %v, want the callback's error", err)
	}
	if calls != 2 {
		t.Fatalf("List called fn %d times after it returned an error on call 2", calls)
	}
}

// testTypesAreSeparate saves the same name under every type: each is its own object.
func testTypesAreSeparate(t *testing.T, be repo.Backend) {
	name := RandomID(t)
	for i, ft := range repo.FileTypes {
		if ft == repo.ConfigFile {
			continue
		}
		save(t, be, repo.Handle{Type: ft, Name: name}, bytes.Repeat([]byte{byte(i)}, 10+i))
	}
	for i, ft := range repo.FileTypes {
		if ft == repo.ConfigFile {
			if got := list(t, be, ft); len(got) != 0 {
				t.Fatalf("List(config) = %v, want none", got)
			}
			continue
		}
		h := repo.Handle{Type: ft, Name: name}
		if got, want := load(t, be, h), bytes.Repeat([]byte{byte(i)}, 10+i); !bytes.Equal(got, want) {
			t.Fatalf("Load(%s) = %x, want %x", h, got, want)
		}
		if got := list(t, be, ft); len(got) != 1 || got[0].Name != name {
			t.Fatalf("List(%s) = %v, want only %s", ft, got, name)
		}
	}
}

func testEmptyObject(t *testing.T, be repo.Backend) {
	h := repo.Handle{Type: repo.KeyFile, Name: RandomID(t)}
	save(t, be, h, nil)
	if got := load(t, be, h); len(got) != 0 {
		t.Fatalf("Load(%s) of an empty object = %d bytes", h, len(got))
	}
	fi, err := be.Stat(context.Background(), h)
	if err != nil || fi.Size != 0 {
		t.Fatalf("Stat(%s) = %+v, %v; want size 0", h, fi, err)
	}
	if _, err := be.Load(context.Background(), h, 0, 1); err == nil {
		t.Fatalf("Load(%s, 0, 1) of an empty object succeeded, want an error", h)
	}
}

func testConcurrentSave(t *testing.T, be repo.Backend) {
	const workers, each = 8, 8
	ctx := context.Background()
	type obj struct {
		h    repo.Handle
		data []byte
	}
	objs := make([][]obj, workers)
	for w := range objs {
		for i := 0; i < each; i++ {
			objs[w] = append(objs[w], obj{repo.Handle{Type: repo.PackFile, Name: RandomID(t)}, RandomData(t, 10_000+w*1000+i)})
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for _, o := range objs[w] {
				if err := be.Save(ctx, o.h, repo.NewByteReader(o.data)); err != nil {
					errs <- fmt.Errorf("Save(%s): %w", o.h, err)
				}
			}
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	if got := list(t, be, repo.PackFile); len(got) != workers*each {
		t.Fatalf("List(data) after concurrent saves = %d objects, want %d", len(got), workers*each)
	}
	for _, os := range objs {
		for _, o := range os {
			if got := load(t, be, o.h); !bytes.Equal(got, o.data) {
				t.Fatalf("Load(%s) = %d bytes, not the %d saved", o.h, len(got), len(o.data))
			}
		}
	}
}

// testLarge saves a pack-sized object from a file, as the repository saves packs.
func testLarge(t *testing.T, be repo.Backend) {
	const size = 20 << 20
	data := RandomData(t, size)
	h := repo.Handle{Type: repo.PackFile, Name: RandomID(t)}
	f, err := os.CreateTemp(t.TempDir(), "pack-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(context.Background(), h, repo.NewFileReader(f, size)); err != nil {
		t.Fatalf("Save(%s) from a file: %v", h, err)
	}
	if got := load(t, be, h); !bytes.Equal(got, data) {
		t.Fatalf("Load(%s) = %d bytes, not the %d saved", h, len(got), size)
	}
	got, err := be.Load(context.Background(), h, size-5<<20, 1<<20)
	if err != nil {
		t.Fatalf("Load(%s) of 1 MiB near the end: %v", h, err)
	}
	if !bytes.Equal(got, data[size-5<<20:size-4<<20]) {
		t.Fatalf("Load(%s) of 1 MiB near the end returned the wrong bytes", h)
	}
}

func testCancelled(t *testing.T, be repo.Backend) {
	h := repo.Handle{Type: repo.SnapshotFile, Name: RandomID(t)}
	save(t, be, h, []byte("snapshot"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	other := repo.Handle{Type: repo.SnapshotFile, Name: RandomID(t)}
	if err := be.Save(ctx, other, repo.NewByteReader([]byte("data"))); err == nil {
		t.Errorf("Save with a cancelled context succeeded")
	}
	if _, err := be.Load(ctx, h, 0, 0); err == nil {
		t.Errorf("Load with a cancelled context succeeded")
	}
	if _, err := be.Stat(ctx, h); err == nil {
		t.Errorf("Stat with a cancelled context succeeded")
	}
	if err := be.Remove(ctx, h); err == nil {
		t.Errorf("Remove with a cancelled context succeeded")
	}
	if err := be.List(ctx, repo.SnapshotFile, func(repo.FileInfo) error { return nil }); err == nil {
		t.Errorf("List with a cancelled context succeeded")
	}
	// Nothing happened: the save did not store, the remove did not remove.
	got := list(t, be, repo.SnapshotFile)
	if len(got) != 1 || got[0].Name != h.Name {
		t.Fatalf("List after cancelled calls = %v, want only %s", got, h.Name)
	}
}

func testLocation(t *testing.T, be repo.Backend) {
	if be.Location() == "" {
		t.Fatal("Location() is empty")
	}
}

// errReader is the error of a failingReader.
var errReader = errors.New("reader failed")

// failingReader reads the first n bytes of data, then fails, every time from the start
// again: a temporary file that cannot be read, a source that breaks off. It is neither an
// io.ReaderAt nor an io.Seeker, so backends read it as a stream.
type failingReader struct {
	data []byte
	n    int
	off  int
}

func (r *failingReader) Read(p []byte) (int, error) {
	if r.off >= r.n {
		return 0, errReader
	}
	k := copy(p, r.data[r.off:r.n])
	r.off += k
	return k, nil
}

func (r *failingReader) Rewind() error { r.off = 0; return nil }

func (r *failingReader) Length() int64 { return int64(len(r.data)) }

// testReaderFails saves from readers that fail half-way: the Save fails and stores
// nothing, neither a new object nor over an old one.
func testReaderFails(t *testing.T, be repo.Backend) {
	ctx := context.Background()
	for _, size := range []int{1000, 6 << 20} {
		data := RandomData(t, size)
		h := repo.Handle{Type: repo.PackFile, Name: RandomID(t)}
		if err := be.Save(ctx, h, &failingReader{data: data, n: size / 2}); err == nil {
			t.Fatalf("Save(%s) of %d bytes from a reader failing half-way succeeded", h, size)
		}
		if _, err := be.Stat(ctx, h); !repo.IsNotExist(err) {
			t.Fatalf("Stat(%s) after a failed Save = %v, want not-exist", h, err)
		}
		if got := list(t, be, repo.PackFile); len(got) != 0 {
			t.Fatalf("List(data) after a failed Save = %v, want nothing", got)
		}
	}
	h := repo.Handle{Type: repo.SnapshotFile, Name: RandomID(t)}
	old := RandomData(t, 500)
	save(t, be, h, old)
	if err := be.Save(ctx, h, &failingReader{data: RandomData(t, 1000), n: 300}); err == nil {
		t.Fatalf("Save(%s) over an object from a reader failing half-way succeeded", h)
	}
	if got := load(t, be, h); !bytes.Equal(got, old) {
		t.Fatalf("Load(%s) after a failed Save over it = %d bytes, not the %d saved before", h, len(got), len(old))
	}
}

// testReaderRewound saves from a reader that was read to its end already: Save reads it
// from its start, as a backend retrying a Save does.
func testReaderRewound(t *testing.T, be repo.Backend) {
	data := RandomData(t, 3000)
	rd := repo.NewByteReader(data)
	if _, err := io.Copy(io.Discard, rd); err != nil {
		t.Fatal(err)
	}
	h := repo.Handle{Type: repo.IndexFile, Name: RandomID(t)}
	if err := be.Save(context.Background(), h, rd); err != nil {
		t.Fatalf("Save(%s): %v", h, err)
	}
	if got := load(t, be, h); !bytes.Equal(got, data) {
		t.Fatalf("Load(%s) = %d bytes, not the %d saved", h, len(got), len(data))
	}
}

// BadNames checks that be refuses to save under a name that could leave its directory,
// or does not fit its type, in the directory layout of the file, s3 and sftp backends
// (repo.Handle.Path); a backend of that layout calls it from its tests.
func BadNames(t *testing.T, be repo.Backend) {
	t.Helper()
	ctx := context.Background()
	for _, h := range []repo.Handle{
		{Type: repo.SnapshotFile, Name: ""},
		{Type: repo.SnapshotFile, Name: "../config"},
		{Type: repo.SnapshotFile, Name: ".."},
		{Type: repo.SnapshotFile, Name: ".tmp-1"},
		{Type: repo.PackFile, Name: "zz12"},
		{Type: repo.PackFile, Name: "a"},
		{Type: repo.ConfigFile, Name: "other"},
		{Type: "bogus", Name: "abcd"},
	} {
		if err := be.Save(ctx, h, repo.NewByteReader([]byte("x"))); err == nil {
			t.Errorf("Save(%q, %q) succeeded, want an error", h.Type, h.Name)
		}
	}
}
