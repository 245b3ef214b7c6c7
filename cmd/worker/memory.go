package main

import (
	"fmt"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
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
// faults when it is needed again; it is soft: jobs that need more get it. It returns the
// settings in effect.
func applyMemorySettings(gcPercent int, limit ByteSize) (int, int64) {
	if gcPercent != 0 {
		debug.SetGCPercent(gcPercent)
	}
	if limit > 0 {
		debug.SetMemoryLimit(int64(limit))
	}
	m := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(m)
	return int(m[0].Value.Uint64()), int64(m[1].Value.Uint64())
}
