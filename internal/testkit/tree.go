package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// WriteFile writes data to path with mode exactly (the umask does not narrow it),
// creating the parent directories first.
func WriteFile(t testing.TB, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// Tree is a source tree for WriteTree to write.
type Tree struct {
	// Seed chooses the content: the same seed writes the same bytes.
	Seed uint64
	// Sizes are the sizes of files of random bytes; every other one is in a subdirectory.
	Sizes []int
	// Small is a number of more files of 4 KiB in the subdirectory, for a tree of many
	// files.
	Small int
}

// WriteTree fills dir with tree's files and, besides, a text file two directories down,
// an empty file and a symlink; it returns the bytes written. Over a tree it wrote before,
// it writes the files again with the new content.
func WriteTree(t testing.TB, dir string, tree Tree) int64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(tree.Seed, tree.Seed))
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	var total int64
	write := func(rel string, data []byte, mode os.FileMode) {
		t.Helper()
		must(os.WriteFile(filepath.Join(dir, rel), data, mode))
		total += int64(len(data))
	}
	random := func(size int) []byte {
		data := make([]byte, size)
		for i := 0; i < len(data); i += 8 {
			v := rng.Uint64()
			for k := 0; k < 8 && i+k < len(data); k++ {
				data[i+k] = byte(v >> (8 * k))
			}
		}
		return data
	}

	must(os.MkdirAll(filepath.Join(dir, "nested", "deeper"), 0o755))
	for i, size := range tree.Sizes {
		name := fmt.Sprintf("file-%d.bin", i)
		if i%2 == 1 {
			name = filepath.Join("nested", name)
		}
		write(name, random(size), 0o640)
	}
	for i := range tree.Small {
		write(filepath.Join("nested", fmt.Sprintf("small-%03d", i)), random(4<<10), 0o640)
	}
	write(filepath.Join("nested", "deeper", "notes.txt"), bytes.Repeat([]byte("brr backs up\n"), 1000), 0o600)
	write("empty", nil, 0o644)
	link := filepath.Join(dir, "link")
	if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	must(os.Symlink("nested/deeper/notes.txt", link))
	return total
}

// SameTree fails the test unless got has the same entries, contents, permissions,
// modification times and symlink targets as want: a restore that is whole.
func SameTree(t testing.TB, want, got string) {
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

// FlipByte flips one bit of the byte at off in the file at path, in place: damage of the
// kind a disk or a bad copy does.
func FlipByte(t testing.TB, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}
