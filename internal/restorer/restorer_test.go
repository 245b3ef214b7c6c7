package restorer_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/archiver"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/restorer"
	"github.com/brr-dev/brr/internal/testkit"
)

// snapshotOf archives src into r and returns a snapshot of it (not saved: a plan needs
// only its tree).
func snapshotOf(t *testing.T, r *repo.Repository, src string) *repo.Snapshot {
	t.Helper()
	ctx := context.Background()
	res, err := archiver.New(testkit.StartWriter(t, r), src, archiver.Options{}).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return &repo.Snapshot{Tree: res.Tree, Source: src}
}

// restore restores sn into target (created if need be) and returns the restorer.
func restore(ctx context.Context, t *testing.T, r *repo.Repository, sn *repo.Snapshot, target string) (*restorer.Restorer, error) {
	t.Helper()
	if err := restorer.PrepareTarget(target); err != nil {
		t.Fatal(err)
	}
	pl, err := restorer.NewPlan(ctx, r, sn, nil)
	if err != nil {
		return nil, err
	}
	rs := restorer.New(r, target, restorer.Options{Workers: 2})
	return rs, rs.Run(ctx, pl)
}

// restoreOK is restore that fails the test on an error or a file that failed.
func restoreOK(ctx context.Context, t *testing.T, r *repo.Repository, sn *repo.Snapshot, target string) *restorer.Restorer {
	t.Helper()
	rs, err := restore(ctx, t, r, sn, target)
	if err != nil {
		t.Fatal(err)
	}
	if failures := rs.Failures(); len(failures) != 0 {
		t.Fatalf("restore failed for %q", failures)
	}
	return rs
}

func randomBytes(seed uint64, n int) []byte {
	b := make([]byte, n)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1}).Read(b)
	return b
}

// sameAsSource fails the test where an entry below target differs from the one at the
// same place below src (type and mode, mtime, owner, content), or is there in only one
// of them; and where two files share an inode in one but not in the other.
func sameAsSource(t *testing.T, src, target string) {
	t.Helper()
	inodes := map[[2]uint64]string{} // (source inode, restored inode) → first path
	seen := 0
	err := filepath.WalkDir(src, func(p string, _ fs.DirEntry, err error) error {
		if err != nil || p == src {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		seen++
		want, err := os.Lstat(p)
		if err != nil {
			return err
		}
		got, err := os.Lstat(filepath.Join(target, rel))
		if err != nil {
			t.Errorf("%s: not restored: %v", rel, err)
			return nil
		}
		ws, gs := want.Sys().(*syscall.Stat_t), got.Sys().(*syscall.Stat_t)
		if got.Mode() != want.Mode() || !got.ModTime().Equal(want.ModTime()) || gs.Uid != ws.Uid || gs.Gid != ws.Gid || got.Size() != want.Size() {
			t.Errorf("%s: restored %v %v %d:%d %d bytes, want %v %v %d:%d %d bytes", rel,
				got.Mode(), got.ModTime(), gs.Uid, gs.Gid, got.Size(), want.Mode(), want.ModTime(), ws.Uid, ws.Gid, want.Size())
		}
		if !want.Mode().IsRegular() {
			return nil
		}
		a, _ := os.ReadFile(p)
		b, _ := os.ReadFile(filepath.Join(target, rel))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: content differs", rel)
		}
		for k, other := range inodes {
			if (k[0] == ws.Ino) != (k[1] == gs.Ino) {
				t.Errorf("%s and %s: same inode in the source = %v, restored = %v", rel, other, k[0] == ws.Ino, k[1] == gs.Ino)
			}
		}
		inodes[[2]uint64{ws.Ino, gs.Ino}] = rel
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(entries(t, target, "")); got != seen {
		t.Errorf("%d entries restored, the source has %d", got, seen)
	}
}

// entries lists the paths below root whose name starts with prefix.
func entries(t *testing.T, root, prefix string) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err == nil && p != root && strings.HasPrefix(d.Name(), prefix) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

func noTempFiles(t *testing.T, root string) {
	t.Helper()
	if left := entries(t, root, ".brr-restore-"); len(left) > 0 {
		t.Errorf("temporary files left behind: %q", left)
	}
}

// Files with the same content are restored from one load of each blob, each with its
// own metadata; one that cannot be written fails alone.
func TestRestoreOfCopies(t *testing.T) {
	ctx := context.Background()
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	src := t.TempDir()
	big := randomBytes(11, 9<<20) // several tasks
	small := []byte("the same few bytes")
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)
	for i := range 4 {
		for name, data := range map[string][]byte{"big": big, "small": small} {
			p := filepath.Join(src, fmt.Sprintf("copy%d", i), name)
			testkit.WriteFile(t, p, data, os.FileMode(0o600+0o40*i))
			if err := os.Chtimes(p, mtime, mtime.Add(time.Duration(i)*time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	testkit.WriteFile(t, filepath.Join(src, "sparse"), make([]byte, 5<<20), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "sparse-copy"), make([]byte, 5<<20), 0o644)
	sn := snapshotOf(t, r, src)

	target := filepath.Join(t.TempDir(), "out")
	restoreOK(ctx, t, r, sn, target)
	sameAsSource(t, src, target)
	noTempFiles(t, target)

	// In an existing target, one copy is in the way: it fails, the others are restored.
	target2 := t.TempDir()
	testkit.WriteFile(t, filepath.Join(target2, "copy2", "big"), []byte("local"), 0o644)
	rs, err := restore(ctx, t, r, sn, target2)
	if err != nil {
		t.Fatal(err)
	}
	if failures := rs.Failures(); len(failures) != 1 || !strings.HasPrefix(failures[0], "/copy2/big: ") {
		t.Fatalf("restore with one copy in the way: failures %q, want only /copy2/big to fail", failures)
	}
	if got, _ := os.ReadFile(filepath.Join(target2, "copy2", "big")); string(got) != "local" {
		t.Fatalf("copy2/big = %d bytes, want the local file kept", len(got))
	}
	for _, c := range []string{"copy0", "copy1", "copy3"} {
		if got, _ := os.ReadFile(filepath.Join(target2, c, "big")); !bytes.Equal(got, big) {
			t.Errorf("%s/big: %d bytes, want the snapshot's", c, len(got))
		}
	}
	noTempFiles(t, target2)
}

// A restore cancelled at any point leaves no temporary file behind.
func TestCancelledRestoreLeavesNoTempFiles(t *testing.T) {
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	src := t.TempDir()
	for i := range 6 {
		testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("big%d", i), "data"), randomBytes(uint64(40+i), 6<<20), 0o644)
		for j := range 50 {
			testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("small%d", i), fmt.Sprintf("f%d", j)), randomBytes(uint64(1000*i+j), 3000), 0o644)
		}
	}
	sn := snapshotOf(t, r, src)
	for _, after := range []time.Duration{0, 5 * time.Millisecond, 20 * time.Millisecond, 60 * time.Millisecond} {
		target := filepath.Join(t.TempDir(), "out")
		ctx, cancel := context.WithCancel(context.Background())
		timer := time.AfterFunc(after, cancel)
		_, err := restore(ctx, t, r, sn, target)
		timer.Stop()
		cancel()
		t.Logf("cancelled after %v: %v", after, err)
		noTempFiles(t, target)
	}
}

// The ranges a task writes to a large file have their write-back started before the
// final sync, by a goroutine that then holds the file open: the last of it to finish,
// a writer or that goroutine, completes the file. Large files, copies of one and a
// sparse one come out as the snapshot has them, with no temporary file left.
func TestRestoreStartsWritebackOfLargeFiles(t *testing.T) {
	ctx := context.Background()
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	src := t.TempDir()
	big := randomBytes(21, 12<<20)
	for i := range 3 {
		testkit.WriteFile(t, filepath.Join(src, fmt.Sprintf("big%d", i)), randomBytes(uint64(30+i), 6<<20), 0o640)
		testkit.WriteFile(t, filepath.Join(src, "copies", fmt.Sprintf("c%d", i)), big, 0o600)
	}
	testkit.WriteFile(t, filepath.Join(src, "small"), []byte("small"), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "sparse"), append(make([]byte, 4<<20), big[:1<<20]...), 0o644)
	sn := snapshotOf(t, r, src)

	target := filepath.Join(t.TempDir(), "out")
	rs := restoreOK(ctx, t, r, sn, target)
	if n := restorer.WritebackRanges(rs); n == 0 {
		t.Fatal("no written range had its write-back started")
	}
	sameAsSource(t, src, target)
	noTempFiles(t, target)
}
