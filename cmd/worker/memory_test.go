package main

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

func TestGCPercentFor(t *testing.T) {
	const mib = 1 << 20
	for _, tt := range []struct {
		live  uint64
		base  int
		floor uint64
		want  int
	}{
		{35 * mib, 25, 64 * mib, 82},   // an idle worker: the floor raises 25 to 82
		{51 * mib, 25, 64 * mib, 25},   // 51 MiB × 1.25 is past 64 MiB: the base
		{150 * mib, 25, 64 * mib, 25},  // a backup's peak: the base, the peak as before
		{40 * mib, 100, 64 * mib, 100}, // a larger base already makes more room
		{1 * mib, 25, 64 * mib, maxGCPercent},
		{0, 25, 64 * mib, 25}, // nothing measured yet
	} {
		if got := gcPercentFor(tt.live, tt.base, tt.floor); got != tt.want {
			t.Errorf("gcPercentFor(%d MiB, %d, %d MiB) = %d, want %d", tt.live/mib, tt.base, tt.floor/mib, got, tt.want)
		}
	}
}

// TestHeapFloor: with a small live heap the floor raises GOGC after a collection so that
// the next one comes at the floor, not at gc_percent over live memory; once live memory
// is past the floor, GOGC is gc_percent again.
func TestHeapFloor(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer startHeapFloor(-1, 0) // stop raising when done
	gogc := func() int {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
		metrics.Read(s)
		return int(s[0].Value.Uint64())
	}
	const floor = 256 << 20 // far above this test's live heap
	percent, _ := applyMemorySettings(25, 0)
	if percent != 25 {
		t.Fatalf("applyMemorySettings(25, 0) says gc_percent %d, want 25", percent)
	}
	startHeapFloor(25, floor)
	if !testkit.WaitFor(30*time.Second, func() bool { runtime.GC(); return gogc() > 25 }) {
		t.Fatalf("GOGC is %d with a small live heap and a %d MiB floor, want it raised over 25", gogc(), floor>>20)
	}
	if percent, _ := applyMemorySettings(0, 0); percent != 25 {
		t.Fatalf("applyMemorySettings(0, 0) says gc_percent %d while the floor raises it, want 25 as set", percent)
	}

	big := make([][]byte, 0, 384) // 384 MiB live: past the floor
	for range cap(big) {
		b := make([]byte, 1<<20)
		b[0] = 1
		big = append(big, b)
	}
	if !testkit.WaitFor(30*time.Second, func() bool { runtime.GC(); return gogc() == 25 }) {
		t.Fatalf("GOGC is %d with %d MiB live and a %d MiB floor, want gc_percent 25", gogc(), len(big), floor>>20)
	}
	runtime.KeepAlive(big)
}

// probeHandler reports GOGC as the handler runs.
type probeHandler struct{ gogc *int }

func (p probeHandler) Handle(context.Context, *brr.Job, brr.Reporter) (*brr.Outcome, error) {
	runtime.GC() // the floor's adjustment after a collection must keep gc_percent too
	time.Sleep(10 * time.Millisecond)
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	*p.gogc = int(s[0].Value.Uint64())
	return nil, nil
}

// TestFloorGate: while a job other than a ping runs, the heap floor is off: GOGC is
// gc_percent from the job's start (a restore's peak RSS rose by the floor), and a ping
// runs under the floor.
func TestFloorGate(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer startHeapFloor(-1, 0)
	applyMemorySettings(25, 0)
	startHeapFloor(25, 256<<20)
	var gogc int
	g := floorGate{probeHandler{&gogc}}
	ping := &brr.Job{Kind: brr.KindPing}
	if !testkit.WaitFor(30*time.Second, func() bool { _, _ = g.Handle(context.Background(), ping, nil); return gogc > 25 }) {
		t.Fatalf("GOGC in a ping job is %d, want the floor's raise over 25", gogc)
	}
	if _, _ = g.Handle(context.Background(), &brr.Job{Kind: brr.KindRestore}, nil); gogc != 25 {
		t.Fatalf("GOGC in a restore job is %d, want gc_percent 25", gogc)
	}
}
