package main

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

// benchDefaultTimeout bounds a bench run without --timeout, so that a pool with no worker
// does not hang it.
const benchDefaultTimeout = 5 * time.Minute

func (m *Main) benchCmd() *cobra.Command {
	var (
		jobs, publishers int
		rate             float64
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure the pipeline with ping jobs: jobs/s and latency",
		Long: `Publish --jobs ping jobs from --publishers goroutines (asynchronously, paced to
--rate jobs/s when given) and measure, from the events the workers publish:
  - jobs/s end to end, from the first publish to the last job succeeded;
  - latency from publish to started and from publish to succeeded: p50, p99, max.
A ping job does nothing but pass through the whole pipeline: decode, lease, state,
events, ack. Times are taken on this host when the events arrive. Ping jobs that end
failed or dead are counted, and make the run exit 1.`,
		Example: `  brr bench --jobs 10000 --publishers 4
  brr bench --jobs 2000 --rate 500 --json`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			if jobs < 1 || publishers < 1 || rate < 0 {
				return usageError(fmt.Errorf("--jobs and --publishers must be at least 1 and --rate not negative (got %d, %d, %g)", jobs, publishers, rate))
			}
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				if m.timeout == 0 {
					var cancel context.CancelFunc
					ctx, cancel = context.WithTimeout(ctx, benchDefaultTimeout)
					defer cancel()
				}
				r, err := runBench(ctx, c, jobs, publishers, rate)
				if err != nil {
					return err
				}
				if m.json {
					if err := m.printJSON(r); err != nil {
						return err
					}
				} else {
					r.print(m)
				}
				if r.Failed > 0 {
					return &exitError{code: exitFailed, err: fmt.Errorf("%d of %d ping jobs failed (first: %s): see why with: brr dlq ls", r.Failed, r.Jobs, r.FirstFailure)}
				}
				if r.Succeeded < r.Jobs {
					return &exitError{code: exitFailed, err: fmt.Errorf("%d of %d ping jobs did not succeed in time (publish errors: %d): are workers running for pool %q?", r.Jobs-r.Succeeded, r.Jobs, r.PublishErrors, c.Pool())}
				}
				return nil
			})
		},
	}
	cmd.Flags().IntVar(&jobs, "jobs", 1000, "number of ping jobs")
	cmd.Flags().IntVar(&publishers, "publishers", 4, "number of concurrent publishers")
	cmd.Flags().Float64Var(&rate, "rate", 0, "publish at most this many jobs/s in all (0: as fast as possible)")
	return cmd
}

// latency is a summary of durations, in milliseconds.
type latency struct {
	P50 float64 `json:"p50_ms"`
	P99 float64 `json:"p99_ms"`
	Max float64 `json:"max_ms"`
}

func summarize(ds []time.Duration) latency {
	if len(ds) == 0 {
		return latency{}
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	at := func(p float64) float64 {
		i := int(p*float64(len(ds))+0.5) - 1
		i = min(max(i, 0), len(ds)-1)
		return float64(ds[i]) / float64(time.Millisecond)
	}
	return latency{P50: at(0.50), P99: at(0.99), Max: float64(ds[len(ds)-1]) / float64(time.Millisecond)}
}

type benchResult struct {
	Jobs          int     `json:"jobs"`
	Publishers    int     `json:"publishers"`
	Rate          float64 `json:"rate,omitempty"`
	Published     int     `json:"published"`
	PublishErrors int     `json:"publish_errors"`
	Started       int     `json:"started"`
	Succeeded     int     `json:"succeeded"`
	Failed        int     `json:"failed"`                  // ended failed or dead
	FirstFailure  string  `json:"first_failure,omitempty"` // the first of them, and why
	PublishSecs   float64 `json:"publish_seconds"`
	PublishRate   float64 `json:"publish_per_sec"`
	Seconds       float64 `json:"seconds"`
	JobsPerSec    float64 `json:"jobs_per_sec"`
	ToStarted     latency `json:"publish_to_started"`
	ToSucceeded   latency `json:"publish_to_succeeded"`
	FirstError    string  `json:"first_error,omitempty"`
}

func (r *benchResult) print(m *Main) {
	w := m.Stdout
	fmt.Fprintf(w, "published   %d ping jobs with %d publishers in %.2fs (%.0f jobs/s)", r.Published, r.Publishers, r.PublishSecs, r.PublishRate)
	if r.PublishErrors > 0 {
		fmt.Fprintf(w, ", %d errors (first: %s)", r.PublishErrors, r.FirstError)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "succeeded   %d of %d in %.2fs: %.0f jobs/s end to end\n", r.Succeeded, r.Jobs, r.Seconds, r.JobsPerSec)
	fmt.Fprintf(w, "failed: %d", r.Failed)
	if r.Failed > 0 {
		fmt.Fprintf(w, " (first: %s)", r.FirstFailure)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-12s%10s %10s %10s\n", "latency", "p50", "p99", "max")
	for _, l := range []struct {
		name string
		l    latency
	}{{"→ started", r.ToStarted}, {"→ succeeded", r.ToSucceeded}} {
		fmt.Fprintf(w, "%-12s%8.1fms %8.1fms %8.1fms\n", l.name, l.l.P50, l.l.P99, l.l.Max)
	}
}

// runBench publishes n ping jobs from p goroutines and measures them through the events
// of their start and success; it counts those that end failed or dead, and returns when
// every job has ended or ctx is done.
func runBench(ctx context.Context, c *brr.Client, n, p int, rate float64) (*benchResult, error) {
	run := "bench-" + brr.NewID() + "-"
	published := make([]atomic.Int64, n) // publish time in ns since start, +1 (0: not yet)
	var (
		mu                   sync.Mutex
		toStarted, toSucceed []time.Duration
		seenStarted          = make([]bool, n)
		ended                = make([]bool, n) // succeeded, failed or dead
		nEnded, nFailed      int
		firstFailure         string
		lastSucceeded        time.Time
	)
	allDone := make(chan struct{})
	// end records job i's end; mu is held.
	end := func(i int) {
		ended[i] = true
		if nEnded++; nEnded == n {
			close(allDone)
		}
	}
	start := time.Now()
	index := func(e *brr.Event) (int, time.Duration, bool) {
		s, ok := strings.CutPrefix(e.JobID, run)
		if !ok {
			return 0, 0, false
		}
		i, err := strconv.Atoi(s)
		if err != nil || i < 0 || i >= n {
			return 0, 0, false
		}
		t := published[i].Load()
		if t == 0 {
			return 0, 0, false
		}
		return i, time.Since(start) - time.Duration(t-1), true
	}
	subCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One subscription to every ping event, in stream order: a job's started event is
	// counted before its end, so every job that ended has its start counted.
	all := c.Subjects().Event(&brr.Event{Type: brr.EventJob, Kind: brr.KindPing, Status: "*"})
	if err := c.Subscribe(subCtx, all, func(e *brr.Event) {
		i, d, ok := index(e)
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		switch {
		case e.Status == brr.StatusStarted && !seenStarted[i]:
			seenStarted[i] = true
			toStarted = append(toStarted, d)
		case ended[i]: // an end delivered twice counts once
		case e.Status == brr.StatusSucceeded:
			toSucceed = append(toSucceed, d)
			lastSucceeded = time.Now()
			end(i)
		case e.Status == brr.StatusFailed || e.Status == brr.StatusDead:
			if nFailed++; nFailed == 1 {
				firstFailure = fmt.Sprintf("job %s %s: %s", e.JobID, e.Status, oneLine(e.Error, 200))
			}
			end(i)
		}
	}); err != nil {
		return nil, err
	}

	r := &benchResult{Jobs: n, Publishers: p, Rate: rate}
	var (
		next      atomic.Int64
		pubErrors atomic.Int64
		firstErr  atomic.Value
		wg        sync.WaitGroup
	)
	start = time.Now()
	fail := func(err error) {
		pubErrors.Add(1)
		firstErr.CompareAndSwap(nil, err.Error())
	}
	for range p {
		wg.Go(func() {
			var futures []*brr.PublishFuture
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					break
				}
				if rate > 0 {
					due := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
					if d := time.Until(due); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
							return
						}
					}
				}
				published[i].Store(int64(time.Since(start)) + 1)
				f, err := c.PublishAsync(brr.PingJob{}, brr.WithID(run+strconv.Itoa(i)), brr.WithBy("brr bench"))
				for stalls := 0; errors.Is(err, jetstream.ErrTooManyStalledMsgs) && stalls < 1000 && ctx.Err() == nil; stalls++ {
					// Too many publishes wait for their ack (a loaded server): wait a
					// little and publish again, rather than count a job lost.
					time.Sleep(time.Millisecond)
					published[i].Store(int64(time.Since(start)) + 1)
					f, err = c.PublishAsync(brr.PingJob{}, brr.WithID(run+strconv.Itoa(i)), brr.WithBy("brr bench"))
				}
				if err != nil {
					fail(err)
					continue
				}
				futures = append(futures, f)
			}
			for _, f := range futures {
				if _, err := f.Result(ctx); err != nil {
					fail(err)
				}
			}
		})
	}
	wg.Wait()
	publishDone := time.Since(start)

	select {
	case <-allDone:
	case <-ctx.Done():
	}
	cancel()

	mu.Lock()
	defer mu.Unlock()
	r.PublishErrors = int(pubErrors.Load())
	if v, ok := firstErr.Load().(string); ok {
		r.FirstError = v
	}
	r.Published = n - r.PublishErrors
	r.PublishSecs = publishDone.Seconds()
	if r.PublishSecs > 0 {
		r.PublishRate = float64(r.Published) / r.PublishSecs
	}
	r.Started, r.Succeeded = len(toStarted), len(toSucceed)
	r.Failed, r.FirstFailure = nFailed, firstFailure
	if r.Succeeded > 0 {
		r.Seconds = lastSucceeded.Sub(start).Seconds()
		if r.Seconds > 0 {
			r.JobsPerSec = float64(r.Succeeded) / r.Seconds
		}
	}
	r.ToStarted = summarize(toStarted)
	r.ToSucceeded = summarize(toSucceed)
	if r.Published == 0 && r.FirstError != "" {
		return nil, errors.New("no ping job could be published: " + r.FirstError)
	}
	return r, nil
}
