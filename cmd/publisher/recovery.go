package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

func (m *Main) checkpointCmd() *cobra.Command {
	var (
		f                           jobFlags
		repo, label, reason, source string
	)
	cmd := &cobra.Command{
		Use:   "checkpoint SNAPSHOT|latest --label LABEL",
		Short: "Pin a snapshot as a recovery point that retention never removes",
		Long: `Make a recovery point: a label that pins a snapshot, with a reason, the time and
who asked. Retention (brr prune) never removes a pinned snapshot; remove the point
with 'brr checkpoints rm LABEL' to let it go. Points are stored in the repository,
so every worker sees them; list them with 'brr checkpoints'.

SNAPSHOT is a snapshot id (or a unique prefix of at least 4 hex digits), or "latest":
the newest snapshot in the repository, or of --source when given. A label is unique
within a repository: 1-128 letters, digits or _.:=-. Pinning a label that pins another
snapshot fails; pinning it again on the same snapshot does nothing.`,
		Example: `  brr checkpoint latest --source /srv/app --label before-upgrade-2.0 --reason "schema migration" --wait
  brr checkpoint 3fa2c1d9 --label audit-2026 --repo offsite`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if label == "" {
				return usageError(errors.New("checkpoint: --label is required: name the recovery point"))
			}
			job := brr.CheckpointJob{Snapshot: args[0], Repo: repo, Label: label, Reason: reason}
			var err error
			if job.Source, err = m.absSource(source); err != nil {
				return err
			}
			return m.runJob(cmd, f, job)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&label, "label", "", "name of the recovery point, unique in the repository (required)")
	cmd.Flags().StringVar(&reason, "reason", "", "why the point is kept, for people")
	cmd.Flags().StringVar(&source, "source", "", `with "latest": only snapshots of this source path (or source:NAME)`)
	cmd.Flags().StringVar(&repo, "repo", "", "repository name from the worker's config")
	return cmd
}

func (m *Main) checkpointsCmd() *cobra.Command {
	var repo string
	cmd := &cobra.Command{
		Use:   "checkpoints [ls | rm LABEL]",
		Short: "List the recovery points, or remove one",
		Long: `List the recovery points of every repository a worker of the pool has, or of
--repo: label, the snapshot it pins (id, time, source), reason, who made it and when.
A repository the worker cannot read is listed from the worker's index of what it last
saw there, with a warning on stderr.

'brr checkpoints rm LABEL' removes a recovery point (a checkpoint job); the snapshot
it pinned stays until retention removes it.`,
		Example: `  brr checkpoints
  brr checkpoints --repo offsite --json
  brr checkpoints rm before-upgrade-2.0 --repo local --wait`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error { return m.listCheckpoints(cmd, repo) },
	}
	cmd.Flags().StringVar(&repo, "repo", "", "only this repository (default: every repository)")

	var lsRepo string
	ls := &cobra.Command{
		Use:     "ls",
		Short:   "List the recovery points (the default)",
		Example: `  brr checkpoints ls --repo local`,
		Args:    args(0, 0),
		RunE:    func(cmd *cobra.Command, args []string) error { return m.listCheckpoints(cmd, lsRepo) },
	}
	ls.Flags().StringVar(&lsRepo, "repo", "", "only this repository (default: every repository)")

	var (
		f      jobFlags
		rmRepo string
	)
	rm := &cobra.Command{
		Use:   "rm LABEL",
		Short: "Remove a recovery point",
		Long: `Remove the recovery point LABEL of a repository (without --repo, the worker's
default repository). The snapshot it pinned is not removed: it goes when retention no
longer keeps it.`,
		Example: `  brr checkpoints rm before-upgrade-2.0 --wait
  brr checkpoints rm audit-2026 --repo offsite`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.runJob(cmd, f, brr.CheckpointJob{Label: args[0], Repo: rmRepo, Remove: true})
		},
	}
	f.add(rm)
	rm.Flags().StringVar(&rmRepo, "repo", "", "repository name from the worker's config")
	cmd.AddCommand(ls, rm)
	return cmd
}

// listCheckpoints prints the recovery points of repo (empty: every repository).
func (m *Main) listCheckpoints(cmd *cobra.Command, repo string) error {
	return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
		reply, err := c.Checkpoints(ctx, repo)
		if err != nil {
			return err
		}
		unread := make([]string, 0, len(reply.Unread))
		for name := range reply.Unread {
			unread = append(unread, name)
		}
		sort.Strings(unread)
		for _, name := range unread {
			fmt.Fprintf(m.Stderr, "brr: warning: repo %s could not be read, its points are as the worker last saw them: %s\n", name, reply.Unread[name])
		}
		return printList(m, reply.Points, "no recovery points (make one with: brr checkpoint latest --label LABEL)",
			"REPO\tLABEL\tSNAPSHOT\tSNAPSHOT TIME\tSOURCE\tREASON\tBY\tCREATED", func(p brr.RecoveryPoint) string {
				snapTime := "(snapshot gone)"
				if !p.SnapshotTime.IsZero() {
					snapTime = p.SnapshotTime.Local().Format(time.DateTime)
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s", p.Repo, p.Label, shortID(p.Snapshot), snapTime, p.Source,
					oneLine(p.Reason, 40), p.By, p.Time.Local().Format(time.DateTime))
			})
	})
}

func (m *Main) pruneCmd() *cobra.Command {
	var (
		f      jobFlags
		repo   string
		dryRun bool
		policy brr.RetentionPolicy
	)
	cmd := &cobra.Command{
		Use:   "prune",
		Short: "Remove the snapshots retention does not keep, and the data no snapshot needs",
		Long: `Apply a retention policy to a repository: remove the snapshots it does not keep,
then the data no snapshot needs. Without --keep-* flags the policy is the one the
worker's config gives the repository (retention: in brr-worker's config); with none,
every snapshot is kept and only unreferenced data goes.

Snapshots are grouped by host and source, and each group is decided on its own: the
newest --keep-last, and the newest snapshot of each of the last --keep-hourly hours,
--keep-daily days, --keep-weekly ISO weeks, --keep-monthly months and --keep-yearly
years that have one. A snapshot pinned by a recovery point (brr checkpoint) is always
kept.

Data goes in two phases: packs no snapshot needs are condemned now and deleted by a
later prune once the grace period (prune.grace, default 1h) has passed, so that a
backup running meanwhile never loses data. Packs mostly unused are repacked. Backups
may run while a prune does; two prunes of one repository never run at once.

--dry-run shows what would go and why, and changes nothing; it always waits for the
result. Its data figures count what no snapshot uses now: the snapshots it would
remove still count as used.`,
		Example: `  brr prune --repo local --dry-run
  brr prune --repo local --keep-last 7 --keep-daily 14 --keep-weekly 8 --keep-monthly 24 --wait
  brr schedule add nightly-prune --cron "0 30 3 * * *" -- prune --repo local`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			job := brr.PruneJob{Repo: repo, DryRun: dryRun}
			for _, name := range []string{"keep-last", "keep-hourly", "keep-daily", "keep-weekly", "keep-monthly", "keep-yearly"} {
				if cmd.Flags().Changed(name) {
					p := policy
					job.Policy = &p
					break
				}
			}
			if dryRun {
				f.wait = true
			}
			return m.runJob(cmd, f, job)
		},
	}
	f.add(cmd)
	fl := cmd.Flags()
	fl.StringVar(&repo, "repo", "", "repository name from the worker's config")
	fl.IntVar(&policy.KeepLast, "keep-last", 0, "keep the newest N snapshots of each host and source")
	fl.IntVar(&policy.KeepHourly, "keep-hourly", 0, "keep the newest snapshot of each of the last N hours that have one")
	fl.IntVar(&policy.KeepDaily, "keep-daily", 0, "keep the newest snapshot of each of the last N days that have one")
	fl.IntVar(&policy.KeepWeekly, "keep-weekly", 0, "keep the newest snapshot of each of the last N ISO weeks that have one")
	fl.IntVar(&policy.KeepMonthly, "keep-monthly", 0, "keep the newest snapshot of each of the last N months that have one")
	fl.IntVar(&policy.KeepYearly, "keep-yearly", 0, "keep the newest snapshot of each of the last N years that have one")
	fl.BoolVar(&dryRun, "dry-run", false, "show what would be removed and why, change nothing (implies --wait)")
	return cmd
}

func (m *Main) drillCmd() *cobra.Command {
	var (
		f            jobFlags
		repo, source string
	)
	cmd := &cobra.Command{
		Use:   "drill SNAPSHOT|latest",
		Short: "Restore a snapshot into scratch space and check every file against it",
		Long: `Run a restore drill: a worker restores the snapshot into a fresh directory of its
scratch space (<data_dir>/scratch), checks every entry against the snapshot (type,
size, mode, symlink target, hard links, and the content of every file, hashed chunk by
chunk), removes the copy and reports. A drill that finds a problem fails, naming
each file.

SNAPSHOT is a snapshot id (or a unique prefix of at least 4 hex digits), or "latest":
the newest snapshot in the repository, or of --source when given. Schedule drills with
'brr schedule add', or run one with every verify: 'brr verify --drill'.`,
		Example: `  brr drill latest --source /srv/app --wait
  brr drill 3fa2c1d9 --repo offsite --wait
  brr schedule add weekly-drill --cron "0 0 4 * * 0" -- drill latest --repo offsite`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			job := brr.DrillJob{Snapshot: args[0], Repo: repo}
			var err error
			if job.Source, err = m.absSource(source); err != nil {
				return err
			}
			return m.runJob(cmd, f, job)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&repo, "repo", "", "repository name from the worker's config")
	cmd.Flags().StringVar(&source, "source", "", `with "latest": only snapshots of this source path (or source:NAME)`)
	return cmd
}

// printRecovery prints the result of a prune, checkpoint or drill job for people.
func printRecovery(w io.Writer, r *brr.Result) {
	switch {
	case r.Prune != nil:
		printPrune(w, r.Prune)
	case r.Checkpoint != nil:
		p := r.Checkpoint.Point
		what := "recovery point"
		if r.Checkpoint.Removed {
			what = "removed recovery point"
		}
		fmt.Fprintf(w, "%s %s of repo %s: snapshot %s", what, p.Label, p.Repo, shortID(p.Snapshot))
		if !p.SnapshotTime.IsZero() {
			fmt.Fprintf(w, " of %s, taken %s", p.Source, p.SnapshotTime.Local().Format(time.DateTime))
		}
		fmt.Fprintln(w)
		if p.Reason != "" {
			fmt.Fprintf(w, "reason:  %s\n", p.Reason)
		}
		fmt.Fprintf(w, "created: %s by %s\n", p.Time.Local().Format(time.DateTime), p.By)
	case r.Drill != nil:
		printDrill(w, r.Drill)
	}
}

// printDrill prints a drill's report.
func printDrill(w io.Writer, d *brr.DrillResult) {
	outcome := "PASSED"
	if !d.Passed {
		outcome = fmt.Sprintf("FAILED with %s", plural(d.ProblemCount, "problem"))
	}
	fmt.Fprintf(w, "drill of snapshot %s of %s in repo %s %s\n", shortID(d.Snapshot), d.Source, d.Repo, outcome)
	fmt.Fprintf(w, "checked: %d files, %d dirs, %d symlinks, %s of content in %s\n", d.Files, d.Dirs, d.Symlinks, brr.FormatBytes(d.Bytes), ms(d.DurationMS))
	for _, p := range d.Problems {
		fmt.Fprintf(w, "  %s\n", p)
	}
	if n := d.ProblemCount - len(d.Problems); n > 0 {
		fmt.Fprintf(w, "  and %d more\n", n)
	}
}

// printPrune prints each snapshot's fate and why, then what happened to the data.
func printPrune(w io.Writer, p *brr.PruneResult) {
	head := fmt.Sprintf("prune of repo %s", p.Repo)
	removed := "removed"
	if p.DryRun {
		head += " (dry run: nothing was changed)"
		removed = "to remove"
	}
	fmt.Fprintln(w, head)
	if len(p.Decisions) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "\tSNAPSHOT\tTIME\tHOST\tSOURCE\tTAGS\tREASONS")
		for _, d := range p.Decisions {
			fate, reasons := "keep", strings.Join(d.Reasons, ", ")
			if !d.Keep {
				fate, reasons = "remove", "no rule keeps it"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", fate, shortID(d.ID), d.Time.Local().Format(time.DateTime), d.Host, d.Source,
				strings.Join(d.Tags, ","), reasons)
		}
		tw.Flush()
	}
	fmt.Fprintf(w, "snapshots: %d kept, %d %s\n", p.Kept, len(p.Removed), removed)
	fmt.Fprintf(w, "packs:     %d deleted (%s freed, %d blobs), %d repacked (%s copied), %d condemned, %d kept again\n",
		p.PacksDeleted, brr.FormatBytes(p.BytesFreed), p.BlobsRemoved, p.PacksRepacked, brr.FormatBytes(p.BytesRepacked), p.PacksCondemned, p.PacksResurrected)
	if p.PendingPacks > 0 {
		until := "a later prune"
		if p.PendingUntil != nil {
			until = "a prune after " + p.PendingUntil.Local().Format(time.DateTime)
		}
		fmt.Fprintf(w, "pending:   %s (%s) condemned, deleted by %s\n", plural(p.PendingPacks, "pack"), brr.FormatBytes(p.PendingBytes), until)
	}
	if p.Postponed != "" {
		fmt.Fprintf(w, "postponed: %s\n", p.Postponed)
	}
	fmt.Fprintf(w, "took:      %s\n", ms(p.DurationMS))
}
