package e2e_test

import (
	"bytes"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// writeTree fills dir with files of sizes, a nested directory, a symlink and an empty file.
func writeTree(t *testing.T, dir string, seed uint64, sizes ...int) {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(dir, "nested", "deeper"), 0o755))
	for i, size := range sizes {
		data := make([]byte, size)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		sub := dir
		if i%2 == 1 {
			sub = filepath.Join(dir, "nested")
		}
		must(os.WriteFile(filepath.Join(sub, "file-"+string(rune('a'+i%26))+".bin"), data, 0o640))
	}
	must(os.WriteFile(filepath.Join(dir, "nested", "deeper", "notes.txt"), bytes.Repeat([]byte("brr backs up\n"), 1000), 0o600))
	must(os.WriteFile(filepath.Join(dir, "empty"), nil, 0o644))
	must(os.Symlink("nested/deeper/notes.txt", filepath.Join(dir, "link")))
}

// sameTree fails the test unless got has the same entries, contents, permissions and
// symlink targets as want.
func sameTree(t *testing.T, want, got string) {
	t.Helper()
	count := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		other := filepath.Join(got, rel)
		wi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		gi, err := os.Lstat(other)
		if err != nil {
			t.Errorf("%s: missing in restore: %v", rel, err)
			return nil
		}
		if wi.Mode() != gi.Mode() {
			t.Errorf("%s: mode %v, want %v", rel, gi.Mode(), wi.Mode())
		}
		switch {
		case wi.Mode()&fs.ModeSymlink != 0:
			wl, _ := os.Readlink(p)
			gl, _ := os.Readlink(other)
			if wl != gl {
				t.Errorf("%s: link %q, want %q", rel, gl, wl)
			}
		case wi.Mode().IsRegular():
			wd, _ := os.ReadFile(p)
			gd, _ := os.ReadFile(other)
			if !bytes.Equal(wd, gd) {
				t.Errorf("%s: content differs (%d bytes, want %d)", rel, len(gd), len(wd))
			}
			if !wi.ModTime().Equal(gi.ModTime()) {
				t.Errorf("%s: mtime %v, want %v", rel, gi.ModTime(), wi.ModTime())
			}
		}
		count++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count < 2 {
		t.Fatalf("compared only %d entries", count)
	}
}
