package health

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
)

// DiskUsage returns the space free for unprivileged users and the size of the file
// system that holds path; an error on a system where it is not measured.
func DiskUsage(path string) (free, total uint64, err error) { return diskUsage(path) }

// DiskCheck reports the free space of each live worker's data dir, from the workers'
// heartbeats: warn below Warn percent free, critical below Critical percent.
type DiskCheck struct {
	// Workers returns the heartbeats, missing ones marked; Monitor.Workers does.
	Workers func() []brr.WorkerInfo
	// Warn (default 10) and Critical (default 5) are percentages of free space.
	Warn, Critical float64
}

// Name returns brr.CheckDisk.
func (c *DiskCheck) Name() string { return brr.CheckDisk }

// Run reports every live worker that measures its disk.
func (c *DiskCheck) Run(_ context.Context, _ Tick) (Outcome, error) {
	warn, crit := cmp.Or(c.Warn, 10), cmp.Or(c.Critical, 5)
	var out Outcome
	for _, w := range c.Workers() {
		if w.Missing || w.DiskTotalBytes == 0 {
			continue
		}
		pct := 100 * float64(w.DiskFreeBytes) / float64(w.DiskTotalBytes)
		res := brr.HealthCheck{Check: brr.CheckDisk, Subject: w.ID, Value: pct, Status: brr.HealthOK}
		res.Message = fmt.Sprintf("the data dir of worker %s (host %s) has %s free of %s (%.1f%%)", w.ID, w.Host, brr.FormatBytes(int64(w.DiskFreeBytes)), brr.FormatBytes(int64(w.DiskTotalBytes)), pct)
		limit := warn
		switch {
		case pct < crit:
			res.Status, limit = brr.HealthCritical, crit
		case pct < warn:
			res.Status = brr.HealthWarn
		}
		if res.Status != brr.HealthOK {
			res.Message += fmt.Sprintf(", below %g%%: free space there, or move the data dir to a larger disk", limit)
		}
		out.Results = append(out.Results, res)
	}
	return out, nil
}

// RepoRegistryCheck reports, from the live workers' heartbeats, whether each worker serves
// every repo it has as its pools registered them (the BRR_REPOS bucket): critical for a
// worker that refuses a repo, since a repo name then means two repositories in the pool.
type RepoRegistryCheck struct {
	// Workers returns the heartbeats, missing ones marked; Monitor.Workers does.
	Workers func() []brr.WorkerInfo
}

// Name returns brr.CheckRepoRegistry.
func (c *RepoRegistryCheck) Name() string { return brr.CheckRepoRegistry }

// Run reports every live worker; the value is the number of repos it refuses: critical
// when one of them is another repository than the pool's, warn when it only cannot open
// one.
func (c *RepoRegistryCheck) Run(_ context.Context, _ Tick) (Outcome, error) {
	var out Outcome
	for _, w := range c.Workers() {
		if w.Missing {
			continue
		}
		res := brr.HealthCheck{Check: brr.CheckRepoRegistry, Subject: w.ID, Value: float64(len(w.RefusedRepos)), Status: brr.HealthOK,
			Message: fmt.Sprintf("worker %s (host %s) serves every repo it has as its pools registered them", w.ID, w.Host)}
		if len(w.RefusedRepos) > 0 {
			// A conflict splits the pool's backups: critical. A repo the worker cannot
			// open (it lacks the secret, or cannot reach the location) only leaves its
			// jobs to the others: warn.
			res.Status = brr.HealthWarn
			msgs := make([]string, len(w.RefusedRepos))
			for i, r := range w.RefusedRepos {
				msgs[i] = r.Message
				if r.Reason != brr.RefusedUnavailable {
					res.Status = brr.HealthCritical
				}
			}
			res.Message = fmt.Sprintf("worker %s (host %s) refuses %d repo(s): %s", w.ID, w.Host, len(w.RefusedRepos), strings.Join(msgs, " | "))
		}
		out.Results = append(out.Results, res)
	}
	return out, nil
}

// DLQCheck reports the depth of the dead-letter stream: warn when it holds any job.
type DLQCheck struct {
	JS       jetstream.JetStream
	Subjects brr.Subjects
}

// Name returns brr.CheckDLQ.
func (c *DLQCheck) Name() string { return brr.CheckDLQ }

// Run reads the stream's message count.
func (c *DLQCheck) Run(ctx context.Context, _ Tick) (Outcome, error) {
	name := c.Subjects.DLQStream()
	st, err := c.JS.Stream(ctx, name)
	if err != nil {
		return Outcome{}, fmt.Errorf("look up stream %s: %w", name, err)
	}
	n := st.CachedInfo().State.Msgs
	res := brr.HealthCheck{Check: brr.CheckDLQ, Subject: name, Value: float64(n), Status: brr.HealthOK,
		Message: "no job in the dead-letter stream"}
	if n > 0 {
		res.Status = brr.HealthWarn
		res.Message = fmt.Sprintf("%d job(s) in the dead-letter stream failed for good: list them with brr dlq, fix the cause, then brr dlq retry ID, or drop one with brr dlq rm ID", n)
	}
	return Outcome{Results: []brr.HealthCheck{res}}, nil
}

// CanaryCheck sends a ping job to each pool and measures its latency from publish to
// succeeded: warn above Warn, critical when it fails or does not end within the
// interval (the turn's context).
type CanaryCheck struct {
	Client *brr.Client
	Pools  []string
	// Warn is the latency above which the canary warns; default 5s.
	Warn time.Duration
}

// Name returns brr.CheckCanary.
func (c *CanaryCheck) Name() string { return brr.CheckCanary }

// Run pings every pool at once.
func (c *CanaryCheck) Run(ctx context.Context, t Tick) (Outcome, error) {
	out := Outcome{Results: make([]brr.HealthCheck, len(c.Pools))}
	var wg sync.WaitGroup
	for i, pool := range c.Pools {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out.Results[i] = c.ping(ctx, pool, t.Time)
		}()
	}
	wg.Wait()
	return out, nil
}

// ping sends one ping job to pool and waits for its end.
func (c *CanaryCheck) ping(ctx context.Context, pool string, tick time.Time) brr.HealthCheck {
	res := brr.HealthCheck{Check: brr.CheckCanary, Subject: pool, Value: -1}
	id := "canary-" + pool + "-" + strconv.FormatInt(tick.UnixNano(), 10)
	start := time.Now()
	fail := func(err error) brr.HealthCheck {
		res.Status = brr.HealthCritical
		if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
			res.Message = fmt.Sprintf("the ping job %s to pool %s did not end within the health interval (%s): are workers of pool %s running (brr workers) and keeping up (brr_consumer_pending)?",
				id, pool, human(time.Since(start)), pool)
		} else {
			res.Message = fmt.Sprintf("the ping job %s to pool %s failed: %v", id, pool, err)
		}
		return res
	}
	w, err := c.Client.Watch(ctx, id, nil)
	if err != nil {
		return fail(err)
	}
	defer w.Stop()
	if _, err := c.Client.Publish(ctx, brr.PingJob{}, brr.WithID(id), brr.WithJobPool(pool), brr.WithBy("health canary")); err != nil {
		return fail(err)
	}
	if _, err := w.Result(ctx); err != nil {
		return fail(err)
	}
	latency := time.Since(start)
	res.Value = float64(latency.Microseconds()) / 1000
	warn := cmp.Or(c.Warn, 5*time.Second)
	res.Status = brr.HealthOK
	res.Message = fmt.Sprintf("a ping job went through pool %s in %s", pool, latency.Round(time.Millisecond))
	if latency > warn {
		res.Status = brr.HealthWarn
		res.Message += fmt.Sprintf(", more than %s: the workers are busy or slow to take jobs; see brr_consumer_pending and brr_jobs_in_flight", warn)
	}
	return res
}
