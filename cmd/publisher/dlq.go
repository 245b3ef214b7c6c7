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
		Use:   "dlq [ls | retry ID]",
		Short: "List jobs that failed for good, or queue one again",
		Long: `List the dead-letter stream: jobs that failed with an error retrying cannot fix, or
that ran out of attempts, with the last error. "retry ID" queues a dead job again,
unchanged, once its cause is fixed, and removes it from the list.`,
		Example: `  brr dlq
  brr dlq retry nightly-2026-11-26`,
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
		Use:   "retry ID",
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
	return cmd
}
