package limit_test

import (
	"path/filepath"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/repo/limit"
)

// The wrapper is a backend like any other: a file backend throttled both ways passes the
// conformance suite. The limits are high enough that the suite's 20 MiB object costs a
// fraction of a second, and low enough that it moves in many slices of the bucket.
func TestConformance(t *testing.T) {
	backendtest.Run(t, func(t *testing.T) repo.Backend {
		fb, err := file.Open(filepath.Join(t.TempDir(), "repo"))
		if err != nil {
			t.Fatal(err)
		}
		be := limit.Wrap(fb, 256<<10, 256<<10) // 256 MiB/s, 1 MiB bucket
		t.Cleanup(func() { be.Close() })
		return be
	})
}
