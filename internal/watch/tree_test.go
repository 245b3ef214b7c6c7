package watch

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr/internal/testkit"
)

// TestTreeKeep checks which paths are part of a watched tree: not the worker's own
// paths, not what the source's patterns exclude, nothing outside the root.
func TestTreeKeep(t *testing.T) {
	root := t.TempDir()
	tr, err := openTree(Source{Name: "app", Path: root, Excludes: []string{"*.log", "node_modules/", "/build"},
		Ignore: []string{filepath.Join(root, ".brr"), "/var/lib/brr", root}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	tests := []struct {
		rel   string
		isDir bool
		want  bool
	}{
		{"", true, true},
		{"a.txt", false, true},
		{"src/main.go", false, true},
		{"app.log", false, false},
		{"logs/app.log", false, false},
		{"node_modules", true, false},
		{"node_modules", false, true}, // a file of that name: the pattern is for directories
		{"build", true, false},
		{"src/build", true, true}, // anchored at the top
		{".brr", true, false},
		{".brr/state.db", false, false},
		{".brrx", false, true},
	}
	for _, tt := range tests {
		path := filepath.Join(root, tt.rel)
		if got := tr.keep(path, tt.isDir); got != tt.want {
			t.Errorf("keep(%q, dir=%v) = %v, want %v", tt.rel, tt.isDir, got, tt.want)
		}
	}
	if tr.keep(filepath.Dir(root), true) || tr.keep(root+"x/a", false) {
		t.Error("keep takes a path outside the root")
	}
}

// TestTreeSQLiteEvents checks which events of a database's directory are changes: writes
// to the database and its journals, the database made, replaced or removed; not the
// journals made or removed empty (a reader does that), nor the -shm, nor other files.
func TestTreeSQLiteEvents(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	tr, err := openTree(Source{Name: "db", SQLite: db}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	tests := []struct {
		name string
		op   fsnotify.Op
		want bool
	}{
		{"app.db", fsnotify.Write, true},
		{"app.db", fsnotify.Create, true},
		{"app.db", fsnotify.Rename, true},
		{"app.db", fsnotify.Remove, true},
		{"app.db", fsnotify.Chmod, false},
		{"app.db-wal", fsnotify.Write, true},
		{"app.db-wal", fsnotify.Create, false},
		{"app.db-wal", fsnotify.Remove, false},
		{"app.db-journal", fsnotify.Write, true},
		{"app.db-shm", fsnotify.Write, false},
		{"other.db", fsnotify.Write, false},
		{"app.db.bak", fsnotify.Create, false},
	}
	for _, tt := range tests {
		if got := tr.event(fsnotify.Event{Name: filepath.Join(dir, tt.name), Op: tt.op}); got != tt.want {
			t.Errorf("event(%s %s) = %v, want %v", tt.op, tt.name, got, tt.want)
		}
	}
}

// TestTreeWatchesNewDirectories makes directories in a watched tree, nested, and checks
// that a write deep inside them is seen, that the worker's own directory and an excluded
// one are not watched, and that a renamed directory is watched under its new name only.
func TestTreeWatchesNewDirectories(t *testing.T) {
	root := t.TempDir()
	own := filepath.Join(root, "data")
	tr, err := openTree(Source{Name: "app", Path: root, Excludes: []string{"node_modules/"}, Ignore: []string{own}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	// changed waits for an event on path that tr takes as a change; it fails after a
	// while.
	changed := func(path string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case ev := <-tr.fsw.Events:
				if tr.event(ev) && ev.Name == path {
					return
				}
			case err := <-tr.fsw.Errors:
				t.Fatalf("inotify: %v", err)
			case <-deadline:
				t.Fatalf("no change reported for %s (watched: %v)", path, sortedDirs(tr))
			}
		}
	}
	deep := filepath.Join(root, "a", "b", "c")
	if err := os.MkdirAll(deep, 0o755); err != nil {
		t.Fatal(err)
	}
	changed(filepath.Join(root, "a"))
	for _, p := range []string{own, filepath.Join(root, "node_modules", "x")} {
		if err := os.MkdirAll(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// The events of the directories above are read on the way to this one.
	testkit.WriteFile(t, filepath.Join(deep, "f.txt"), []byte("1"), 0o644)
	changed(filepath.Join(deep, "f.txt"))
	for _, d := range []string{root, filepath.Join(root, "a"), filepath.Join(root, "a", "b"), deep} {
		if !tr.dirs[d] {
			t.Errorf("%s is not watched", d)
		}
	}
	for _, d := range []string{own, filepath.Join(root, "node_modules")} {
		if tr.dirs[d] {
			t.Errorf("%s is watched; it should not be", d)
		}
	}

	if err := os.Rename(filepath.Join(root, "a"), filepath.Join(root, "z")); err != nil {
		t.Fatal(err)
	}
	changed(filepath.Join(root, "z"))
	testkit.WriteFile(t, filepath.Join(root, "z", "b", "c", "g.txt"), []byte("2"), 0o644)
	changed(filepath.Join(root, "z", "b", "c", "g.txt"))
	for d := range tr.dirs {
		if strings.HasPrefix(d, filepath.Join(root, "a")) {
			t.Errorf("%s is still watched after its rename", d)
		}
	}
}

// TestTreeScan checks the rescan: it counts what changed after a time by the ctime, and
// watches the directories it finds without a watch.
func TestTreeScan(t *testing.T) {
	root := t.TempDir()
	testkit.WriteFile(t, filepath.Join(root, "old.txt"), []byte("old"), 0o644)
	tr, err := openTree(Source{Name: "app", Path: root, Excludes: []string{"*.log"}}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer tr.close()
	// File times come from the kernel's coarse clock, a tick behind.
	time.Sleep(20 * time.Millisecond)
	mark := time.Now()
	time.Sleep(20 * time.Millisecond)
	if n, err := tr.scan(mark); err != nil || n != 0 {
		t.Fatalf("scan of an unchanged tree = %d, %v; want 0", n, err)
	}
	// A directory whose creation the watch missed (its watch dropped here by hand).
	sub := filepath.Join(root, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(sub, "new.txt"), []byte("new"), 0o644)
	testkit.WriteFile(t, filepath.Join(root, "x.log"), []byte("excluded"), 0o644)
	_ = tr.fsw.Remove(sub)
	delete(tr.dirs, sub)
	n, err := tr.scan(mark)
	if err != nil {
		t.Fatal(err)
	}
	// The root (an entry added), sub and sub/new.txt; not x.log.
	if got, want := n, 3; got != want {
		t.Errorf("scan found %d changes, want %d", got, want)
	}
	if !tr.dirs[sub] {
		t.Error("scan did not watch the directory it found unwatched")
	}
	if n, _ := tr.scan(time.Time{}); n != 0 {
		t.Errorf("scan since the zero time = %d, want 0: it only watches", n)
	}
}

func sortedDirs(tr *tree) []string {
	var out []string
	for d := range tr.dirs {
		out = append(out, d)
	}
	return out
}
