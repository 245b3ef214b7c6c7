package repo_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestPruneProfile profiles a prune (keep the newest snapshot, GC with a 1 s grace, then
// GC again after it, as bench-prune's two prune jobs do) of a copy of a real repository,
// such as the one bench-prune's KEEP_REPOS=1 saves. It runs only when
// BRR_PRUNE_PROFILE_REPO names the repository directory:
//
//	BRR_PRUNE_PROFILE_REPO=/tmp/brr-bench-prune/before-prune/brr-data/repo \
//	BRR_PRUNE_PROFILE_KEY=/tmp/brr-bench-prune/before-prune/brr-data/local.key \
//	BRR_PRUNE_PROFILE_DIR=.profiles/prune go test -run '^TestPruneProfile$' -v ./internal/repo/
//
// It copies the repository into BRR_PRUNE_PROFILE_DIR/work (removed at the end) and writes
// cpu.prof (both GCs), heap.prof (alloc_space) and heap-peak.prof (inuse_space at the
// largest heap) there, and logs each phase's time and the process's peak RSS.
func TestPruneProfile(t *testing.T) {
	src := os.Getenv("BRR_PRUNE_PROFILE_REPO")
	if src == "" {
		t.Skip("set BRR_PRUNE_PROFILE_REPO (and _KEY, _DIR) to profile a prune of a real repository")
	}
	out := os.Getenv("BRR_PRUNE_PROFILE_DIR")
	if out == "" {
		out = t.TempDir()
	}
	key, err := os.ReadFile(os.Getenv("BRR_PRUNE_PROFILE_KEY"))
	if err != nil {
		t.Fatal(err)
	}
	work := filepath.Join(out, "work")
	_ = os.RemoveAll(work)
	if b, err := exec.Command("cp", "-a", src, work).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v: %s", err, b)
	}
	defer os.RemoveAll(work)

	ctx := context.Background()
	be, err := file.Open(work)
	if err != nil {
		t.Fatal(err)
	}
	cpu, err := os.Create(filepath.Join(out, "cpu.prof"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.StartCPUProfile(cpu); err != nil {
		t.Fatal(err)
	}
	stopPeak := testkit.WatchHeapPeak(t, filepath.Join(out, "heap-peak.prof"))
	start := time.Now()
	r, err := repo.Open(ctx, be, []byte(strings.TrimSpace(string(key))), repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	t.Logf("open: %v, VmHWM %d MiB, %+v", time.Since(start).Round(time.Millisecond), vmHWM(t)>>20, r.Stats())
	sns, err := r.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(sns, func(a, b *repo.Snapshot) int { return b.Time.Compare(a.Time) })
	for _, sn := range sns[1:] {
		if err := r.RemoveSnapshot(ctx, sn.ID); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	phase, phaseStart := "", time.Now()
	progress := func(p repo.GCProgress) {
		mu.Lock()
		defer mu.Unlock()
		if p.Phase != phase {
			if phase != "" {
				t.Logf("  %s ended after %v", phase, time.Since(phaseStart).Round(time.Millisecond))
			}
			phase, phaseStart = p.Phase, time.Now()
		}
	}
	for i := 1; i <= 2; i++ {
		start := time.Now()
		phase = ""
		rep, err := r.GC(ctx, repo.GCOptions{Grace: time.Second, Progress: progress})
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("GC %d: %v (last phase %s ended then), VmHWM %d MiB; %+v", i, time.Since(start).Round(time.Millisecond), phase, vmHWM(t)>>20, *rep)
		if i == 1 {
			time.Sleep(time.Until(start.Add(time.Second + 50*time.Millisecond)))
		}
	}
	pprof.StopCPUProfile()
	cpu.Close()
	stopPeak()
	f, err := os.Create(filepath.Join(out, "heap.prof"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
}
