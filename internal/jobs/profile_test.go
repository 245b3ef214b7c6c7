package jobs_test

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/repo/natsobj"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestProfile is not a test: `make profile-backup` and `make profile-restore`
// (scripts/profile.sh) run it to write a CPU and a heap profile of one backup or one
// restore of a corpus, through the same Engine the worker runs jobs with, with the
// worker's GOGC (25) and the repository's default pack size and key derivation. It is
// skipped unless BRR_PROFILE is "backup" or "restore".
//
//	BRR_PROFILE_CORPUS  the directory to back up (scripts/profile.sh builds bench-backup's)
//	BRR_PROFILE_DIR     where the repository, the restore and the profiles go
//	BRR_PROFILE_REPO    "file" (default) or "nats": a nats:// repository, an object store
//	                    on an embedded NATS server whose store is in BRR_PROFILE_DIR, opened
//	                    as the worker opens one (a pack cache in BRR_PROFILE_DIR/cache); the
//	                    server runs in the profiled process, as it does in the worker
//
// The profiles, in BRR_PROFILE_DIR: cpu.prof covers the profiled job only (for restore,
// the backup it restores from is made first and not profiled); heap.prof is the heap
// profile after it, whose alloc_space counts every allocation of the process and
// inuse_space what was live at the end; heap-peak.prof is the heap profile written when
// the job's heap was at its largest (sampled every 20 ms: what was live at the collection
// before), and the test's log says how large.
func TestProfile(t *testing.T) {
	kind := os.Getenv("BRR_PROFILE")
	if kind != "backup" && kind != "restore" {
		t.Skip("BRR_PROFILE=backup|restore runs it (make profile-backup, make profile-restore)")
	}
	corpus, dir := os.Getenv("BRR_PROFILE_CORPUS"), os.Getenv("BRR_PROFILE_DIR")
	if corpus == "" || dir == "" {
		t.Fatal("set BRR_PROFILE_CORPUS (the directory to back up) and BRR_PROFILE_DIR (where the profiles go)")
	}
	debug.SetGCPercent(25) // the worker's default gc_percent
	runtime.MemProfileRate = 64 << 10
	ctx := context.Background()
	repoDir := filepath.Join(dir, "repo")
	target := filepath.Join(dir, "restore")
	if err := os.RemoveAll(repoDir); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "state.db")); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(target); err != nil {
		t.Fatal(err)
	}
	var be repo.Backend
	var err error
	switch kind := os.Getenv("BRR_PROFILE_REPO"); kind {
	case "", "file":
		be, err = file.Open(repoDir)
	case "nats":
		if err := os.RemoveAll(filepath.Join(dir, "nats")); err != nil {
			t.Fatal(err)
		}
		if err := os.RemoveAll(filepath.Join(dir, "cache")); err != nil {
			t.Fatal(err)
		}
		srv := natstest.StartWith(t, natstest.Options(filepath.Join(dir, "nats")))
		_, js := srv.JetStream(t)
		be, err = natsobj.OpenWithOptions(ctx, js, "profile", natsobj.Options{CacheDir: filepath.Join(dir, "cache")})
	default:
		t.Fatalf("BRR_PROFILE_REPO=%q: want file or nats", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Init(ctx, be, []byte(testkit.Password), repo.Options{TempDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	// A file cache in a real state database, as the worker has: a first backup writes an
	// entry per file.
	db, err := state.Open(filepath.Join(dir, "state.db"), state.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	e := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r}, Cache: db, Host: "profile", Worker: "profile"}

	var stop func()
	startCPU := func() {
		f, err := os.Create(filepath.Join(dir, "cpu.prof"))
		if err != nil {
			t.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		stop = func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
	}

	if kind == "backup" {
		startCPU()
		defer testkit.WatchHeapPeak(t, filepath.Join(dir, "heap-peak.prof"))()
	}
	start := time.Now()
	bres, err := e.Backup(ctx, "profile-backup", brr.BackupJob{Path: corpus}, nil)
	if err != nil {
		t.Fatalf("backup %s: %v", corpus, err)
	}
	t.Logf("backup: %d files, %d bytes in %v", bres.Files, bres.Bytes, time.Since(start))
	if kind == "restore" {
		// Two collections empty the backup's sync.Pools (its chunk and blob buffers), so
		// that heap-peak.prof shows what the restore holds, not what the backup left.
		runtime.GC()
		debug.FreeOSMemory()
		startCPU()
		defer testkit.WatchHeapPeak(t, filepath.Join(dir, "heap-peak.prof"))()
		// The process's peak RSS from here on is the restore's (embedded server included).
		if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
			t.Logf("cannot reset the peak RSS (%v): VmHWM below includes the backup", err)
		}
		defer func() { t.Logf("process VmHWM after the restore: %s", vmHWM()) }()
		start = time.Now()
		rres, err := e.Restore(ctx, "profile-restore", brr.RestoreJob{Snapshot: bres.Snapshot, Target: target}, nil)
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		t.Logf("restore: %d files, %d bytes in %v", rres.Files, rres.Bytes, time.Since(start))
	}
	stop()
	f, err := os.Create(filepath.Join(dir, "heap.prof"))
	if err != nil {
		t.Fatal(err)
	}
	if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// vmHWM returns the VmHWM line of /proc/self/status: the process's peak RSS.
func vmHWM() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return err.Error()
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}
