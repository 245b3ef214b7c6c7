package main

import (
	"context"
	"fmt"
	"math"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"go.yaml.in/yaml/v3"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
)

// DefaultGCPercent is the worker's GOGC unless gc_percent or GOGC says otherwise: the
// heap may grow by a quarter over what is live before it is collected, not double. The
// worker's heap is mostly buffers without pointers (chunks, packs, compressor state), so a
// collection costs little; jobs hold ~150 MiB at the peak of a backup, and restores make
// garbage at the rate they read, which the default 100 lets pile up to twice that. With
// 25 the bench-backup peak is ~190 MiB instead of ~300 MiB, and restores take less CPU,
// since the heap reuses pages instead of touching new ones (docs/performance.md).
const DefaultGCPercent = 25

// minGCPercent and maxGCPercent bound gc_percent.
const (
	minGCPercent = 10
	maxGCPercent = 1000
)

// minMemoryLimit is the least memory_limit accepted, other than off.
const minMemoryLimit ByteSize = 64 << 20

// ByteSize is a number of bytes written the way GOMEMLIMIT is: a whole number with an
// optional unit B, KiB, MiB, GiB or TiB, e.g. 192MiB; 0 or off for none.
type ByteSize int64

var byteUnits = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

// ParseByteSize parses a size such as 192MiB, 1GiB or 268435456; 0 and off are 0.
func ParseByteSize(s string) (ByteSize, error) {
	s = strings.TrimSpace(s)
	if s == "off" {
		return 0, nil
	}
	num, shift := s, uint(0)
	for _, u := range byteUnits {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			num, shift = strings.TrimSpace(n), u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("want a size such as 192MiB or 1GiB (units B, KiB, MiB, GiB, TiB), or off; got %q", s)
	}
	return ByteSize(n << shift), nil
}

func (b ByteSize) String() string {
	if b == 0 {
		return "off"
	}
	for _, u := range byteUnits {
		if u.shift > 0 && int64(b)%(1<<u.shift) == 0 {
			return strconv.FormatInt(int64(b)>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10) + "B"
}

// UnmarshalYAML reads a size from a YAML scalar.
func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("want a size such as 192MiB")
	}
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return err
	}
	*b = v
	return nil
}

// MarshalYAML writes a size the way it is read.
func (b ByteSize) MarshalYAML() (any, error) { return b.String(), nil }

// applyMemorySettings sets the Go runtime's garbage collector: gcPercent (GOGC) when not
// 0, and the soft memory limit (GOMEMLIMIT) when not 0. Near the limit the collector runs
// more often, and the runtime returns freed memory to the system sooner, which costs page
// faults when it is needed again; it is soft: jobs that need more get it. While live
// memory is small, the heap may still grow to minHeapTarget before a collection (see
// there). It returns the settings in effect: gc_percent as set, before that raise.
func applyMemorySettings(gcPercent int, limit ByteSize) (int, int64) {
	base := gcPercent
	if gcPercent != 0 {
		debug.SetGCPercent(gcPercent)
	} else if b, ok := heapFloorRaises(); ok {
		base = b // GOGC now is the floor's raise, not what was set
	}
	if limit > 0 {
		debug.SetMemoryLimit(int64(limit))
	}
	m := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(m)
	if base == 0 {
		base = int(m[0].Value.Uint64()) // -1 for GOGC=off
	}
	startHeapFloor(base, minHeapTarget)
	return base, int64(m[1].Value.Uint64())
}

// minHeapTarget is the least heap size the collector lets the heap grow to before a
// collection, whatever gc_percent says: with gc_percent 25 and the ~35 MiB an idle worker
// holds live (mostly the embedded NATS server's), a collection came every ~9 MiB
// allocated, every ~70 ms under a stream of small jobs, and cost a ping job an eighth of
// its CPU and part of its latency tail (docs/performance.md, "2026-12-07 session 20:
// pipeline"). Once live memory passes minHeapTarget/(1+gc_percent/100) (51 MiB at 25),
// gc_percent alone decides, so a backup's peak, at 100+ MiB live, is what it was.
const minHeapTarget = 64 << 20

var (
	heapFloorOnce    sync.Once
	heapFloorStarted atomic.Bool
	heapFloorBase    atomic.Int64  // the gc_percent the floor raises, set by startHeapFloor
	heapFloorMin     atomic.Uint64 // the floor, set by startHeapFloor
)

// heapFloorRaises returns the gc_percent the heap floor raises, when it runs.
func heapFloorRaises() (int, bool) {
	b := heapFloorBase.Load()
	return int(b), heapFloorStarted.Load() && b >= 0
}

// startHeapFloor keeps the heap target at least floor bytes while gc_percent base would
// make it smaller: after each collection it sets GOGC to what makes the next target
// floor, or base when that is more. A base below 0 (GOGC=off) or a floor of 0 stops the
// raising. It runs once per process, from a finalizer (no goroutine of its own); a later call
// changes its base and floor.
func startHeapFloor(base int, floor uint64) {
	if floor == 0 {
		base = -1
	}
	heapFloorMin.Store(floor)
	heapFloorBase.Store(int64(base))
	heapFloorOnce.Do(func() {
		heapFloorStarted.Store(true)
		adjustHeapFloor()
		armHeapFloor()
	})
}

// gcSentinel is garbage made to learn when a collection ran: its finalizer runs after
// the cycle that found it unreachable. Larger than the tiny allocator's 16 bytes, whose
// blocks may hold other objects and so be kept alive by them.
type gcSentinel struct{ _ [32]byte }

func armHeapFloor() {
	runtime.SetFinalizer(&gcSentinel{}, func(*gcSentinel) {
		adjustHeapFloor()
		armHeapFloor()
	})
}

// adjustHeapFloor sets GOGC from the live heap of the last collection.
func adjustHeapFloor() {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 || s[1].Value.Kind() != metrics.KindUint64 {
		return
	}
	base := int(heapFloorBase.Load())
	if base < 0 {
		return
	}
	floor := heapFloorMin.Load()
	if bigJobs.Load() > 0 {
		floor = 0
	}
	if p := gcPercentFor(s[0].Value.Uint64(), base, floor); p != int(s[1].Value.Uint64()) {
		debug.SetGCPercent(p)
	}
}

// gcPercentFor is the GOGC that makes the next heap target floor for live bytes live,
// or base when base makes it larger; at most maxGCPercent.
func gcPercentFor(live uint64, base int, floor uint64) int {
	if live == 0 || live*uint64(100+base)/100 >= floor {
		return base
	}
	p := floor*100/live - 100
	if p > maxGCPercent {
		return maxGCPercent
	}
	return max(int(p), base)
}

// bigJobs counts the jobs running now of every kind but ping: while one runs, the heap
// floor is off and gc_percent alone decides, so that a backup's or a restore's peak RSS
// is what it was without the floor (a restore may hold less than 51 MiB live, where
// the floor would set its heap target).
var bigJobs atomic.Int64

// floorGate is the job handler that turns the heap floor off while a job other than a
// ping runs (see bigJobs).
type floorGate struct{ events.Handler }

func (g floorGate) Handle(ctx context.Context, job *brr.Job, rep brr.Reporter) (*brr.Outcome, error) {
	if job.Kind == brr.KindPing {
		return g.Handler.Handle(ctx, job, rep)
	}
	if bigJobs.Add(1) == 1 {
		if base, ok := heapFloorRaises(); ok {
			debug.SetGCPercent(base) // now, not after the next collection
		}
	}
	defer bigJobs.Add(-1)
	return g.Handler.Handle(ctx, job, rep)
}
