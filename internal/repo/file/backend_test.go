package file_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/file"
)

func newBackend(t *testing.T) repo.Backend {
	be, err := file.Open(filepath.Join(t.TempDir(), "repo"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

func TestConformance(t *testing.T) {
	backendtest.Run(t, newBackend)
}

func TestLayout(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	name := "ab" + backendtest.RandomID(t)[2:]
	if err := be.Save(ctx, repo.Handle{Type: repo.PackFile, Name: name}, repo.NewByteReader([]byte("pack"))); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, repo.Handle{Type: repo.ConfigFile, Name: "config"}, repo.NewByteReader([]byte("cfg"))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"data/ab/" + name, "config"} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
			t.Errorf("%s mode = %v, want %v", p, got, want)
		}
	}
	for _, p := range []string{".", "keys", "data", "data/00", "data/ff", "index", "snapshots"} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			t.Errorf("%s: mode %v, want a directory with mode 0700", p, fi.Mode())
		}
	}
	// Opening again keeps what is there.
	be2, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := be2.Load(ctx, repo.Handle{Type: repo.PackFile, Name: name}, 0, 0); err != nil || string(got) != "pack" {
		t.Fatalf("Load after reopen = %q, %v", got, err)
	}
}

func TestListSkipsTempFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "repo")
	be, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	// What a crash in the middle of Save leaves behind.
	if err := os.WriteFile(filepath.Join(dir, "data", "12", ".tmp-123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "snapshots", ".tmp-456"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ft := range []repo.FileType{repo.PackFile, repo.SnapshotFile} {
		n := 0
		if err := be.List(context.Background(), ft, func(fi repo.FileInfo) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("List(%s) returned %d objects, want the temporary file skipped", ft, n)
		}
	}
}

func TestBadNames(t *testing.T) { backendtest.BadNames(t, newBackend(t)) }

// LoadInto reads what Load reads, into the caller's buffer, and refuses what Load
// refuses: a range past the end, a missing object.
func TestLoadInto(t *testing.T) {
	be := newBackend(t)
	ctx := context.Background()
	h := repo.Handle{Type: repo.PackFile, Name: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
	data := make([]byte, 10000)
	for i := range data {
		data[i] = byte(i * 7)
	}
	if err := be.Save(ctx, h, repo.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	li, ok := be.(repo.LoaderInto)
	if !ok {
		t.Fatal("the file backend is no repo.LoaderInto")
	}
	buf := make([]byte, 3000)
	if err := li.LoadInto(ctx, h, 5000, buf); err != nil {
		t.Fatal(err)
	}
	want, err := be.Load(ctx, h, 5000, 3000)
	if err != nil {
		t.Fatal(err)
	}
	if string(buf) != string(want) || string(buf) != string(data[5000:8000]) {
		t.Error("LoadInto read other bytes than Load")
	}
	if err := li.LoadInto(ctx, h, 8000, buf); err == nil {
		t.Error("LoadInto past the end: no error")
	}
	if err := li.LoadInto(ctx, repo.Handle{Type: repo.PackFile, Name: "ff" + h.Name[2:]}, 0, buf); err == nil {
		t.Error("LoadInto of a missing object: no error")
	}
}
