package jobs_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/testkit"
)

// Every job calls the progress func it was handed at most once every jobs.ProgressEvery, and
// once more at its end: the consume loop publishes each call as an event, and does not
// throttle them itself. The jobs here would each report hundreds of times otherwise (a
// replication per blob, a verify per pack, a prune per snapshot removed).
func TestProgressAtMostEveryQuarterSecond(t *testing.T) {
	opts := testkit.RepoOptions()
	opts.PackSize = 64 << 10 // many packs for verify to report on
	b := setupWith(t, opts)
	b.engine.Repos["offsite"], _ = testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	ctx := context.Background()

	big := t.TempDir()
	for i := range 300 {
		testkit.WriteFile(t, filepath.Join(big, fmt.Sprintf("d%d", i%10), fmt.Sprintf("f%d", i)), randomBytes(uint64(i), 20<<10), 0o644)
	}
	small := t.TempDir()
	for i := range 20 {
		testkit.WriteFile(t, filepath.Join(small, "f"), []byte(fmt.Sprint(i)), 0o644)
		backup(t, b.engine, fmt.Sprintf("progress-small-%d", i), small)
	}
	target := filepath.Join(t.TempDir(), "out")

	for _, tt := range []struct {
		name string
		run  func(progress func(brr.Progress)) error
	}{
		{"backup", func(p func(brr.Progress)) error {
			_, err := b.engine.Backup(ctx, "progress-backup", brr.BackupJob{Path: big}, p)
			return err
		}},
		{"replicate", func(p func(brr.Progress)) error {
			_, err := b.engine.Replicate(ctx, "progress-replicate", brr.ReplicateJob{Snapshot: "all", To: "offsite"}, p)
			return err
		}},
		{"verify", func(p func(brr.Progress)) error {
			_, err := b.engine.Verify(ctx, "progress-verify", brr.VerifyJob{ReadData: true, Drill: true}, p)
			return err
		}},
		{"restore", func(p func(brr.Progress)) error {
			_, err := b.engine.Restore(ctx, "progress-restore", brr.RestoreJob{Snapshot: "latest", Source: big, Target: target}, p)
			return err
		}},
		{"prune", func(p func(brr.Progress)) error {
			_, err := b.engine.Prune(ctx, "progress-prune", brr.PruneJob{Policy: &brr.RetentionPolicy{KeepLast: 1}}, p)
			return err
		}},
	} {
		var calls atomic.Int64
		start := time.Now()
		err := tt.run(func(brr.Progress) { calls.Add(1) })
		elapsed := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		// The first call may come at once, then one per jobs.ProgressEvery, then the last.
		most := int64(elapsed/jobs.ProgressEvery) + 2
		t.Logf("%s: %d progress calls in %v", tt.name, calls.Load(), elapsed)
		if calls.Load() == 0 {
			t.Errorf("%s reported no progress", tt.name)
		}
		if calls.Load() > most {
			t.Errorf("%s called progress %d times in %v, want at most %d (one per %v, and the last)", tt.name, calls.Load(), elapsed, most, jobs.ProgressEvery)
		}
	}
}
