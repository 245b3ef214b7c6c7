package soak_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

const (
	workers     = 3
	sourceCount = 4
	// workerKillEvery and natsKillEvery are the faults: a random worker gets SIGKILL and
	// is started again every minute; a random NATS node every five.
	workerKillEvery = time.Minute
	natsKillEvery   = 5 * time.Minute
	// natsDown is how long a killed NATS node stays down.
	natsDown = 15 * time.Second
	// jobTimeout is how long a job may take from its publication to its end before it
	// counts as stuck: the longest job (a verify --read-data) takes well under a minute
	// here, a killed worker's job comes back within seconds, and a snoozed one within a
	// minute.
	jobTimeout = 10 * time.Minute
	// quiet is how long the whole pool may go without ending a job while jobs are
	// pending before the watchdog calls it a hang and dumps what JetStream says.
	quiet = 4 * time.Minute
)

// TestSoak runs the mix of jobs for SOAK (20 minutes by default) against a 3-node cluster
// of nats-server processes with R3 streams and three brr-worker processes that share a
// file:// and a nats:// repository, killing a random worker every minute and a random NATS
// node every five, then checks: every job ended exactly once, with the outcome expected
// of it, none hung; every snapshot in both repositories verifies with read-data and
// restores to what was backed up; each worker's peak RSS, goroutines and open files
// stayed within the bounds printed.
func TestSoak(t *testing.T) {
	if !enabled {
		t.Skip("soak test: runs with BRR_SOAK=1 (make soak; SOAK=2h for longer)")
	}
	length, err := duration()
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	diag := filepath.Join(os.TempDir(), "brr-soak-"+began.Format("20060102-150405"))
	if err := os.MkdirAll(diag, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("soak of %s, %d workers, 3 NATS nodes; diagnostics and logs in %s", length, workers, diag)

	cl := natstest.StartProcessCluster(t, bins.NATSServer, 3)
	url := cl.URL()
	dir := t.TempDir()
	cfg := workerConfig(t, dir)
	p := &pool{}
	for range workers {
		// One at a time: the first creates the streams and the repositories.
		p.workers = append(p.workers, bins.StartWorker(t, testkit.WorkerOptions{NATS: url, Config: cfg}))
	}
	t.Cleanup(func() { saveLogs(t, diag, p, cl) })
	nc, c := testkit.Connect(t, url)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}

	var sources []*source
	for i := range sourceCount {
		src := &source{dir: filepath.Join(dir, fmt.Sprintf("src-%d", i+1)), seed: uint64(i + 1)}
		if err := os.MkdirAll(src.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		sources = append(sources, src)
	}
	restores := filepath.Join(dir, "restores")
	if err := os.MkdirAll(restores, 0o755); err != nil {
		t.Fatal(err)
	}
	l := newLedger()
	d := &driver{t: t, c: c, js: js, l: l, p: p, dir: restores, diag: diag, jobTimeout: jobTimeout}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	smp := newSampler(p, cl.Nodes, length)
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		smp.run(ctx, 5*time.Second)
	}()
	stop, stopMix := context.WithTimeout(ctx, length)
	defer stopMix()
	lanes := d.lanes(ctx, stop, sources)

	ch := &chaos{t: t, p: p, cl: cl, js: js}
	ch.run(stop, l, d)
	mixEnded := time.Now()
	t.Logf("mix stopped after %s: %d worker kills, %d NATS node kills; waiting for the jobs in flight", mixEnded.Sub(began).Round(time.Second), ch.workerKills, len(ch.natsKills))

	finished := make(chan struct{})
	go func() {
		lanes.Wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-time.After(jobTimeout + 2*time.Minute):
		t.Errorf("the lanes did not return %s after the mix stopped; in flight: %s", jobTimeout+2*time.Minute, describe(l.inFlight()))
		cancel()
		<-finished
	}

	chk := &checker{t: t, c: c, js: js, d: d, l: l}
	chk.all(ctx)
	cancel()
	<-sampled

	// The figures, for docs/operations.md.
	wu, su := smp.report()
	t.Logf("soak %s (mix %s, checks %s) on %s, commit %s, %d cores",
		time.Since(began).Round(time.Second), mixEnded.Sub(began).Round(time.Second), time.Since(mixEnded).Round(time.Second),
		began.UTC().Format("2006-01-02"), commit(), runtime.NumCPU())
	t.Logf("jobs by kind: %s", l.byKind())
	t.Logf("kills: %d workers (SIGKILL, restarted at once), %d NATS nodes (SIGKILL, down %s; %d of them led the job stream or its consumer): %s",
		ch.workerKills, len(ch.natsKills), natsDown, ch.failovers, strings.Join(ch.natsKills, "; "))
	t.Logf("publishes repeated (no answer during a failover) %d; restores compared byte for byte %d (%.1f MiB); %s",
		l.publishRetries, l.restored, float64(l.restoredBytes)/(1<<20), chk.summary)
	t.Logf("bounds per worker: peak RSS %d MiB, goroutines %d, open files %d", maxRSS>>20, maxGoroutines, maxFDs)
	for i, u := range wu {
		t.Logf("worker %d: %s", i+1, &u)
		for _, o := range u.over() {
			t.Errorf("worker %d over its bound: %s", i+1, o)
		}
	}
	for i, u := range su {
		t.Logf("nats-server %s: peak RSS %.1f MiB (VmHWM), RSS by quarter %s MiB, open files %d", cl.Nodes[i].Name, float64(u.hwm)/(1<<20), u.trend(), u.fds)
	}
	for _, pr := range l.problemList() {
		t.Error(pr)
	}
}

// workerConfig writes the repositories' keys into dir and returns the configuration every
// worker gets: the same repositories (URLs and key files), R3 streams, the replication
// and retention policies, and a prune grace short enough that prunes delete data during
// the soak while backups, restores and replications run.
func workerConfig(t *testing.T, dir string) string {
	keys := map[string]string{}
	for _, name := range []string{repoLocal, repoOffsite} {
		keys[name] = filepath.Join(dir, name+".key")
		testkit.WriteFile(t, keys[name], []byte("soak key of "+name+" "+brr.NewID()), 0o600)
	}
	return fmt.Sprintf(`streams: {replicas: 3}
repos:
  %[1]s: {url: "file://%[3]s", key_file: %[4]q}
  %[2]s: {url: "nats://brr-soak-offsite", key_file: %[5]q}
default_repo: %[1]s
replicate: {%[1]s: [%[2]s]}
retention:
  %[1]s: {keep_last: 3, tags: {%[6]s: {}}}
  %[2]s: {keep_last: 5, tags: {%[6]s: {}}}
prune: {grace: 2m}
`, repoLocal, repoOffsite, filepath.Join(dir, "repo-local"), keys[repoLocal], keys[repoOffsite], tagKeep)
}

// chaos kills: a random worker every minute, a random NATS node every five. It runs in
// the test's goroutine, which starts processes again (and may fail the test doing so).
type chaos struct {
	t  *testing.T
	p  *pool
	cl *natstest.ProcessCluster
	js jetstream.JetStream

	workerKills int
	natsKills   []string // what each NATS kill did to the job stream's leaders
	// failovers counts the NATS kills that took the leader of the job stream or of the
	// pool's consumer: the kills that made their Raft group elect another.
	failovers int
}

// run kills until stop ends, and watches for a hang meanwhile.
func (ch *chaos) run(stop context.Context, l *ledger, d *driver) {
	workerTick := time.NewTicker(workerKillEvery)
	defer workerTick.Stop()
	natsTick := time.NewTicker(natsKillEvery)
	defer natsTick.Stop()
	watch := time.NewTicker(10 * time.Second)
	defer watch.Stop()
	hung := false
	for {
		select {
		case <-stop.Done():
			return
		case <-workerTick.C:
			ch.killWorker()
		case <-natsTick.C:
			ch.killNATS(stop)
		case <-watch.C:
			// A hang (the job stream "stopped acking") shows as jobs that never end: the
			// watchdog dumps what is pending once, the lanes' timeouts fail the jobs.
			if pending := l.inFlight(); !hung && len(pending) > 0 && l.sinceLastEnd() > quiet {
				hung = true
				d.stuck(pending[0].id, pending[0].what, fmt.Sprintf("no job of the pool ended for %s while %d were pending", quiet, len(pending)))
			}
		}
	}
}

func (ch *chaos) killWorker() {
	i := rand.N(len(ch.p.workers))
	ch.p.mu.Lock()
	defer ch.p.mu.Unlock()
	w := ch.p.workers[i]
	w.Kill()
	ch.workerKills++
	killed := time.Now()
	w.Start()
	ch.t.Logf("%s worker %d (%s) killed, ready again after %s", killed.Format("15:04:05"), i+1, w.ID, time.Since(killed).Round(100*time.Millisecond))
}

// killNATS kills a random node, keeps it down for natsDown and starts it again, and
// records which of the job stream and its consumer it led and who leads them after.
func (ch *chaos) killNATS(ctx context.Context) {
	n := ch.cl.Nodes[rand.N(len(ch.cl.Nodes))]
	stream, consumer := ch.leaders(ctx)
	killed := time.Now()
	n.Kill()
	time.Sleep(natsDown)
	n.Start()
	back := time.Since(killed)
	stream2, consumer2 := ch.leaders(ctx)
	if stream == n.Name || consumer == n.Name {
		ch.failovers++
	}
	ch.t.Logf("%s nats-server %s killed, healthy again after %s", killed.Format("15:04:05"), n.Name, back.Round(100*time.Millisecond))
	ch.natsKills = append(ch.natsKills, fmt.Sprintf("%s at %s (led stream %v, consumer %v; leaders now %s, %s; healthy again after %s)",
		n.Name, killed.Format("15:04:05"), stream == n.Name, consumer == n.Name, stream2, consumer2, back.Round(100*time.Millisecond)))
}

// leaders returns the nodes that lead the job stream and the default pool's consumer.
func (ch *chaos) leaders(ctx context.Context) (stream, consumer string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	s, err := ch.js.Stream(ctx, brr.Subjects{}.JobsStream())
	if err != nil {
		return "?", "?"
	}
	if ci := s.CachedInfo().Cluster; ci != nil {
		stream = ci.Leader
	}
	cons, err := s.Consumer(ctx, brr.Subjects{}.Consumer(brr.DefaultPool))
	if err != nil {
		return stream, "?"
	}
	if ci := cons.CachedInfo().Cluster; ci != nil {
		consumer = ci.Leader
	}
	return stream, consumer
}

// describe lists jobs for a message.
func describe(jobs []*job) string {
	var parts []string
	for _, j := range jobs {
		parts = append(parts, fmt.Sprintf("%s (%s, published %s)", j.id, j.what, j.published.Format("15:04:05")))
	}
	return strings.Join(parts, "; ")
}

// saveLogs copies the workers' and the NATS nodes' logs into dir, which outlives the test.
func saveLogs(t *testing.T, dir string, p *pool, cl *natstest.ProcessCluster) {
	for i, logs := range p.logs() {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("worker-%d.log", i+1)), []byte(logs), 0o644); err != nil {
			t.Log(err)
		}
	}
	for _, n := range cl.Nodes {
		if data, err := os.ReadFile(filepath.Join(n.Dir, "nats.log")); err == nil {
			_ = os.WriteFile(filepath.Join(dir, n.Name+".log"), data, 0o644)
		}
	}
}

// commit names the tree the soak ran on.
func commit() string {
	out, err := exec.Command("git", "describe", "--always", "--dirty").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}
