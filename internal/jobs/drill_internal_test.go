package jobs

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/fsio"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestDrillCheckFindsEveryDifference runs the drill's check on a restored copy that was
// changed after the restore, in every way the check looks for.
func TestDrillCheckFindsEveryDifference(t *testing.T) {
	ctx := context.Background()
	r, _ := testkit.InitRepo(t, t.TempDir(), repo.Options{KDF: testkit.CheapKDF})
	e := &Engine{Repos: map[string]*repo.Repository{"local": r}, Host: "h"}

	src := t.TempDir()
	write := func(rel, data string, mode os.FileMode) {
		testkit.WriteFile(t, filepath.Join(src, rel), []byte(data), mode)
	}
	write("same.txt", "unchanged", 0o644)
	write("edited.txt", "the original text", 0o644)
	write("gone.txt", "deleted after the restore", 0o644)
	write("chmod.txt", "mode changed", 0o644)
	write("retyped", "a file, replaced by a directory", 0o644)
	write("dir/inner.txt", "inner", 0o644)
	write("a", "hard linked", 0o644)
	if err := os.Link(filepath.Join(src, "a"), filepath.Join(src, "b")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("same.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	res, err := e.Backup(ctx, "b1", brr.BackupJob{Path: src}, nil)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := r.FindSnapshot(ctx, res.Snapshot, "", nil)
	if err != nil {
		t.Fatal(err)
	}

	check := func(mutate func(dir string)) []string {
		t.Helper()
		dir := filepath.Join(t.TempDir(), "copy")
		if _, err := e.Restore(ctx, "r", brr.RestoreJob{Snapshot: res.Snapshot, Target: dir}, nil); err != nil {
			t.Fatal(err)
		}
		mutate(dir)
		c := &drillCheck{r: r, root: dir, links: make(map[devIno]linkSeen), failed: map[string]bool{}}
		var err error
		if c.copy, err = fsio.OpenRoot(dir); err != nil {
			t.Fatal(err)
		}
		defer c.copy.Close()
		var files []fileCheck
		if err := c.walk(ctx, sn.Tree, "", &files); err != nil {
			t.Fatal(err)
		}
		if err := c.contents(ctx, files, 2); err != nil {
			t.Fatal(err)
		}
		slices.Sort(c.problems)
		return c.problems
	}

	if got := check(func(string) {}); len(got) != 0 {
		t.Fatalf("problems in an untouched copy: %q", got)
	}
	got := check(func(dir string) {
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}
		p := func(rel string) string { return filepath.Join(dir, rel) }
		// The same size, other bytes: only the content hash tells.
		must(os.WriteFile(p("edited.txt"), []byte("the 0riginal text"), 0o644))
		must(os.Remove(p("gone.txt")))
		must(os.Chmod(p("chmod.txt"), 0o600))
		must(os.Remove(p("retyped")))
		must(os.Mkdir(p("retyped"), 0o755))
		must(os.WriteFile(p("dir/extra.txt"), []byte("not in the snapshot"), 0o644))
		must(os.Remove(p("link")))
		must(os.Symlink("elsewhere", p("link")))
		// b is no longer a hard link of a, though its content is the same.
		must(os.Remove(p("b")))
		must(os.WriteFile(p("b"), []byte("hard linked"), 0o644))
	})
	want := []string{
		"/b: not a hard link of \"/a\"",
		"/chmod.txt: mode -rw-------, the snapshot has -rw-r--r--",
		"/dir/extra.txt: in the restored copy but not in the snapshot",
		"/edited.txt: the 17 bytes at offset 0 differ from the snapshot's",
		"/gone.txt: missing from the restored copy",
		"/link: symlink to \"elsewhere\", the snapshot has \"same.txt\"",
		"/retyped: restored as a directory, the snapshot has a file",
	}
	if len(got) != len(want) {
		t.Fatalf("problems:\n%s\nwant %d:\n%s", strings.Join(got, "\n"), len(want), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("problem %d = %q, want it to start with %q", i, got[i], want[i])
		}
	}
}
