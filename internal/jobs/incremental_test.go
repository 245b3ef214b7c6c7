package jobs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
)

var _ jobs.FileCache = (*state.DB)(nil)

func openState(t testing.TB) *state.DB {
	t.Helper()
	db, err := state.Open(filepath.Join(t.TempDir(), "state.db"), state.Options{})
	if err != nil {
		t.Fatalf("open state: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func TestIncrementalBackupReadsOnlyChanges(t *testing.T) {
	b := setup(t)
	db := openState(t)
	b.engine.Cache = db
	src := t.TempDir()
	for i := range 20 {
		testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("dir%d", i%3), fmt.Sprintf("f%02d", i)), randomBytes(uint64(100+i), 10<<10*(i+1)), 0o644)
	}
	testkit.WriteFile(t, filepath.Join(src, "big"), randomBytes(99, 5<<20), 0o644)
	if err := os.Link(filepath.Join(src, "big"), filepath.Join(src, "big-link")); err != nil {
		t.Fatal(err)
	}

	first := backup(t, b.engine, "inc-1", src)
	if first.FilesNew != 22 || first.Files != 22 || first.FilesUnchanged != 0 {
		t.Errorf("first: new %d, unchanged %d, files %d; want 22, 0, 22", first.FilesNew, first.FilesUnchanged, first.Files)
	}
	if first.BytesRead != 20*21/2*10<<10+5<<20 {
		t.Errorf("first BytesRead = %d, want every file's bytes once", first.BytesRead)
	}

	second := backup(t, b.engine, "inc-2", src)
	if second.BytesRead != 0 {
		t.Errorf("unchanged re-backup read %d bytes, want 0", second.BytesRead)
	}
	if second.FilesUnchanged != second.Files || second.Files != 22 {
		t.Errorf("unchanged re-backup: FilesUnchanged = %d, Files = %d, want 22 and 22", second.FilesUnchanged, second.Files)
	}
	if second.Parent != first.Snapshot {
		t.Errorf("Parent = %q, want %q", second.Parent, first.Snapshot)
	}
	if second.BytesAdded > 64<<10 {
		t.Errorf("unchanged re-backup added %d bytes, want only trees at most", second.BytesAdded)
	}

	// Change one file, add one, remove one.
	testkit.WriteFile(t, filepath.Join(src, "dir0", "f00"), []byte("changed"), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "dir1", "new"), []byte("new file"), 0o644)
	if err := os.Remove(filepath.Join(src, "dir2", "f02")); err != nil {
		t.Fatal(err)
	}
	third := backup(t, b.engine, "inc-3", src)
	if third.FilesChanged != 1 || third.FilesNew != 1 || third.FilesUnchanged != 20 || third.Files != 22 {
		t.Errorf("third: changed %d new %d unchanged %d files %d, want 1, 1, 20, 22", third.FilesChanged, third.FilesNew, third.FilesUnchanged, third.Files)
	}
	if third.BytesRead != int64(len("changed")+len("new file")) {
		t.Errorf("third BytesRead = %d, want only the changed and new files", third.BytesRead)
	}
	cache, err := db.LoadFileCache(jobs.CacheScope(b.repo, src))
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cache["dir2/f02"]; ok {
		t.Errorf("the file cache still has the removed dir2/f02")
	}
	if _, ok := cache["dir1/new"]; !ok {
		t.Errorf("the file cache has no entry for the new dir1/new")
	}

	target := filepath.Join(t.TempDir(), "out")
	restore(t, b.engine, third.Snapshot, target)
	compareTrees(t, src, target)
}

func TestFileCacheIgnoresBlobsTheRepoLacks(t *testing.T) {
	// A cache filled against one repository must not make another skip files: the scope
	// holds the repo id, and a cached blob the repo lacks means the file is read.
	b := setup(t)
	db := openState(t)
	b.engine.Cache = db
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "f"), randomBytes(5, 100<<10), 0o644)
	backup(t, b.engine, "scope-1", src)

	other := setup(t)
	other.engine.Cache = db
	res := backup(t, other.engine, "scope-2", src)
	if res.BytesRead != 100<<10 || res.FilesNew != 1 {
		t.Fatalf("first backup into another repo: read %d, new %d; want the file read", res.BytesRead, res.FilesNew)
	}
	// Same scope, but the cache points at blobs this repo does not have.
	cache, _ := db.LoadFileCache(jobs.CacheScope(b.repo, src))
	if err := db.UpdateFileCache(jobs.CacheScope(other.repo, src), cache, nil); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(src, "f"), randomBytes(6, 100<<10), 0o644)
	backup(t, b.engine, "scope-3", src) // the cache of b's scope now has blobs other lacks
	cache, _ = db.LoadFileCache(jobs.CacheScope(b.repo, src))
	if err := db.UpdateFileCache(jobs.CacheScope(other.repo, src), cache, nil); err != nil {
		t.Fatal(err)
	}
	res = backup(t, other.engine, "scope-4", src)
	if res.BytesRead != 100<<10 {
		t.Fatalf("backup with cached blobs the repo lacks read %d bytes, want the whole file", res.BytesRead)
	}
	target := filepath.Join(t.TempDir(), "out")
	restore(t, other.engine, res.Snapshot, target)
	compareTrees(t, src, target)
}
