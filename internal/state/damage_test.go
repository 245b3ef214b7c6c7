package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.etcd.io/bbolt"
)

// TestOpenTruncated opens a state database cut in half, as a full disk or a bad copy
// leaves it. It used to crash the worker with SIGBUS (bbolt maps the file and reads pages
// past its end); now Open says the file is damaged, and MoveAside keeps it for
// inspection so that a fresh one can be opened.
func TestOpenTruncated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	db, err := Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	put := make(map[string]CachedFile)
	for i := range 20000 {
		put[fmt.Sprintf("dir/file-%06d", i)] = CachedFile{Size: int64(i), Content: [][32]byte{{byte(i)}, {byte(i >> 8)}}}
	}
	if err := db.UpdateFileCache("scope", put, nil); err != nil {
		t.Fatal(err)
	}
	var used int64 // bbolt grows the file ahead of the pages it uses
	if err := db.bolt.View(func(tx *bbolt.Tx) error { used = tx.Size(); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{used / 2, used - 4096, 4096 + 100, 10} {
		cut := filepath.Join(dir, fmt.Sprintf("cut-%d.db", size))
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(cut, data[:size], 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := Open(cut, Options{})
		if err == nil {
			db.Close()
			t.Fatalf("Open of a state database cut to %d of %d bytes succeeded", size, used)
		}
		if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), cut) {
			t.Fatalf("Open of a database cut to %d bytes: %v; want ErrDamaged naming the file", size, err)
		}
		aside, err := MoveAside(cut)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(aside); err != nil {
			t.Fatalf("damaged file not kept at %s: %v", aside, err)
		}
		db, err = Open(cut, Options{})
		if err != nil {
			t.Fatalf("Open after MoveAside: %v", err)
		}
		if files, err := db.LoadFileCache("scope"); err != nil || len(files) != 0 {
			t.Fatalf("fresh database has %d cached files, %v", len(files), err)
		}
		db.Close()
	}
}
