package fsio

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// ReadDir lists every name once, sorted, however many reads of the directory that takes,
// and gives a descriptor to stat and read the entries by.
func TestReadDir(t *testing.T) {
	dir := t.TempDir()
	var want []string
	for i := range 2000 { // more than one buffer of entries
		name := fmt.Sprintf("f%04d-%s", 1999-i, "a long name so that the entries fill the buffer")
		want = append(want, name)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	linked := want[0]
	if err := os.Symlink(linked, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	want = append(want, "link")
	slices.Sort(want)

	fd, names, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if !slices.Equal(names, want) {
		t.Fatalf("ReadDir: %d names, want %d, sorted", len(names), len(want))
	}
	target, err := Readlinkat(fd, "link", 0)
	if err != nil || target != linked {
		t.Fatalf("Readlinkat = %q, %v; want %q", target, err, linked)
	}
	if _, _, err := ReadDir(filepath.Join(dir, "link")); err == nil {
		t.Fatalf("ReadDir followed a symlink")
	}

	f, err := OpenFile(filepath.Join(dir, want[1]))
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(f)
	got, err := io.ReadAll(Reader(f))
	if err != nil || string(got) != want[1] {
		t.Fatalf("read %q, %v; want %q", got, err, want[1])
	}
	if _, err := OpenFile(filepath.Join(dir, "link")); err == nil {
		t.Fatalf("OpenFile followed a symlink")
	}
}
