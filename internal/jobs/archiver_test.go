package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

// chunkIDs returns the ids of the chunks the repository's Chunker cuts data into.
func chunkIDs(t *testing.T, r *repo.Repository, data []byte) []repo.ID {
	t.Helper()
	ch := r.NewChunker(bytes.NewReader(data))
	buf := make([]byte, repo.MaxChunkSize)
	var ids []repo.ID
	for {
		c, err := ch.Next(buf)
		if errors.Is(err, io.EOF) {
			return ids
		}
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, r.BlobID(c))
	}
}

// Files up to MinChunkSize are read whole, without the Chunker: their content must be
// what the Chunker would have made of them, or an unchanged file would not deduplicate
// against a snapshot made before.
func TestSmallFilesChunkLikeTheChunker(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	sizes := []int{0, 1, 1000, 1 << 10, 4<<10 + 1, repo.MinChunkSize - 1, repo.MinChunkSize, repo.MinChunkSize + 1, 3 * repo.MinChunkSize}
	data := map[string][]byte{}
	for i, n := range sizes {
		name := fmt.Sprintf("f%02d-%d", i, n)
		data[name] = randomBytes(uint64(500+i), n)
		testkit.WriteFile(t, filepath.Join(src, name), data[name], 0o644)
	}
	res := backup(t, b.engine, "small-1", src)
	if res.Files != int64(len(sizes)) {
		t.Fatalf("Files = %d, want %d", res.Files, len(sizes))
	}
	tree := loadRootTree(t, b.repo, res.Snapshot)
	for name, d := range data {
		n := tree.Find(name)
		if n == nil {
			t.Fatalf("%s: not in the snapshot", name)
		}
		if want := chunkIDs(t, b.repo, d); !slices.Equal(n.Content, want) {
			t.Errorf("%s (%d bytes): %d blobs %v, want the Chunker's %d %v", name, len(d), len(n.Content), n.Content, len(want), want)
		}
	}
	target := filepath.Join(t.TempDir(), "out")
	restore(t, b.engine, res.Snapshot, target)
	compareTrees(t, src, target)
}

func loadRootTree(t *testing.T, r *repo.Repository, snapshot string) *repo.Tree {
	t.Helper()
	ctx := context.Background()
	id, err := repo.ParseID(snapshot)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := r.LoadSnapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := r.LoadTree(ctx, sn.Tree)
	if err != nil {
		t.Fatal(err)
	}
	return tree
}

// Directories are listed in parallel; the snapshot must not depend on the order.
func TestBackupOfAWideDeepTreeIsDeterministic(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	for i := range 300 {
		dir := filepath.Join(src, fmt.Sprintf("d%d", i%7), fmt.Sprintf("e%d", i%13), fmt.Sprintf("f%d", i%3))
		testkit.WriteFile(t, filepath.Join(dir, fmt.Sprintf("file%03d", i)), []byte(strings.Repeat(fmt.Sprint(i), i)), 0o640)
	}
	if err := os.MkdirAll(filepath.Join(src, "empty", "dirs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("d1/e1", filepath.Join(src, "d0", "link")); err != nil {
		t.Fatal(err)
	}
	first := backup(t, b.engine, "wide-1", src)
	second := backup(t, b.engine, "wide-2", src)
	if first.Files != 300 || first.Dirs != second.Dirs {
		t.Fatalf("first: %d files, %d dirs; second %d dirs; want 300 files", first.Files, first.Dirs, second.Dirs)
	}
	if a, c := loadRootTree(t, b.repo, first.Snapshot), loadRootTree(t, b.repo, second.Snapshot); !slices.EqualFunc(a.Nodes, c.Nodes, func(x, y *repo.Node) bool { return x.Name == y.Name && x.Subtree == y.Subtree }) {
		t.Fatalf("two backups of an unchanged tree have different trees")
	}
	target := filepath.Join(t.TempDir(), "out")
	restore(t, b.engine, first.Snapshot, target)
	compareTrees(t, src, target)
}

// Hardlinks are answered from the file cache whichever link a backup meets first.
func TestHardlinksAreNotReadAgain(t *testing.T) {
	b := setup(t)
	b.engine.Cache = openState(t)
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "a", "data"), randomBytes(7, 3<<20), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "a", "small"), randomBytes(8, 10<<10), 0o644)
	for i := range 5 {
		if err := os.MkdirAll(filepath.Join(src, fmt.Sprintf("l%d", i)), 0o755); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"data", "small"} {
			if err := os.Link(filepath.Join(src, "a", f), filepath.Join(src, fmt.Sprintf("l%d", i), f)); err != nil {
				t.Fatal(err)
			}
		}
	}
	first := backup(t, b.engine, "hl-1", src)
	if first.BytesRead != 3<<20+10<<10 {
		t.Errorf("first backup read %d bytes, want each inode once (%d)", first.BytesRead, 3<<20+10<<10)
	}
	for i := range 3 {
		res := backup(t, b.engine, fmt.Sprintf("hl-%d", i+2), src)
		if res.BytesRead != 0 || res.FilesUnchanged != 12 {
			t.Errorf("unchanged backup %d read %d bytes, %d files unchanged; want 0 and 12", i+2, res.BytesRead, res.FilesUnchanged)
		}
	}
	target := filepath.Join(t.TempDir(), "out")
	restore(t, b.engine, first.Snapshot, target)
	compareTrees(t, src, target)
}
