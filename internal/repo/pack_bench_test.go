package repo_test

import (
	"context"
	"encoding/binary"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

// BenchmarkPackMemory saves one default-size pack (16 MiB of 1 MiB incompressible blobs)
// per op into a file repository and reports the bytes allocated per pack and the peak
// heap in use while packs are filled and saved: what a pack costs a worker in memory.
// Run it against an older tree to compare (the bench uses only the public API).
func BenchmarkPackMemory(b *testing.B) {
	ctx := context.Background()
	opts := testOpts
	opts.PackSize = 0
	r, _ := testkit.InitRepo(b, b.TempDir(), opts)
	const blob = 1 << 20
	perPack := repo.DefaultPackSize / blob
	data := randomBytes(1, blob)

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var ms runtime.MemStats
		for {
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	runtime.GC()
	var n uint64
	b.SetBytes(repo.DefaultPackSize)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for j := 0; j < perPack; j++ {
			n++
			binary.LittleEndian.PutUint64(data, n)
			if _, _, err := r.SaveBlob(ctx, repo.DataBlob, r.BlobID(data), data); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := r.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	close(stop)
	<-sampled
	b.ReportMetric(float64(peak.Load())/(1<<20), "peak-heap-MiB")
}
