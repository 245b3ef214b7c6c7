package repo_test

import (
	"bytes"
	"io"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
)

func chunkAll(t testing.TB, r *repo.Repository, data []byte) [][]byte {
	t.Helper()
	c := r.NewChunker(bytes.NewReader(data))
	buf := make([]byte, repo.MaxChunkSize)
	var out [][]byte
	for {
		ch, err := c.Next(buf)
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, bytes.Clone(ch))
	}
}

func TestChunkerBounds(t *testing.T) {
	r, be := setup(t)
	data := randomBytes(11, 40<<20)
	a := chunkAll(t, r, data)
	if !bytes.Equal(bytes.Join(a, nil), data) {
		t.Fatal("chunks do not add up to the input")
	}
	for i, c := range a {
		if len(c) > repo.MaxChunkSize || (i < len(a)-1 && len(c) < repo.MinChunkSize) {
			t.Fatalf("chunk %d of %d has %d bytes", i, len(a), len(c))
		}
	}
	avg := len(data) / len(a)
	if avg < repo.AvgChunkSize/2 || avg > repo.AvgChunkSize*2 {
		t.Errorf("average chunk %d bytes, want about %d", avg, repo.AvgChunkSize)
	}
	// The same repository (even reopened) chunks the same way.
	b := chunkAll(t, reopen(t, be), data)
	if len(a) != len(b) {
		t.Fatalf("reopened repository: %d chunks, want %d", len(b), len(a))
	}
	for i := range a {
		if !bytes.Equal(a[i], b[i]) {
			t.Fatalf("chunk %d differs after reopen", i)
		}
	}
	// Another repository has another gear table, so other boundaries.
	other, _ := setup(t)
	c := chunkAll(t, other, data)
	if len(c) == len(a) && len(c[0]) == len(a[0]) {
		t.Errorf("two repositories cut the same first chunk (%d bytes)", len(a[0]))
	}
	// Small input is one chunk.
	if s := chunkAll(t, r, data[:repo.MinChunkSize-1]); len(s) != 1 {
		t.Errorf("%d chunks for a small file", len(s))
	}
	if s := chunkAll(t, r, nil); len(s) != 0 {
		t.Errorf("%d chunks for an empty file", len(s))
	}
	// Zeros (no boundary ever) are cut at MaxChunkSize.
	z := chunkAll(t, r, make([]byte, 10<<20))
	if len(z) != 3 || len(z[0]) != repo.MaxChunkSize {
		t.Errorf("zeros: %d chunks, first %d bytes", len(z), len(z[0]))
	}
}

func BenchmarkChunker(b *testing.B) {
	r, _ := setup(b)
	data := randomBytes(15, 64<<20)
	buf := make([]byte, repo.MaxChunkSize)
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	for b.Loop() {
		c := r.NewChunker(bytes.NewReader(data))
		for {
			if _, err := c.Next(buf); err != nil {
				break
			}
		}
	}
}
