package jobs_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

func TestVerifyProgressCountsObjects(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "a"), randomBytes(7, 300<<10), 0o644)
	backup(t, b.engine, "verify-progress-1", src)
	testkit.WriteFile(t, filepath.Join(src, "b"), randomBytes(8, 200<<10), 0o644)
	backup(t, b.engine, "verify-progress-2", src)

	for _, tt := range []struct {
		readData bool
		phase    string
		total    func(*brr.VerifyResult) int64
	}{
		{false, "check structure", func(r *brr.VerifyResult) int64 { return int64(r.Snapshots) }},
		{true, "read data", func(r *brr.VerifyResult) int64 { return int64(r.Snapshots + r.Packs) }},
	} {
		var got []brr.Progress
		res, err := b.engine.Verify(context.Background(), "verify-progress", brr.VerifyJob{ReadData: tt.readData},
			func(p brr.Progress) { got = append(got, p) })
		if err != nil || !res.OK() {
			t.Fatalf("verify (read data %v): %+v, %v", tt.readData, res, err)
		}
		if res.Snapshots != 2 || res.Packs < 1 {
			t.Fatalf("verify (read data %v) found %d snapshots and %d packs, want 2 and at least 1", tt.readData, res.Snapshots, res.Packs)
		}
		if len(got) == 0 {
			t.Fatalf("verify (read data %v) reported no progress", tt.readData)
		}
		want := tt.total(res)
		for _, p := range got {
			if p.Phase != tt.phase {
				t.Errorf("read data %v: Phase = %q, want %q", tt.readData, p.Phase, tt.phase)
			}
			// Counts of objects are not bytes.
			if p.Bytes != 0 || p.TotalBytes != 0 || p.BytesPerSec != 0 {
				t.Errorf("read data %v: progress %+v has bytes; a verify counts objects in Files", tt.readData, p)
			}
			if p.TotalFiles != want || p.Files < 1 || p.Files > p.TotalFiles {
				t.Errorf("read data %v: progress %d/%d, want 1..%d of %d", tt.readData, p.Files, p.TotalFiles, want, want)
			}
		}
		if last := got[len(got)-1]; last.Files != want || last.ETASeconds != 0 {
			t.Errorf("read data %v: last progress %+v, want %d/%d and no ETA", tt.readData, last, want, want)
		}
	}
}
