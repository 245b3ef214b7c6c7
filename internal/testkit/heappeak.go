package testkit

import (
	"os"
	"runtime/metrics"
	"runtime/pprof"
	"testing"
	"time"
)

// WatchHeapPeak samples the heap every 20 ms and writes its profile to path each time it
// is larger than ever before, until the returned func is called, which logs the peak:
// the heap profile at the peak of a run, for the profile tests (make profile-*).
func WatchHeapPeak(t testing.TB, path string) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	var peak, mapped uint64
	go func() {
		defer close(finished)
		sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/total:bytes"}}
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			metrics.Read(sample)
			if v := sample[0].Value.Uint64(); v > peak+(1<<20) {
				peak = v
				if f, err := os.Create(path); err == nil {
					_ = pprof.Lookup("heap").WriteTo(f, 0)
					_ = f.Close()
				}
				mapped = sample[1].Value.Uint64()
			}
		}
	}()
	return func() {
		close(done)
		<-finished
		t.Logf("peak heap objects: %d MiB, all memory of the Go runtime then: %d MiB (%s)", peak>>20, mapped>>20, path)
	}
}
