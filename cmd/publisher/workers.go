package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

func (m *Main) workersCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "workers",
		Short: "List the workers and their latest heartbeat",
		Long: `List the workers that sent a heartbeat (brr.events.health.worker) lately, of every
pool, with the figures of their latest one: jobs in flight, done and failed since they
started, uptime, free disk of the data dir and round trip to NATS. A worker silent for
more than three of its heartbeat intervals is marked MISSING; one silent for longer
than ten intervals (at least 15 minutes) is no longer listed. REFUSED names the repos a
worker has and does not serve, because its pool registered the name for another
repository; why, and what to do, is printed below the table (and is in --json). Heartbeats
are read from the event stream, so this works with every worker down.`,
		Example: `  brr workers
  brr workers --json`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				workers, err := c.Workers(ctx)
				if err != nil {
					return err
				}
				now := time.Now()
				err = printList(m, workers, "no worker has sent a heartbeat lately (start one with: brr-worker)",
					"WORKER\tSTATE\tHOST\tVERSION\tPOOLS\tCONCURRENCY\tIN FLIGHT\tDONE\tFAILED\tUPTIME\tDISK FREE\tNATS RTT\tLAST SEEN\tREFUSED",
					func(w brr.WorkerInfo) string {
						state := "live"
						if w.Missing {
							state = "MISSING"
						}
						return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%s\t%s\t%.1f ms\t%s ago\t%s",
							w.ID, state, w.Host, w.Version, strings.Join(w.Pools, ","), w.Concurrency, w.InFlight, w.JobsDone, w.JobsFailed,
							roundDuration(time.Duration(w.UptimeSeconds*float64(time.Second))), diskFree(w), w.NATSRTTMS,
							roundDuration(max(now.Sub(w.Time), 0)), refusedRepos(w))
					})
				if err != nil || m.json {
					return err
				}
				for _, w := range workers {
					for _, r := range w.RefusedRepos {
						fmt.Fprintf(m.Stderr, "worker %s refuses repo %s: %s\n", w.ID, r.Repo, r.Message)
					}
				}
				return nil
			})
		},
	}
}

// refusedRepos names the repos a worker refuses, "-" when none.
func refusedRepos(w brr.WorkerInfo) string {
	if len(w.RefusedRepos) == 0 {
		return "-"
	}
	names := make([]string, len(w.RefusedRepos))
	for i, r := range w.RefusedRepos {
		names[i] = r.Repo
	}
	return strings.Join(names, ",")
}

// diskFree is the free space of a worker's data dir, with its share of the disk.
func diskFree(w brr.WorkerInfo) string {
	if w.DiskTotalBytes == 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%.0f%%)", brr.FormatBytes(int64(w.DiskFreeBytes)), 100*float64(w.DiskFreeBytes)/float64(w.DiskTotalBytes))
}

// roundDuration shortens d for a table: seconds under an hour, minutes under a day, hours
// beyond.
func roundDuration(d time.Duration) string {
	switch {
	case d < time.Hour:
		return d.Round(time.Second).String()
	case d < 24*time.Hour:
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Hour).String()
}
