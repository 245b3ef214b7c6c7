package soak_test

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

// pool is the soak's workers. The chaos loop restarts them under mu; the sampler and
// the diagnostics read them under it.
type pool struct {
	mu      sync.RWMutex
	workers []*testkit.Worker
}

// logs returns each worker's logs, of all its runs.
func (p *pool) logs() []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	out := make([]string, len(p.workers))
	for i, w := range p.workers {
		out[i] = w.Logs()
	}
	return out
}

// Bounds on each worker, whatever its age and load; a worker over one fails the soak.
// They come from the first 20-minute run on the project's 2-core machine (see
// docs/operations.md), where no worker passed 180 MiB of RSS, 64 goroutines or 22 open
// files: RSS at a little over twice that, goroutines and open files at about five
// times, since they jump with each job that starts and a sample every 5 s sees only
// some of the jumps. Generous enough for a busier machine or a longer soak with more
// blobs in the index; tight enough to catch a leak of memory, goroutines or files that
// grows for a few minutes.
const (
	maxRSS        = 400 << 20
	maxGoroutines = 300
	maxFDs        = 100
)

// usage is the highest figures seen of one process over all its runs.
type usage struct {
	samples    int
	rss, hwm   int64 // VmRSS, VmHWM (the kernel's peak RSS of the process), bytes
	goroutines int   // go_goroutines from /metrics
	fds        int   // entries of /proc/PID/fd
	errs       int   // samples that could not be read (a process restarting)
	// quarters is the highest RSS sampled in each quarter of the run: a leak shows as a
	// rise from one to the next (for a worker, blurred by its restarts).
	quarters [4]int64
}

func (u *usage) String() string {
	return fmt.Sprintf("peak RSS %.1f MiB (VmHWM), RSS by quarter of the run %s MiB, goroutines %d, open files %d (%d samples)",
		float64(u.hwm)/(1<<20), u.trend(), u.goroutines, u.fds, u.samples)
}

// trend is the RSS of each quarter of the run, in MiB.
func (u *usage) trend() string {
	var q []string
	for _, b := range u.quarters {
		q = append(q, fmt.Sprintf("%.0f", float64(b)/(1<<20)))
	}
	return strings.Join(q, " / ")
}

// over returns how u exceeds the bounds of a worker.
func (u *usage) over() []string {
	var out []string
	if u.hwm > maxRSS {
		out = append(out, fmt.Sprintf("peak RSS %.1f MiB > %d MiB", float64(u.hwm)/(1<<20), maxRSS>>20))
	}
	if u.goroutines > maxGoroutines {
		out = append(out, fmt.Sprintf("goroutines %d > %d", u.goroutines, maxGoroutines))
	}
	if u.fds > maxFDs {
		out = append(out, fmt.Sprintf("open files %d > %d", u.fds, maxFDs))
	}
	return out
}

// sampler reads every few seconds the memory, goroutines and open files of each worker,
// and the memory and open files of each NATS node.
type sampler struct {
	p     *pool
	nodes []*natstest.Node
	http  *http.Client
	// start and length place a sample in a quarter of the run.
	start  time.Time
	length time.Duration

	mu      sync.Mutex
	workers []*usage
	servers []*usage
}

func newSampler(p *pool, nodes []*natstest.Node, length time.Duration) *sampler {
	s := &sampler{p: p, nodes: nodes, http: &http.Client{Timeout: 3 * time.Second}, start: time.Now(), length: length}
	for range p.workers {
		s.workers = append(s.workers, &usage{})
	}
	for range nodes {
		s.servers = append(s.servers, &usage{})
	}
	return s
}

// run samples every interval until ctx ends.
func (s *sampler) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.sample()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *sampler) sample() {
	type proc struct {
		pid     int
		metrics string
	}
	s.p.mu.RLock()
	procs := make([]proc, len(s.p.workers))
	for i, w := range s.p.workers {
		procs[i] = proc{w.PID(), "http://" + w.HTTP + "/metrics"}
	}
	s.p.mu.RUnlock()
	for i, pr := range procs {
		g, err := s.goroutines(pr.metrics)
		s.record(s.workers[i], pr.pid, g, err)
	}
	for i, n := range s.nodes {
		s.record(s.servers[i], n.PID(), 0, nil)
	}
}

// record reads process pid's figures from /proc into u, with goroutines g.
func (s *sampler) record(u *usage, pid, g int, gerr error) {
	var rss, hwm int64
	var fds int
	err := gerr
	if pid == 0 {
		err = fmt.Errorf("not running")
	}
	if err == nil {
		rss, hwm, err = memory(pid)
	}
	if err == nil {
		var ents []os.DirEntry
		ents, err = os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
		fds = len(ents)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		u.errs++
		return
	}
	u.samples++
	u.rss, u.hwm = max(u.rss, rss), max(u.hwm, hwm)
	q := min(int(4*time.Since(s.start)/s.length), 3) // the checks count in the last quarter
	u.quarters[q] = max(u.quarters[q], rss)
	u.goroutines, u.fds = max(u.goroutines, g), max(u.fds, fds)
}

// memory returns VmRSS and VmHWM of process pid, in bytes.
func memory(pid int) (rss, hwm int64, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kib, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %q: %w", k, v, err)
		}
		if k == "VmRSS" {
			rss = kib << 10
		} else {
			hwm = kib << 10
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, err
	}
	if hwm == 0 {
		return 0, 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
	}
	return rss, hwm, nil
}

// goroutines reads go_goroutines from a worker's /metrics.
func (s *sampler) goroutines(url string) (int, error) {
	resp, err := s.http.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return int(f), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no go_goroutines in %s", url)
}

// report returns a copy of the figures of the workers and of the NATS nodes.
func (s *sampler) report() (workers, servers []usage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range s.workers {
		workers = append(workers, *u)
	}
	for _, u := range s.servers {
		servers = append(servers, *u)
	}
	return workers, servers
}
