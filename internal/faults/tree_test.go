package faults_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
)

// writeTree fills dir with random files of sizes (every other one in a subdirectory)
// and small files of 4 KiB, and returns the bytes written.
func writeTree(t *testing.T, dir string, seed uint64, small int, sizes ...int) int64 {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed))
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	var total int64
	write := func(name string, size int) {
		data := make([]byte, size)
		for i := 0; i+8 <= len(data); i += 8 {
			v := rng.Uint64()
			for k := range 8 {
				data[i+k] = byte(v >> (8 * k))
			}
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o640); err != nil {
			t.Fatal(err)
		}
		total += int64(size)
	}
	for i, size := range sizes {
		name := fmt.Sprintf("file-%d.bin", i)
		if i%2 == 1 {
			name = filepath.Join("sub", name)
		}
		write(name, size)
	}
	for i := range small {
		write(filepath.Join("sub", fmt.Sprintf("small-%03d", i)), 4<<10)
	}
	return total
}

// checkRestored fails t unless every regular file under got is whole: the same content
// as the file of the same name under want. It returns the files and bytes found; a file
// of want that is missing from got is not an error (a failed restore may leave it out).
func checkRestored(t *testing.T, want, got string) (files int, size int64) {
	t.Helper()
	err := filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, _ := filepath.Rel(got, p)
		gd, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		wd, err := os.ReadFile(filepath.Join(want, rel))
		if err != nil {
			t.Errorf("%s: in the target but not in the source (a temporary file left behind?): %v", rel, err)
			return nil
		}
		if !bytes.Equal(gd, wd) {
			t.Errorf("%s: partial or wrong content: %d bytes, want %d", rel, len(gd), len(wd))
		}
		files++
		size += int64(len(gd))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files, size
}
