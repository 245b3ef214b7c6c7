package natsobj_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/archiver"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/repo/natsobj"
	"github.com/brr-dev/brr/internal/restorer"
	"github.com/brr-dev/brr/internal/testkit"
)

// BenchmarkRestore restores one snapshot (16 MiB packs: big random files and a thousand
// small ones) from file://, from nats:// without a cache, from nats:// with a cache
// emptied before each restore and from nats:// with a direct get per chunk instead of
// batches, side by side; cache-vs-file alternates the first and the
// last and reports their ratio.
func BenchmarkRestore(b *testing.B) {
	ctx := context.Background()
	src := b.TempDir()
	size := testkit.WriteTree(b, src, testkit.Tree{Seed: 12, Sizes: []int{40 << 20, 20 << 20, 6 << 20, 1 << 20}, Small: 1000})
	s := natstest.Start(b)
	_, js := s.JetStream(b)
	opts := repo.Options{KDF: testkit.CheapKDF}

	fileBe, err := file.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	natsBe, err := natsobj.Open(ctx, js, "restore", 1)
	if err != nil {
		b.Fatal(err)
	}
	fileRepo, fileSnap := initAndBackUp(b, fileBe, opts, src)
	natsRepo, natsSnap := initAndBackUp(b, natsBe, opts, src)
	cachedBe, err := natsobj.OpenWithOptions(ctx, js, "restore", natsobj.Options{CacheDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	cachedRepo, err := repo.Open(ctx, cachedBe, []byte(testkit.Password), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cachedRepo.Close() })
	// The same repository read with a direct get per chunk instead of batches.
	singleBe, err := natsobj.Open(ctx, js, "restore", 1)
	if err != nil {
		b.Fatal(err)
	}
	singleBe.SetBatching(false)
	singleRepo, err := repo.Open(ctx, singleBe, []byte(testkit.Password), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { singleRepo.Close() })

	for _, bc := range []struct {
		name string
		r    *repo.Repository
		sn   *repo.Snapshot
	}{{"file", fileRepo, fileSnap}, {"nats", natsRepo, natsSnap}, {"nats-cache", cachedRepo, natsSnap}, {"nats-single", singleRepo, natsSnap}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(size)
			for range b.N {
				b.StopTimer()
				target := filepath.Join(b.TempDir(), "out")
				cachedBe.PurgeCache()
				b.StartTimer()
				restore(b, bc.r, bc.sn, target)
			}
		})
	}
	// The machine's load changes between sub-benchmarks: restores from file:// and from
	// nats:// with the cache, taken in turns, give the ratio of the two.
	b.Run("cache-vs-file", func(b *testing.B) {
		var fromFile, fromNATS time.Duration
		for range b.N {
			cachedBe.PurgeCache()
			start := time.Now()
			restore(b, fileRepo, fileSnap, filepath.Join(b.TempDir(), "out"))
			fromFile += time.Since(start)
			start = time.Now()
			restore(b, cachedRepo, natsSnap, filepath.Join(b.TempDir(), "out"))
			fromNATS += time.Since(start)
		}
		b.ReportMetric(float64(fromFile.Milliseconds())/float64(b.N), "file-ms/op")
		b.ReportMetric(float64(fromNATS.Milliseconds())/float64(b.N), "nats-cache-ms/op")
		b.ReportMetric(float64(fromNATS)/float64(fromFile), "nats-cache/file")
	})
}

func initAndBackUp(b testing.TB, be repo.Backend, opts repo.Options, src string) (*repo.Repository, *repo.Snapshot) {
	ctx := context.Background()
	r, err := repo.Init(ctx, be, []byte(testkit.Password), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	w, err := r.StartWriter(ctx, "bench")
	if err != nil {
		b.Fatal(err)
	}
	defer w.Release()
	res, err := archiver.New(w, src, archiver.Options{Workers: 2}).Run(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := w.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	sn := &repo.Snapshot{ID: r.SnapshotIDFor("bench"), Time: time.Now().UTC(), Host: "bench", Source: src, Tree: res.Tree}
	if err := r.SaveSnapshot(ctx, sn); err != nil {
		b.Fatal(err)
	}
	return r, sn
}

func restore(b testing.TB, r *repo.Repository, sn *repo.Snapshot, target string) {
	ctx := context.Background()
	pl, err := restorer.NewPlan(ctx, r, sn, nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := restorer.PrepareTarget(target); err != nil {
		b.Fatal(err)
	}
	rs := restorer.New(r, target, restorer.Options{Workers: 2})
	if err := rs.Run(ctx, pl); err != nil {
		b.Fatal(err)
	}
	if f := rs.Failures(); len(f) > 0 {
		b.Fatalf("restore: %d failures, first %s", len(f), f[0])
	}
}
