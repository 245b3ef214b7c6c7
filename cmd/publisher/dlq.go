package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

func (m *Main) dlqCmd() *cobra.Command {
	ls := func(cmd *cobra.Command, args []string) error {
		return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
			entries, err := c.DeadLetters(ctx)
			if err != nil {
				return err
			}
			return printList(m, entries, "no dead jobs", "SEQ\tJOB\tKIND\tPOOL\tSTATUS\tATTEMPTS\tTIME\tERROR", func(e brr.DeadLetterEntry) string {
				return fmt.Sprintf("%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s", e.Seq, e.JobID, e.Kind, e.Pool, e.Status, e.Attempts,
					e.Time.Local().Format(time.DateTime), oneLine(e.Error, 80))
			})
		})
	}
	cmd := &cobra.Command{
		Use:   "dlq [ls | retry ID | rm ID | purge [--before T]]",
		Short: "List jobs that failed for good, queue one again, or remove them",
		Long: `List the dead-letter stream: jobs that failed with an error retrying cannot fix, or
that ran out of attempts, with the last error. "retry ID" queues a dead job again,
unchanged, once its cause is fixed, and removes it from the list; "rm ID" removes it
without running it; "purge" removes them all, or those older than --before.
ID is the job's id or the SEQ that "brr dlq ls" shows.`,
		Example: `  brr dlq
  brr dlq retry nightly-2026-11-26
  brr dlq rm 42
  brr dlq purge --before 7d`,
		Args: args(0, 0),
		RunE: ls,
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Short:   "List dead jobs, oldest first",
		Example: "  brr dlq ls --json",
		Args:    args(0, 0),
		RunE:    ls,
	})
	var wait bool
	retry := &cobra.Command{
		Use:   "retry ID|SEQ",
		Short: "Queue a dead job again and remove it from the dead-letter stream",
		Long: `Publish a dead job's request again, unchanged, to the pool it was sent to, and remove
its dead letter. Fix the cause first (a missing repo, a path outside allowed_roots).
With --wait, follow the new run to its end; "brr jobs show ID" shows the old run's
end until a worker takes the job again.`,
		Example: `  brr dlq retry nightly-2026-11-26
  brr dlq retry nightly-2026-11-26 --wait`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				res, err := c.RetryDead(ctx, args[0])
				if err != nil {
					return err
				}
				note := ""
				if res.Duplicate {
					note = " (it had been queued again already)"
				}
				if wait {
					if !m.json {
						fmt.Fprintf(m.Stderr, "%s job %s queued again in pool %s%s\n", res.Kind, res.ID, res.Pool, note)
					}
					// The results bucket still holds the old run's end: wait for a newer one.
					return m.wait(ctx, c, res.ID, brr.AfterRevision(res.ResultRevision))
				}
				if m.json {
					return m.printJSON(res)
				}
				fmt.Fprintf(m.Stdout, "%s job %s queued again in pool %s%s\n", res.Kind, res.ID, res.Pool, note)
				return nil
			})
		},
	}
	retry.Flags().BoolVar(&wait, "wait", false, "wait for the job's new run to end, with progress, and print its result")
	cmd.AddCommand(retry)
	cmd.AddCommand(m.dlqRmCmd(), m.dlqPurgeCmd())
	return cmd
}

func (m *Main) dlqRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rm ID|SEQ...",
		Short: "Remove dead jobs without running them",
		Long: `Remove dead letters without running them again: every entry of the job with id ID,
or the one entry with sequence SEQ (the first column of "brr dlq ls"), which is how an
entry that could not even be decoded is named.`,
		Example: `  brr dlq rm nightly-2026-11-26
  brr dlq rm 42 43`,
		Args: args(1, 1000),
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				for _, ref := range args {
					removed, err := c.RemoveDead(ctx, ref)
					if err != nil {
						return err
					}
					for _, e := range removed {
						if m.json {
							if err := m.printJSON(map[string]any{"removed": e.Seq, "job_id": e.JobID}); err != nil {
								return err
							}
							continue
						}
						fmt.Fprintf(m.Stdout, "removed dead letter %d (job %s)\n", e.Seq, orDash(e.JobID))
					}
				}
				return nil
			})
		},
	}
}

func (m *Main) dlqPurgeCmd() *cobra.Command {
	var before string
	cmd := &cobra.Command{
		Use:   "purge [--before T]",
		Short: "Remove every dead job, or those older than --before",
		Example: `  brr dlq purge
  brr dlq purge --before 7d
  brr dlq purge --before 2026-11-26`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var cut time.Time
			if before != "" {
				t, err := parseTime(before, time.Now())
				if err != nil {
					return usageError(fmt.Errorf("--before: %w", err))
				}
				cut = t
			}
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				n, err := c.PurgeDead(ctx, cut)
				if err != nil {
					return err
				}
				if m.json {
					return m.printJSON(map[string]int{"removed": n})
				}
				fmt.Fprintf(m.Stdout, "removed %d dead letter(s)\n", n)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&before, "before", "", "only entries older than this: a duration ago (7d, 24h), a date or an RFC 3339 time")
	return cmd
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
