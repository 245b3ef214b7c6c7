package repo

import (
	"bytes"
	crand "crypto/rand"
	"io"
	"math/rand/v2"
	"slices"
	"testing"
)

// resyncCost chunks data and edited with the gear of seed and returns the bytes of the
// chunks of edited that data does not have, and how many chunks data has. The edit is at
// [editStart, editEnd) in edited; shift maps an offset in edited after it to data: 0 for
// an overwrite, the inserted length for an insert.
func resyncCost(seed, data, edited []byte, editStart, editEnd, shift int) (changed, chunks int) {
	g := newGearTable(seed)
	type span struct{ a, b int }
	have := make(map[span]bool)
	prev := 0
	old := g.split(data)
	for _, e := range old {
		have[span{prev, e}] = true
		prev = e
	}
	prev = 0
	for _, e := range g.split(edited) {
		switch {
		case e <= editStart:
			if !have[span{prev, e}] {
				changed += e - prev
			}
		case prev >= editEnd:
			if !have[span{prev - shift, e - shift}] {
				changed += e - prev
			}
		default:
			changed += e - prev
		}
		prev = e
	}
	return changed, len(old)
}

func randomSeed(t testing.TB) []byte {
	seed := make([]byte, 32)
	if _, err := crand.Read(seed); err != nil {
		t.Fatal(err)
	}
	return seed
}

// The requirement: a 1 MiB overwrite (or insert) in the middle of a 64 MiB file
// adds less than 4 MiB. The gear seeds and data come from a fixed generator, so the test is
// the same on every run: over many random repositories about one edit in 700 costs 4 MiB
// or more (BenchmarkChunkerResync measures the distribution; docs/design.md gives it), and
// a test that drew fresh seeds would fail that often for no change of the code.
func TestChunkerResync(t *testing.T) {
	seeds := 6
	if testing.Short() {
		seeds = 1
	}
	rng := rand.NewChaCha8([32]byte{'b', 'r', 'r'})
	data := make([]byte, 64<<20)
	patch := make([]byte, 1<<20)
	const at = 32 << 20
	for range seeds {
		seed := make([]byte, 32)
		_, _ = rng.Read(seed)
		_, _ = rng.Read(data)
		_, _ = rng.Read(patch)
		overwrite := bytes.Clone(data)
		copy(overwrite[at:], patch)
		insert := slices.Concat(data[:at], patch, data[at:])
		for _, tc := range []struct {
			name   string
			edited []byte
			shift  int
		}{{"overwrite", overwrite, 0}, {"insert", insert, len(patch)}} {
			changed, _ := resyncCost(seed, data, tc.edited, at, at+len(patch), tc.shift)
			t.Logf("%s of 1 MiB: %.2f MiB of new chunks", tc.name, float64(changed)/(1<<20))
			if changed >= 4<<20 || changed < len(patch) {
				t.Errorf("gear seed %x, %s of 1 MiB: %d bytes of new chunks, want 1..4 MiB", seed, tc.name, changed)
			}
		}
	}
}

// chopReader returns what it reads in pieces of varying size, as files and pipes may.
type chopReader struct {
	r   io.Reader
	rng *rand.Rand
}

func (c *chopReader) Read(p []byte) (int, error) {
	if n := 1 + c.rng.IntN(300<<10); len(p) > n {
		p = p[:n]
	}
	return c.r.Read(p)
}

// The Chunker, which sees the stream through a window refilled by reads of any size, cuts
// where split, which sees it whole, does.
func TestChunkerMatchesSplit(t *testing.T) {
	seed := randomSeed(t)
	g := newGearTable(seed)
	data := make([]byte, 24<<20)
	_, _ = crand.Read(data)
	// Low-entropy stretches: zeros (no candidate) and a short repeated pattern.
	clear(data[3<<20 : 9<<20])
	for i := 12 << 20; i < 14<<20; i++ {
		data[i] = byte(i % 7)
	}
	for _, n := range []int{len(data), 10<<20 + 12345, MinChunkSize + 1, MinChunkSize, 1000, 0} {
		want := g.split(data[:n])
		c := &Chunker{cut: cutter{gear: g}, rd: &chopReader{bytes.NewReader(data[:n]), rand.New(rand.NewPCG(uint64(n), 1))}}
		var got []int
		off := 0
		buf := make([]byte, MaxChunkSize)
		for {
			ch, err := c.Next(buf)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ch, data[off:off+len(ch)]) {
				t.Fatalf("%d bytes: chunk at %d differs from the input", n, off)
			}
			off += len(ch)
			got = append(got, off)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%d bytes: Chunker cuts at %v, split at %v", n, got, want)
		}
	}
}

// BenchmarkChunkerResync measures what the resync requirement is about, over many
// repositories: the bytes of new chunks after a 1 MiB overwrite at 32 MiB of a 64 MiB
// random file (mean, 90th percentile and worst over 40 gear seeds), and the mean chunk.
// Run it with -benchtime=1x.
func BenchmarkChunkerResync(b *testing.B) {
	const seeds = 40
	data := make([]byte, 64<<20)
	patch := make([]byte, 1<<20)
	const at = 32 << 20
	for b.Loop() {
		costs := make([]float64, 0, seeds)
		var chunks int
		for s := range seeds {
			rng := rand.NewChaCha8([32]byte{byte(s), 99})
			seed := make([]byte, 32)
			_, _ = rng.Read(seed)
			_, _ = rng.Read(data)
			_, _ = rng.Read(patch)
			edited := bytes.Clone(data)
			copy(edited[at:], patch)
			changed, n := resyncCost(seed, data, edited, at, at+len(patch), 0)
			costs = append(costs, float64(changed)/(1<<20))
			chunks += n
		}
		slices.Sort(costs)
		var sum float64
		for _, c := range costs {
			sum += c
		}
		b.ReportMetric(sum/seeds, "mean-MiB")
		b.ReportMetric(costs[seeds*9/10], "p90-MiB")
		b.ReportMetric(costs[seeds-1], "max-MiB")
		b.ReportMetric(float64(seeds*len(data))/float64(chunks)/(1<<20), "chunk-MiB")
	}
}
