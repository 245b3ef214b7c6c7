package fsio

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// A Root reaches what is below it through directories, never through a symlink, whether
// the kernel resolves the path (openat2) or the Root walks it a component at a time.
func TestRootNeverFollowsASymlink(t *testing.T) {
	for _, walk := range []bool{false, true} {
		t.Run(fmt.Sprintf("walk=%v", walk), func(t *testing.T) {
			dir, outside := t.TempDir(), t.TempDir()
			must(t, os.MkdirAll(filepath.Join(dir, "a", "b"), 0o755))
			must(t, os.WriteFile(filepath.Join(dir, "a", "b", "f"), []byte("x"), 0o644))
			must(t, os.Symlink(outside, filepath.Join(dir, "link")))
			must(t, os.Symlink("b", filepath.Join(dir, "a", "inner")))
			r, err := OpenRoot(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			r.walk.Store(walk)

			mkdir := func(rel string) error {
				return r.At(rel, func(dirfd int, name string) error { return unix.Mkdirat(dirfd, name, 0o700) })
			}
			must(t, mkdir("a/b/c"))
			for _, rel := range []string{"link/x", "link/x/y", "a/inner/x", "a/b/f/x"} {
				if err := mkdir(rel); !errors.Is(err, ErrNotDir) {
					t.Errorf("mkdir %s: %v, want ErrNotDir", rel, err)
				}
			}
			if names, err := os.ReadDir(outside); err != nil || len(names) != 0 {
				t.Fatalf("outside: %v, %v; want it empty", names, err)
			}
			names, err := r.ReadDir("a/b")
			if err != nil || !slices.Equal(names, []string{"c", "f"}) {
				t.Errorf("ReadDir(a/b) = %q, %v", names, err)
			}
			if _, err := r.ReadDir("link"); !errors.Is(err, ErrNotDir) {
				t.Errorf("ReadDir(link): %v, want ErrNotDir", err)
			}
			// The root's own entries are named relative to its descriptor.
			err = r.At("link", func(dirfd int, name string) error {
				st, err := Lstatat(dirfd, name)
				if err == nil && st.Mode&unix.S_IFMT != unix.S_IFLNK {
					err = fmt.Errorf("mode %o, want a symlink", st.Mode)
				}
				return err
			})
			must(t, err)
			// Chmodat changes a directory, and refuses a symlink.
			must(t, r.At("a/b/c", func(dirfd int, name string) error { return Chmodat(dirfd, name, 0o750) }))
			if fi, _ := os.Stat(filepath.Join(dir, "a", "b", "c")); fi.Mode().Perm() != 0o750 {
				t.Errorf("mode of a/b/c = %v, want 0750", fi.Mode().Perm())
			}
			must(t, os.Chmod(outside, 0o755))
			if err := r.At("link", func(dirfd int, name string) error { return Chmodat(dirfd, name, 0o700) }); err == nil {
				t.Errorf("Chmodat of a symlink succeeded")
			}
			if fi, _ := os.Stat(outside); fi.Mode().Perm() != 0o755 {
				t.Errorf("Chmodat followed the symlink: outside has mode %v", fi.Mode().Perm())
			}
		})
	}
}

// OpenRoot and MkdirAll follow no symlink on the way to the directory.
func TestOpenRootRefusesSymlinks(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	must(t, os.Symlink(outside, filepath.Join(dir, "link")))
	if _, err := OpenRoot(filepath.Join(dir, "link")); !errors.Is(err, ErrNotDir) {
		t.Errorf("OpenRoot of a symlink: %v, want ErrNotDir", err)
	}
	if err := MkdirAll(filepath.Join(dir, "link", "a", "b"), 0o755); !errors.Is(err, ErrNotDir) {
		t.Errorf("MkdirAll through a symlink: %v, want ErrNotDir", err)
	}
	if names, _ := os.ReadDir(outside); len(names) != 0 {
		t.Errorf("MkdirAll wrote %d entries through a symlink", len(names))
	}
	must(t, MkdirAll(filepath.Join(dir, "x", "y", "z"), 0o755))
	r, err := OpenRoot(filepath.Join(dir, "x", "y", "z"))
	if err != nil {
		t.Fatal(err)
	}
	must(t, r.Close())
	if _, err := OpenRoot("relative/path"); err == nil {
		t.Errorf("OpenRoot of a relative path succeeded")
	}
}

// Directories evicted from the cache stay open while in use, and are closed after: many
// goroutines working in more directories than the cache holds each see their own.
func TestRootCacheEviction(t *testing.T) {
	dir := t.TempDir()
	const dirs = 3 * dirCacheSize
	for i := range dirs {
		must(t, os.MkdirAll(filepath.Join(dir, fmt.Sprintf("d%03d", i), "sub"), 0o755))
	}
	r, err := OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range dirs {
				rel := fmt.Sprintf("d%03d/sub/f%d", (i*7+g)%dirs, g)
				err := r.At(rel, func(dirfd int, name string) error {
					fd, err := unix.Openat(dirfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o600)
					if err == nil {
						unix.Close(fd)
					}
					return err
				})
				if err != nil {
					t.Errorf("%s: %v", rel, err)
				}
			}
		}()
	}
	wg.Wait()
	if n := len(r.dirs); n > dirCacheSize {
		t.Errorf("%d directories cached, want at most %d", n, dirCacheSize)
	}
	must(t, r.Close())
	for i := range dirs {
		names, _ := os.ReadDir(filepath.Join(dir, fmt.Sprintf("d%03d", i), "sub"))
		if len(names) != 8 {
			t.Fatalf("d%03d/sub has %d files, want 8", i, len(names))
		}
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
