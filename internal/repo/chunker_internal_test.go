package repo

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/zeebo/blake3"
)

// TestChunkerResyncFixedSeeds is the deterministic form of the resync requirement: with
// fixed gear seeds and fixed data, a 1 MiB overwrite or insert in the middle of 64 MiB
// changes less than 4 MiB of chunks.
func TestChunkerResyncFixedSeeds(t *testing.T) {
	data := make([]byte, 64<<20)
	_, _ = rand.NewChaCha8([32]byte{1}).Read(data)
	patch := make([]byte, 1<<20)
	_, _ = rand.NewChaCha8([32]byte{2}).Read(patch)
	overwrite := bytes.Clone(data)
	copy(overwrite[32<<20:], patch)
	insert := append(append(bytes.Clone(data[:32<<20]), patch...), data[32<<20:]...)
	for seed := range 4 {
		g := newGearTable([]byte{byte(seed)})
		chunks := func(d []byte) map[[32]byte]int {
			m := make(map[[32]byte]int)
			for len(d) > 0 {
				n := g.cut(d)
				m[blake3.Sum256(d[:n])] = n
				d = d[n:]
			}
			return m
		}
		before := chunks(data)
		for name, edited := range map[string][]byte{"overwrite": overwrite, "insert": insert} {
			changed := 0
			for k, n := range chunks(edited) {
				if _, ok := before[k]; !ok {
					changed += n
				}
			}
			if changed >= 4<<20 || changed < 1<<20 {
				t.Errorf("seed %d, %s of 1 MiB: %d bytes of new chunks, want 1..4 MiB", seed, name, changed)
			}
		}
	}
}
