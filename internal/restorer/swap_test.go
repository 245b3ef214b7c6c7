package restorer_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/brr-dev/brr/internal/restorer"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestRestoreNeverWritesThroughASwappedDirectory attacks a restore the way a local user
// who can write inside the restore target would: while the restore runs, a goroutine
// takes a directory of the tree being restored, renames it away (inside the target),
// puts a symlink to a directory outside the target in its place, then removes the link
// and renames the directory back, over and over, as fast as it can, picking a different
// directory (top level or one level down) each time. A restore that resolves a path by
// name at any moment the link is in place writes through it: a directory, a file, a
// temporary file, a chmod, a chown or a utimes lands outside. The outside directory
// must stay empty after every round, and the restore must end (with the entries it
// could not write reported as failures, never followed).
//
// 50 rounds by default; BRR_SWAP_ROUNDS=N runs N.
func TestRestoreNeverWritesThroughASwappedDirectory(t *testing.T) {
	rounds := 50
	if s := os.Getenv("BRR_SWAP_ROUNDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil {
			t.Fatalf("BRR_SWAP_ROUNDS=%q: %v", s, err)
		}
		rounds = n
	}
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	src := t.TempDir()
	var attacked []string
	for i := range 3 {
		top := fmt.Sprintf("d%d", i)
		attacked = append(attacked, top)
		for j := range 3 {
			sub := filepath.Join(top, fmt.Sprintf("s%d", j))
			attacked = append(attacked, sub)
			for k := range 5 {
				testkit.WriteFile(t, filepath.Join(src, sub, fmt.Sprintf("f%d", k)), randomBytes(uint64(100*i+10*j+k), 200+k), 0o640)
			}
		}
		testkit.WriteFile(t, filepath.Join(src, top, "big"), randomBytes(uint64(i), 512<<10), 0o600)
		if err := os.Symlink("s0/f0", filepath.Join(src, top, "link")); err != nil {
			t.Fatal(err)
		}
	}
	sn := snapshotOf(t, r, src)
	ctx := context.Background()
	base := t.TempDir()
	outside := t.TempDir()

	var failedRounds, swaps atomic.Int64
	for round := range rounds {
		target := filepath.Join(base, strconv.Itoa(round))
		if err := restorer.PrepareTarget(target); err != nil {
			t.Fatal(err)
		}
		pl, err := restorer.NewPlan(ctx, r, sn, nil)
		if err != nil {
			t.Fatal(err)
		}
		rs := restorer.New(r, target, restorer.Options{Workers: 4})

		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			away := filepath.Join(target, ".away")
			for n := 0; ; n++ {
				select {
				case <-stop:
					return
				default:
				}
				victim := filepath.Join(target, attacked[n%len(attacked)])
				if os.Rename(victim, away) != nil {
					continue // not created yet
				}
				if os.Symlink(outside, victim) == nil {
					swaps.Add(1)
					_ = os.Remove(victim)
				}
				if err := os.Rename(away, victim); err != nil && !errors.Is(err, os.ErrExist) {
					// The restore created the directory again meanwhile (it was gone):
					// keep both, the restore reports what it could not write.
					_ = os.Rename(away, victim+".away"+strconv.Itoa(n))
				}
			}
		}()
		err = rs.Run(ctx, pl)
		close(stop)
		wg.Wait()
		if err != nil {
			t.Fatalf("round %d: Run = %v, want the restore to end and report failures", round, err)
		}
		if f := rs.Failures(); len(f) > 0 {
			failedRounds.Add(1)
			if round < 3 {
				t.Logf("round %d: %d failures, first %q", round, len(f), f[:min(3, len(f))])
			}
		}
		if escaped := entries(t, outside, ""); len(escaped) > 0 {
			t.Fatalf("round %d: the restore wrote %d entries outside its target through a swapped directory, first %q",
				round, len(escaped), escaped[0])
		}
	}
	t.Logf("%d rounds, %d swaps; %d rounds reported entries they could not write, none wrote outside", rounds, swaps.Load(), failedRounds.Load())
}
