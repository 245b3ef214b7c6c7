package repo_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// tempPackFiles records the temporary files a repository fills its packs in.
type tempPackFiles struct {
	mu    sync.Mutex
	files []*os.File
}

func (p *tempPackFiles) add(f *os.File) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.files = append(p.files, f)
}

// open returns how many of the files are still open.
func (p *tempPackFiles) open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, f := range p.files {
		if _, err := f.Stat(); !errors.Is(err, os.ErrClosed) {
			n++
		}
	}
	return n
}

func (p *tempPackFiles) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.files)
}

// setupTemp creates a repository on be whose packs are filled in a temporary directory
// of their own, and records their files.
func setupTemp(t *testing.T, be repo.Backend) (*repo.Repository, string, *tempPackFiles) {
	t.Helper()
	tmp := t.TempDir()
	opts := testOpts
	opts.TempDir = tmp
	r, err := repo.Init(context.Background(), be, password, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	pf := &tempPackFiles{}
	repo.SetPackFileHook(r, pf.add)
	return r, tmp, pf
}

// entries returns the names in dir.
func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestPacksAreWrittenThroughTempFiles: every pack is filled in a temporary file of
// Options.TempDir, which has no name there (unlinked at once) and is closed once the pack
// is saved, and the packs saved from those files read back and check.
func TestPacksAreWrittenThroughTempFiles(t *testing.T) {
	ctx := context.Background()
	be, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, tmp, pf := setupTemp(t, be)
	var ids []repo.ID
	for i := 0; i < 40; i++ { // 40 blobs of 64 KiB in packs of 256 KiB: 10 packs
		ids = append(ids, saveBlob(t, r, randomBytes(uint64(i), 64<<10)))
		if i == 20 {
			if got := entries(t, tmp); len(got) != 0 {
				t.Fatalf("temporary directory holds %v while packs are filled, want nothing (unlinked files)", got)
			}
		}
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	st := r.Stats()
	if st.PacksAdded < 5 {
		t.Fatalf("PacksAdded = %d, want several", st.PacksAdded)
	}
	if got, want := int64(pf.count()), st.PacksAdded; got != want {
		t.Fatalf("%d temporary pack files for %d packs", got, want)
	}
	if got := pf.open(); got != 0 {
		t.Fatalf("%d temporary pack files still open after Flush", got)
	}
	if got := entries(t, tmp); len(got) != 0 {
		t.Fatalf("temporary directory holds %v after Flush, want nothing", got)
	}
	for i, id := range ids {
		got, err := r.LoadBlob(ctx, repo.DataBlob, id, nil)
		if err != nil {
			t.Fatalf("blob %d: %v", i, err)
		}
		if !bytes.Equal(got, randomBytes(uint64(i), 64<<10)) {
			t.Fatalf("blob %d read back different", i)
		}
	}
	testkit.CheckClean(t, r)
}

// TestFailedPackSaveLeavesNoTempFile: a pack whose save fails has its temporary file
// closed and nothing left in Options.TempDir, and so does Close with a pack half filled.
func TestFailedPackSaveLeavesNoTempFile(t *testing.T) {
	ctx := context.Background()
	dir, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	be := &failingBackend{Backend: dir, fail: true}
	r, tmp, pf := setupTemp(t, be)
	for i := 0; i < 10; i++ {
		saveBlob(t, r, randomBytes(uint64(i), 64<<10))
	}
	if err := r.Flush(ctx); err == nil {
		t.Fatal("Flush succeeded with a backend that fails every pack save")
	}
	if pf.count() == 0 {
		t.Fatal("no temporary pack file was created")
	}
	if got := pf.open(); got != 0 {
		t.Fatalf("%d temporary pack files still open after the failed saves", got)
	}
	if got := entries(t, tmp); len(got) != 0 {
		t.Fatalf("temporary directory holds %v after failed saves, want nothing", got)
	}

	saveBlob(t, r, randomBytes(100, 1000)) // a pack being filled when Close comes
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if got := pf.open(); got != 0 {
		t.Fatalf("%d temporary pack files still open after Close", got)
	}
}

// TestPackTempDirMissing: a TempDir that cannot hold files fails the SaveBlob that needs
// one, with an error naming it, and the writer that saw it.
func TestPackTempDirMissing(t *testing.T) {
	ctx := context.Background()
	be, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	opts := testOpts
	opts.TempDir = filepath.Join(t.TempDir(), "missing")
	r, err := repo.Init(ctx, be, password, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := r.StartWriter(ctx, "job")
	if err != nil {
		t.Fatal(err)
	}
	defer w.Release()
	data := []byte("a blob")
	_, _, err = w.SaveBlob(ctx, repo.DataBlob, r.BlobID(data), data)
	if err == nil || !strings.Contains(err.Error(), opts.TempDir) {
		t.Fatalf("SaveBlob with a missing TempDir = %v, want an error naming %s", err, opts.TempDir)
	}
	if err := w.Flush(ctx); err == nil {
		t.Fatal("Flush of a writer whose SaveBlob failed succeeded")
	}
}

// TestPackFileWriteFails: when a pack's temporary file fails (a full disk), the pack is
// given up: the blobs already in it are forgotten, the writers that saw it fail, and the
// next writer saves them again into a new file.
func TestPackFileWriteFails(t *testing.T) {
	ctx := context.Background()
	be, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	r, _, pf := setupTemp(t, be)
	var once sync.Once
	repo.SetPackFileHook(r, func(f *os.File) {
		pf.add(f)
		once.Do(func() { f.Close() }) // the first pack's writes fail
	})
	w, err := r.StartWriter(ctx, "job 1")
	if err != nil {
		t.Fatal(err)
	}
	small := []byte("a small blob, still in the write buffer")
	if _, _, err := w.SaveBlob(ctx, repo.DataBlob, r.BlobID(small), small); err != nil {
		t.Fatalf("SaveBlob of a buffered blob: %v", err)
	}
	large := randomBytes(1, 256<<10) // larger than the buffer: written at once, and fails
	if _, _, err := w.SaveBlob(ctx, repo.DataBlob, r.BlobID(large), large); err == nil {
		t.Fatal("SaveBlob into a pack file that fails succeeded")
	}
	if r.HasBlob(repo.DataBlob, r.BlobID(small)) {
		t.Fatal("the blob of the failed pack is still known")
	}
	if err := w.Flush(ctx); err == nil {
		t.Fatal("Flush of a writer whose pack file failed succeeded")
	}
	w.Release()

	w2, err := r.StartWriter(ctx, "job 2")
	if err != nil {
		t.Fatal(err)
	}
	defer w2.Release()
	for _, b := range [][]byte{small, large} {
		if added, _, err := w2.SaveBlob(ctx, repo.DataBlob, r.BlobID(b), b); err != nil || !added {
			t.Fatalf("SaveBlob again = %v, %v; want added", added, err)
		}
	}
	if err := w2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{small, large} {
		got, err := r.LoadBlob(ctx, repo.DataBlob, r.BlobID(b), nil)
		if err != nil || !bytes.Equal(got, b) {
			t.Fatalf("LoadBlob = %d bytes, %v", len(got), err)
		}
	}
	if got, want := pf.count(), 2; got != want {
		t.Fatalf("%d pack files, want %d (the failed one and its replacement)", got, want)
	}
	if got := pf.open(); got != 0 {
		t.Fatalf("%d pack files still open", got)
	}
}
