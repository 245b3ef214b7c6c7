package archiver_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/archiver"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
	"golang.org/x/sys/unix"
)

// The two ways a file gets its one stat: by the walk (when an exclude needs it: here a
// size limit that leaves nothing out), or by its file worker, from the descriptor it
// opened (or an fstatat when the cache knows the file).
var statModes = []struct {
	name string
	opts archiver.Options
}{
	{"stat when opened", archiver.Options{}},
	{"stat in the walk", archiver.Options{ExcludeLargerThan: 1 << 30}},
}

func lstat(t *testing.T, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// node finds the node name in the root tree of res.
func node(t *testing.T, r *repo.Repository, res *archiver.Result, name string) *repo.Node {
	t.Helper()
	tree, err := r.LoadTree(context.Background(), res.Tree)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range tree.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

func content(t *testing.T, r *repo.Repository, n *repo.Node) string {
	t.Helper()
	var b []byte
	for _, id := range n.Content {
		data, err := r.LoadBlob(context.Background(), repo.DataBlob, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		b = append(b, data...)
	}
	return string(b)
}

// A file replaced by another (same size, same mtime: as rsync -t leaves one) between the
// walk and its open is backed up as the file that was read: its node and its file cache
// entry carry the new file's inode and ctime, so the next backup answers it from the
// cache, and a later change to it is seen. Before, the entry paired the old file's inode
// with the new file's content.
func TestFileReplacedBetweenWalkAndOpen(t *testing.T) {
	for _, mode := range statModes {
		t.Run(mode.name, func(t *testing.T) {
			r, _ := testkit.InitRepo(t, t.TempDir(), repo.Options{KDF: testkit.CheapKDF})
			src, spare := t.TempDir(), t.TempDir()
			f := filepath.Join(src, "f")
			mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			testkit.WriteFile(t, f, []byte("old content"), 0o644)
			if err := os.Chtimes(f, mtime, mtime); err != nil {
				t.Fatal(err)
			}
			testkit.WriteFile(t, filepath.Join(src, "g"), []byte("left alone"), 0o644)
			oldIno := lstat(t, f).Ino
			var once sync.Once
			archiver.SetBeforeOpen(t, func(rel string) {
				if rel != "f" {
					return
				}
				once.Do(func() {
					tmp := filepath.Join(spare, "f")
					testkit.WriteFile(t, tmp, []byte("new content"), 0o644)
					if err := os.Chtimes(tmp, mtime, mtime); err != nil {
						t.Error(err)
					}
					if err := os.Rename(tmp, f); err != nil {
						t.Error(err)
					}
				})
			})
			res := run(t, r, src, mode.opts)
			st := lstat(t, f)
			if st.Ino == oldIno {
				t.Fatal("the file system reused the inode; the test cannot tell the files apart")
			}
			n := node(t, r, res, "f")
			if n == nil || content(t, r, n) != "new content" || n.Inode != st.Ino {
				t.Fatalf("node of f: %+v, want the new file's content and inode %d", n, st.Ino)
			}
			c, ok := res.CachePut["f"]
			if !ok || c.Inode != st.Ino || c.ChangeTimeNS != st.Ctim.Nano() || c.Size != st.Size {
				t.Fatalf("cache entry of f: %+v (%v), want inode %d, ctime %d", c, ok, st.Ino, st.Ctim.Nano())
			}

			archiver.SetBeforeOpen(t, nil)
			cache := res.CachePut
			second := run(t, r, src, withCache(mode.opts, cache))
			if second.FilesUnchanged != 2 || second.BytesRead != 0 {
				t.Errorf("second run: %d unchanged, %d bytes read; want both files from the cache", second.FilesUnchanged, second.BytesRead)
			}
		})
	}
}

func withCache(opts archiver.Options, cache map[string]state.CachedFile) archiver.Options {
	opts.LoadCache = func() (map[string]state.CachedFile, error) { return cache, nil }
	return opts
}

// A change to a file is seen whichever way it was stat'ed: new content of the same size
// with the mtime put back (only the ctime tells), a file replaced by a copy with the
// same size and times (a new inode), a size change; the files left alone are answered
// from the cache.
func TestChangesSeenWithOneStat(t *testing.T) {
	for _, mode := range statModes {
		t.Run(mode.name, func(t *testing.T) {
			r, _ := testkit.InitRepo(t, t.TempDir(), repo.Options{KDF: testkit.CheapKDF})
			src, spare := t.TempDir(), t.TempDir()
			mtime := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
			for _, name := range []string{"ctime", "inode", "size", "same1", "same2"} {
				p := filepath.Join(src, name)
				testkit.WriteFile(t, p, []byte("content of "+name), 0o644)
				if err := os.Chtimes(p, mtime, mtime); err != nil {
					t.Fatal(err)
				}
			}
			first := run(t, r, src, mode.opts)
			if first.FilesNew != 5 || len(first.CachePut) != 5 {
				t.Fatalf("first run: %d new, %d cache entries; want 5", first.FilesNew, len(first.CachePut))
			}
			time.Sleep(20 * time.Millisecond) // a ctime the clock tells from the first one's

			p := filepath.Join(src, "ctime")
			testkit.WriteFile(t, p, []byte("CONTENT OF ctime"), 0o644)
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(spare, "inode")
			testkit.WriteFile(t, tmp, []byte("CONTENT OF inode"), 0o644)
			if err := os.Chtimes(tmp, mtime, mtime); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(src, "inode")); err != nil {
				t.Fatal(err)
			}
			p = filepath.Join(src, "size")
			testkit.WriteFile(t, p, []byte("content of size, longer"), 0o644)
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}

			second := run(t, r, src, withCache(mode.opts, first.CachePut))
			if second.FilesChanged != 3 || second.FilesUnchanged != 2 {
				t.Fatalf("second run: %d changed, %d unchanged; want 3 and 2", second.FilesChanged, second.FilesUnchanged)
			}
			if got := sortedKeys(second.CachePut); !slices.Equal(got, []string{"ctime", "inode", "size"}) {
				t.Errorf("second run put cache entries %q, want the three changed files", got)
			}
			for name, want := range map[string]string{"ctime": "CONTENT OF ctime", "inode": "CONTENT OF inode", "size": "content of size, longer", "same1": "content of same1"} {
				if n := node(t, r, second, name); n == nil || content(t, r, n) != want {
					t.Errorf("%s: snapshot holds %q, want %q", name, content(t, r, n), want)
				}
			}
		})
	}
}

// A file that turns into a FIFO (or a symlink) between the walk and its open is left
// out with a warning, and the archiver neither waits on the FIFO nor follows the link.
func TestFileTurnedIntoFIFOOrSymlink(t *testing.T) {
	for _, mode := range statModes {
		t.Run(mode.name, func(t *testing.T) {
			r, _ := testkit.InitRepo(t, t.TempDir(), repo.Options{KDF: testkit.CheapKDF})
			src := t.TempDir()
			testkit.WriteFile(t, filepath.Join(src, "fifo"), []byte("a file for now"), 0o644)
			testkit.WriteFile(t, filepath.Join(src, "link"), []byte("a file for now"), 0o644)
			testkit.WriteFile(t, filepath.Join(src, "kept"), []byte("kept"), 0o644)
			archiver.SetBeforeOpen(t, func(rel string) {
				p := filepath.Join(src, rel)
				switch rel {
				case "fifo":
					if err := os.Remove(p); err != nil {
						t.Error(err)
					}
					mkfifo(t, p)
				case "link":
					if err := os.Remove(p); err != nil {
						t.Error(err)
					}
					if err := os.Symlink("kept", p); err != nil {
						t.Error(err)
					}
				}
			})
			res := run(t, r, src, mode.opts)
			if got := files(treePaths(t, r, res.Tree, "")); !slices.Equal(got, []string{"kept"}) || res.Files != 1 {
				t.Fatalf("snapshot holds %q (%d files), want only kept", got, res.Files)
			}
			for _, name := range []string{"fifo", "link"} {
				if !slices.ContainsFunc(res.Warnings, func(w string) bool {
					return strings.Contains(w, filepath.Join(src, name)) && strings.Contains(w, "no longer a regular file")
				}) {
					t.Errorf("no warning that %s is no longer a regular file: %q", name, res.Warnings)
				}
			}
		})
	}
}

// Files are opened relative to their directory's descriptor, which stays open until its
// last file is read; past the bound on such descriptors, by their full path. Either way
// every file, hard link and symlink is in the snapshot, and no descriptor is left open.
func TestDirectoryDescriptorsBounded(t *testing.T) {
	for _, bound := range []int64{256, 2, 0} {
		t.Run(fmt.Sprint(bound), func(t *testing.T) {
			archiver.SetMaxDirFDs(t, bound)
			r, _ := testkit.InitRepo(t, t.TempDir(), repo.Options{KDF: testkit.CheapKDF})
			src := t.TempDir()
			var want []string
			for d := range 40 {
				for f := range 3 {
					rel := fmt.Sprintf("d%02d/f%d", d, f)
					testkit.WriteFile(t, filepath.Join(src, rel), []byte(rel), 0o644)
					want = append(want, rel)
				}
			}
			if err := os.Link(filepath.Join(src, "d00/f0"), filepath.Join(src, "d39/hard")); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink("../d00/f0", filepath.Join(src, "d20/sym")); err != nil {
				t.Fatal(err)
			}
			want = append(want, "d39/hard", "d20/sym")
			slices.Sort(want)
			arch := archiver.New(testkit.StartWriter(t, r), src, archiver.Options{Workers: 4})
			res, err := arch.Run(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := files(treePaths(t, r, res.Tree, "")); !slices.Equal(got, want) {
				t.Fatalf("snapshot holds %d files, want %d: %q", len(got), len(want), got)
			}
			if n := archiver.DirFDs(arch); n != 0 {
				t.Errorf("%d directory descriptors open after Run, want 0", n)
			}
			if len(res.Warnings) != 0 {
				t.Errorf("warnings: %q", res.Warnings)
			}
		})
	}
}
