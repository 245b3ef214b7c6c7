package repo_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// The index benchmark (make bench-index, scripts/bench-index.sh): TestBenchIndex writes a
// repository of synthetic index files naming BRR_BENCH_INDEX blobs (a comma-separated
// list of counts) in BENCH_DIR, then opens each in a fresh process of this test binary,
// which loads the index and reports its load time, the heap the index takes (live heap
// after a GC, less the heap before Open) and the process's peak RSS (VmHWM). It is skipped
// unless BRR_BENCH_INDEX is set; it asserts nothing about the figures.

// benchIndexTarget is issue 14's bound on the heap a blob of the index takes.
const benchIndexTarget = 48

type benchIndexResult struct {
	Blobs     int     `json:"blobs"`
	Packs     int     `json:"packs"`
	LoadSec   float64 `json:"load_s"`
	CPUSec    float64 `json:"cpu_s"`
	HeapBytes uint64  `json:"heap_bytes"`
	PeakRSS   uint64  `json:"peak_rss_bytes"`
}

func TestBenchIndex(t *testing.T) {
	if dir := os.Getenv("BRR_BENCH_INDEX_CHILD"); dir != "" {
		benchIndexChild(t, dir)
		return
	}
	spec := os.Getenv("BRR_BENCH_INDEX")
	if spec == "" {
		t.Skip("the index benchmark: run make bench-index")
	}
	base := os.Getenv("BENCH_DIR")
	if base == "" {
		base = filepath.Join(os.TempDir(), "brr-bench-index")
	}
	perPack := 1000
	if v := os.Getenv("BLOBS_PER_PACK"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("BLOBS_PER_PACK=%q: want a positive number", v)
		}
		perPack = n
	}
	var results []benchIndexResult
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < perPack {
			t.Fatalf("BRR_BENCH_INDEX=%q: want blob counts of at least %d, comma-separated", spec, perPack)
		}
		dir := filepath.Join(base, fmt.Sprintf("repo-%d-%d", n, perPack))
		if _, err := os.Stat(dir + ".done"); err != nil {
			t.Logf("writing a synthetic index of %d blobs, %d a pack, in %s", n, perPack, dir)
			if err := os.RemoveAll(dir); err != nil {
				t.Fatal(err)
			}
			r, _ := testkit.InitRepo(t, dir, repo.Options{KDF: testkit.CheapKDF})
			if err := repo.SaveSyntheticIndex(context.Background(), r, n/perPack, perPack, uint64(n)); err != nil {
				t.Fatalf("write the synthetic index: %v", err)
			}
			r.Close()
			if err := os.WriteFile(dir+".done", nil, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		cmd := exec.Command(os.Args[0], "-test.run", "^TestBenchIndex$", "-test.count", "1", "-test.v")
		cmd.Env = append(os.Environ(), "BRR_BENCH_INDEX_CHILD="+dir)
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("load of %s: %v\n%s", dir, err, out)
		}
		var res benchIndexResult
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			if line, ok := strings.CutPrefix(sc.Text(), "BENCH-INDEX "); ok {
				if err := json.Unmarshal([]byte(line), &res); err != nil {
					t.Fatal(err)
				}
			}
		}
		if res.Blobs == 0 {
			t.Fatalf("load of %s reported nothing:\n%s", dir, out)
		}
		results = append(results, res)
	}
	load, _ := os.ReadFile("/proc/loadavg")
	fmt.Printf("\nbench-index %s, %d cores, load %s, %s, %d blobs a pack\n",
		time.Now().UTC().Format("2006-01-02T15:04Z"), runtime.NumCPU(), strings.Join(strings.Fields(string(load))[:3], " "), runtime.Version(), perPack)
	fmt.Printf("%-12s | %-8s | %-18s | %-11s | %-11s | %s\n", "blobs", "packs", "load (CPU)", "heap/blob", "peak RSS", "target heap/blob <= 48 B")
	fmt.Println(strings.Repeat("-", 90))
	for _, r := range results {
		per := float64(r.HeapBytes) / float64(r.Blobs)
		verdict := "met"
		if per > benchIndexTarget {
			verdict = "MISSED"
		}
		fmt.Printf("%-12d | %-8d | %-18s | %-11s | %-11s | %s\n", r.Blobs, r.Packs, fmt.Sprintf("%.2fs (%.2fs)", r.LoadSec, r.CPUSec),
			fmt.Sprintf("%.1f B", per), fmt.Sprintf("%.1f MiB", float64(r.PeakRSS)/(1<<20)), verdict)
	}
	fmt.Println("load: wall clock (CPU time, user+sys, all threads) of Open, which loads the index; heap/blob: live heap after a GC")
	fmt.Println("with the index loaded, less before Open, over blobs; peak RSS: VmHWM of the loading process. No restic figure:")
	fmt.Println("restic has no synthetic-index loader; bench-prune compares the two on a real repository.")
}

// benchIndexChild opens the repository in dir, loads its index and prints the figures.
func benchIndexChild(t *testing.T, dir string) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	be, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	start, cpu0 := time.Now(), cpuTime()
	r, err := repo.Open(context.Background(), be, []byte(testkit.Password), repo.Options{KDF: testkit.CheapKDF})
	if err != nil {
		t.Fatal(err)
	}
	took, cpu := time.Since(start), cpuTime()-cpu0
	runtime.GC()
	runtime.ReadMemStats(&after)
	st := r.Stats()
	res := benchIndexResult{Blobs: st.Blobs, Packs: st.Packs, LoadSec: took.Seconds(), CPUSec: cpu.Seconds(), HeapBytes: after.HeapAlloc - before.HeapAlloc, PeakRSS: uint64(vmHWM(t))}
	runtime.KeepAlive(r)
	b, _ := json.Marshal(res)
	fmt.Printf("BENCH-INDEX %s\n", b)
	r.Close()
}

// cpuTime returns the user and system CPU time the process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
