package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestRestoreAsOf: "latest" with as_of picks the newest snapshot of the source taken at
// or before that time, and restores its content; a time before the first snapshot finds
// none, and says so.
func TestRestoreAsOf(t *testing.T) {
	b := setup(t)
	c := testkit.NewClock(time.Date(2026, 11, 20, 8, 0, 0, 0, time.UTC))
	b.engine.Now = c.Now
	src := t.TempDir()
	other := t.TempDir()
	ids := hourly(t, b, c, src, 3) // 08:00, 09:00, 10:00
	testkit.WriteFile(t, filepath.Join(other, "x"), []byte("another source"), 0o644)
	backup(t, b.engine, "other-source", other) // 11:00, of another source

	for _, tt := range []struct {
		asOf time.Time
		want int // index in ids
	}{
		{time.Date(2026, 11, 20, 9, 30, 0, 0, time.UTC), 1},
		{time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC), 1}, // at: included
		{time.Date(2026, 11, 20, 8, 59, 59, 0, time.UTC), 0},
		{time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC), 2}, // the other source's newer snapshot is not src's
	} {
		target := filepath.Join(t.TempDir(), "r")
		asOf := tt.asOf
		res, err := b.engine.Restore(context.Background(), "asof-"+asOf.Format("150405"), brr.RestoreJob{
			Snapshot: "latest", Source: src, AsOf: &asOf, Target: target}, nil)
		if err != nil {
			t.Fatalf("as of %s: %v", asOf, err)
		}
		if res.Snapshot != ids[tt.want] {
			t.Errorf("as of %s restored %.8s, want %.8s (snapshot %d)", asOf.Format(time.TimeOnly), res.Snapshot, ids[tt.want], tt.want)
		}
		got, err := os.ReadFile(filepath.Join(target, "changing.bin"))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, randomBytes(uint64(100+tt.want), 64<<10)) {
			t.Errorf("as of %s: changing.bin is not the content of snapshot %d", asOf.Format(time.TimeOnly), tt.want)
		}
	}

	before := time.Date(2026, 11, 20, 7, 0, 0, 0, time.UTC)
	_, err := b.engine.Restore(context.Background(), "asof-before", brr.RestoreJob{
		Snapshot: "latest", Source: src, AsOf: &before, Target: filepath.Join(t.TempDir(), "r")}, nil)
	if !errors.Is(err, brr.ErrNotFound) || !brr.IsPermanent(err) {
		t.Fatalf("as of before the first snapshot: %v, want a permanent not-found error", err)
	}
}
