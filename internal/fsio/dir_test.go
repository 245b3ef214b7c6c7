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

// ReadDirTypes gives the names ReadDir gives, sorted, each with its type from the
// listing: what lets a walk leave out the lstat of a regular file.
func TestReadDirTypes(t *testing.T) {
	dir := t.TempDir()
	want := map[string]uint8{}
	for i := range 1500 { // more than one buffer of entries
		name := fmt.Sprintf("f%04d-%s", 1499-i, "a long name so that the entries fill the buffer")
		if err := os.WriteFile(filepath.Join(dir, name), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		want[name] = TypeRegular
	}
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	want["sub"] = TypeDir
	if err := os.Symlink("sub", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	want["link"] = TypeSymlink
	if err := unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	want["fifo"] = unix.DT_FIFO

	fd, names, types, err := ReadDirTypes(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	pfd, plain, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(pfd)
	if !slices.Equal(names, plain) || len(types) != len(names) || len(names) != len(want) {
		t.Fatalf("ReadDirTypes: %d names, %d types; ReadDir: %d names; want %d", len(names), len(types), len(plain), len(want))
	}
	for i, name := range names {
		// A file system may not say (TypeUnknown); ext4 and tmpfs do.
		if types[i] != want[name] && types[i] != TypeUnknown {
			t.Errorf("%s: type %d, want %d", name, types[i], want[name])
		}
	}
	if _, _, _, err := ReadDirTypes(filepath.Join(dir, "link")); err == nil {
		t.Fatalf("ReadDirTypes followed a symlink")
	}
}

// ReadDir does not build the types slice that only ReadDirTypes returns: it allocates
// less than ReadDirTypes for the same listing.
func TestReadDirAllocatesNoTypes(t *testing.T) {
	dir := t.TempDir()
	for i := range 100 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%03d", i)), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	list := func(read func(string) (int, error)) float64 {
		return testing.AllocsPerRun(1000, func() {
			fd, err := read(dir)
			if err != nil {
				t.Fatal(err)
			}
			unix.Close(fd)
		})
	}
	names := list(func(p string) (int, error) { fd, _, err := ReadDir(p); return fd, err })
	typed := list(func(p string) (int, error) { fd, _, _, err := ReadDirTypes(p); return fd, err })
	if names >= typed {
		t.Errorf("ReadDir allocates %v times a listing, ReadDirTypes %v: want fewer (no types slice)", names, typed)
	}
}
