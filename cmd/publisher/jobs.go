package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

func (m *Main) jobsCmd() *cobra.Command {
	var (
		limit        int
		kind, status string
		all          bool
	)
	ls := func(cmd *cobra.Command, args []string) error {
		if kind != "" && !brr.Kind(kind).Valid() {
			return usageError(fmt.Errorf("--kind %q: use one of %s", kind, kindList()))
		}
		return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
			hidePings := !all && kind == ""
			fetch := limit
			if limit > 0 && (kind != "" || status != "" || hidePings) {
				fetch = 20 * limit // filtered below: look further back
			}
			events, err := c.Jobs(ctx, fetch)
			if err != nil {
				return err
			}
			events = slices.DeleteFunc(events, func(e *brr.Event) bool {
				return (kind != "" && e.Kind != brr.Kind(kind)) || (status != "" && e.Status != brr.Status(status)) ||
					(hidePings && e.Kind == brr.KindPing)
			})
			if limit > 0 && len(events) > limit {
				events = events[:limit]
			}
			return printList(m, events, "no jobs yet (publish one with: brr backup PATH)", "ID\tKIND\tSTATUS\tUPDATED\tWORKER\tINFO", func(e *brr.Event) string {
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", e.JobID, e.Kind, e.Status, e.Time.Local().Format(time.DateTime), e.Worker, jobInfo(e))
			})
		})
	}
	cmd := &cobra.Command{
		Use:   "jobs [ls | show ID [--wait]]",
		Short: "List recent jobs, or show one",
		Long: `List the most recently updated jobs with their latest status, newest first, or show
one job; "show --wait" follows a job to its end like the job commands' --wait.
Ping jobs (the health canary, brr bench) are left out unless --all or --kind ping.`,
		Example: `  brr jobs
  brr jobs --kind backup --status failed
  brr jobs ls --limit 100 --json
  brr jobs show nightly-2026-11-26 --wait`,
		Args: args(0, 0),
		RunE: ls,
	}
	cmd.PersistentFlags().IntVar(&limit, "limit", 20, "show at most this many jobs (0: all)")
	cmd.PersistentFlags().StringVar(&kind, "kind", "", "only jobs of this kind: "+kindList())
	cmd.PersistentFlags().StringVar(&status, "status", "", "only jobs whose latest status is this one: accepted, started, succeeded, failed, dead, ...")
	cmd.PersistentFlags().BoolVar(&all, "all", false, "show ping jobs (the health canary) too")
	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Short:   "List recent jobs, newest first",
		Example: "  brr jobs ls --limit 50",
		Args:    args(0, 0),
		RunE:    ls,
	})
	var wait bool
	show := &cobra.Command{
		Use:   "show ID",
		Short: "Show a job's latest status and result",
		Long: `Show a job's latest lifecycle event: its status, worker, error or result.
With --wait, follow the job to its end and exit 0 only if it succeeded.`,
		Example: "  brr jobs show nightly-2026-11-26 --wait",
		Args:    args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				if wait {
					return m.wait(ctx, c, args[0])
				}
				e, err := c.Job(ctx, args[0])
				if err != nil {
					return err
				}
				if m.json {
					return m.printJSON(e)
				}
				m.printJob(e)
				return nil
			})
		},
	}
	show.Flags().BoolVar(&wait, "wait", false, "wait for the job to end and print its result")
	cmd.AddCommand(show)
	return cmd
}

// jobInfo is the short note of the jobs table: the error, the main result, or while the
// job runs what it works on.
func jobInfo(e *brr.Event) string {
	if e.Error != "" {
		return oneLine(e.Error, 60)
	}
	if info := resultInfo(e.Result); info != "" {
		return info
	}
	var parts []string
	if e.Source != "" {
		parts = append(parts, e.Source)
	}
	if e.Repo != "" {
		parts = append(parts, "repo "+e.Repo)
	}
	if e.Snapshot != "" {
		parts = append(parts, "snapshot "+shortID(e.Snapshot))
	}
	return strings.Join(parts, ", ")
}

// resultInfo sums up a job's result in a few words, for every kind; "" for none.
func resultInfo(r *brr.Result) string {
	if r != nil {
		switch {
		case r.Backup != nil && r.Backup.DryRun:
			return fmt.Sprintf("dry run: would read %d files, %s", r.Backup.Files, brr.FormatBytes(r.Backup.Bytes))
		case r.Backup != nil:
			return fmt.Sprintf("snapshot %s, %d files, +%s", shortID(r.Backup.Snapshot), r.Backup.Files, brr.FormatBytes(r.Backup.BytesAdded))
		case r.Restore != nil:
			return fmt.Sprintf("%d files into %s", r.Restore.Files, r.Restore.Target)
		case r.Verify != nil && r.Verify.OK():
			return fmt.Sprintf("repo %s OK", r.Verify.Repo)
		case r.Verify != nil:
			return fmt.Sprintf("repo %s: %d problems", r.Verify.Repo, len(r.Verify.Damaged))
		case r.Replicate != nil:
			x := r.Replicate
			return fmt.Sprintf("%s → %s: %d snapshots copied, %d there already, %s sent", x.From, x.To, len(x.Snapshots), x.Present, brr.FormatBytes(x.BytesSent))
		case r.Prune != nil && r.Prune.Postponed != "":
			return oneLine("postponed: "+r.Prune.Postponed, 60)
		case r.Prune != nil && r.Prune.DryRun:
			return fmt.Sprintf("dry run: would remove %d snapshots of repo %s, keep %d", len(r.Prune.Removed), r.Prune.Repo, r.Prune.Kept)
		case r.Prune != nil:
			return fmt.Sprintf("repo %s: removed %d snapshots, kept %d, freed %s", r.Prune.Repo, len(r.Prune.Removed), r.Prune.Kept, brr.FormatBytes(r.Prune.BytesFreed))
		case r.Checkpoint != nil && r.Checkpoint.Removed:
			return fmt.Sprintf("removed point %q of repo %s", r.Checkpoint.Point.Label, r.Checkpoint.Point.Repo)
		case r.Checkpoint != nil:
			return fmt.Sprintf("point %q on snapshot %s", r.Checkpoint.Point.Label, shortID(r.Checkpoint.Point.Snapshot))
		case r.Drill != nil && r.Drill.Passed:
			return fmt.Sprintf("passed: snapshot %s, %d files, %s", shortID(r.Drill.Snapshot), r.Drill.Files, brr.FormatBytes(r.Drill.Bytes))
		case r.Drill != nil:
			return fmt.Sprintf("failed: snapshot %s, %d problems", shortID(r.Drill.Snapshot), r.Drill.ProblemCount)
		case r.Ping != nil:
			return "answered by " + r.Ping.Worker
		}
	}
	return ""
}

func (m *Main) printJob(e *brr.Event) {
	w := m.Stdout
	fmt.Fprintf(w, "job:     %s\n", e.JobID)
	fmt.Fprintf(w, "kind:    %s\n", e.Kind)
	fmt.Fprintf(w, "status:  %s\n", e.Status)
	fmt.Fprintf(w, "updated: %s\n", e.Time.Local().Format(time.RFC3339))
	if e.Pool != "" {
		fmt.Fprintf(w, "pool:    %s\n", e.Pool)
	}
	if e.Worker != "" {
		fmt.Fprintf(w, "worker:  %s\n", e.Worker)
	}
	if e.Attempt > 0 {
		fmt.Fprintf(w, "attempt: %d\n", e.Attempt)
	}
	if e.Error != "" {
		fmt.Fprintf(w, "error:   %s\n", e.Error)
	}
	if e.Result != nil {
		m.printResult(e)
	}
}

// kindList is the job kinds, for help and errors.
func kindList() string {
	names := make([]string, len(brr.Kinds))
	for i, k := range brr.Kinds {
		names[i] = string(k)
	}
	return strings.Join(names, "|")
}
