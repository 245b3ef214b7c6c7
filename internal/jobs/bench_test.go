package jobs_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

// benchSource returns the tree the benchmarks back up: $BRR_BENCH_SOURCE when set (make
// bench-backup points it at the Go toolchain tree plus random data), else a generated tree
// of the same shape, smaller: source-like small files, a few big random files and one
// duplicate. It returns the tree's size in bytes.
func benchSource(b *testing.B) (string, int64) {
	b.Helper()
	if src := os.Getenv("BRR_BENCH_SOURCE"); src != "" {
		return src, treeSize(b, src)
	}
	src := b.TempDir()
	text := []byte(strings.Repeat("func (r *Repository) SaveBlob(ctx context.Context) error { return nil }\n", 64))
	for i := range 3000 {
		n := 512 + (i*7919)%(16<<10)
		data := append([]byte(fmt.Sprintf("// file %d\n", i)), text[:n%len(text)]...)
		testkit.WriteFile(b, filepath.Join(src, "src", fmt.Sprintf("pkg%02d", i%60), fmt.Sprintf("file%04d.go", i)), data, 0o644)
	}
	for i := range 3 {
		testkit.WriteFile(b, filepath.Join(src, "data", fmt.Sprintf("random%d.bin", i)), randomBytes(uint64(700+i), 32<<20), 0o644)
	}
	dup, _ := os.ReadFile(filepath.Join(src, "data", "random0.bin"))
	testkit.WriteFile(b, filepath.Join(src, "data", "duplicate.bin"), dup, 0o644)
	return src, treeSize(b, src)
}

func treeSize(b *testing.B, root string) int64 {
	var n int64
	_ = filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// benchOptions are production options (16 MiB packs) with a cheap KDF.
var benchOptions = repo.Options{KDF: testkit.CheapKDF}

func BenchmarkBackupFirst(b *testing.B) {
	src, size := benchSource(b)
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		bu := setupWith(b, benchOptions)
		b.StartTimer()
		if _, err := bu.engine.Backup(context.Background(), fmt.Sprintf("bench-%d", i), brr.BackupJob{Path: src}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBackupUnchanged(b *testing.B) {
	src, size := benchSource(b)
	bu := setupWith(b, benchOptions)
	bu.engine.Cache = openState(b)
	backup(b, bu.engine, "bench-first", src)
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		res, err := bu.engine.Backup(context.Background(), fmt.Sprintf("bench-%d", i), brr.BackupJob{Path: src}, nil)
		if err != nil {
			b.Fatal(err)
		}
		if res.BytesRead != 0 {
			b.Fatalf("unchanged re-backup read %d bytes", res.BytesRead)
		}
	}
}

func BenchmarkRestore(b *testing.B) {
	src, size := benchSource(b)
	bu := setupWith(b, benchOptions)
	res := backup(b, bu.engine, "bench-first", src)
	b.SetBytes(size)
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		target := filepath.Join(b.TempDir(), "out")
		b.StartTimer()
		if _, err := bu.engine.Restore(context.Background(), fmt.Sprintf("bench-%d", i), brr.RestoreJob{Snapshot: res.Snapshot, Target: target}, nil); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		os.RemoveAll(target)
		b.StartTimer()
	}
}
