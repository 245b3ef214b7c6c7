package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
)

func (m *Main) replicateCmd() *cobra.Command {
	var (
		f      jobFlags
		from   string
		to     string
		source string
	)
	cmd := &cobra.Command{
		Use:   "replicate SNAPSHOT|latest|all --to NAME",
		Short: "Copy snapshots from one repository to another",
		Long: `Copy a snapshot, or every snapshot the target lacks, from one repository of the
workers' config to another. Only the data the target lacks is sent, encrypted with the
target's key; the copy keeps the snapshot's id, and is committed after all its data.

SNAPSHOT is a snapshot id (or a unique prefix of at least 4 hex digits), "latest" (the
newest snapshot, of --source when given) or "all" (every snapshot, of --source when
given, that the target lacks, oldest first). Without --from the worker's default
repository is the source. With --wait it prints what was copied and how far the target
is behind the source afterwards.

A repo with a replication policy (set with "brr replicate policy set local --to
offsite", or replicate: {local: [offsite]} in a worker's config) has these jobs
published by the workers themselves whenever a snapshot is committed to it.`,
		Example: `  brr replicate latest --to offsite --wait
  brr replicate all --from local --to offsite --source /srv/app --wait
  brr replicate 3fa2c1d9 --to offsite
  brr replicate policy set local --to offsite`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if to == "" {
				return usageError(errors.New("replicate: --to is required: name the repository to copy into"))
			}
			job := brr.ReplicateJob{Snapshot: args[0], From: from, To: to}
			var err error
			if job.Source, err = m.absSource(source); err != nil {
				return err
			}
			return m.runJob(cmd, f, job)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&to, "to", "", "repository to copy into (required)")
	cmd.Flags().StringVar(&from, "from", "", "repository to copy from (default: the worker's default repository)")
	cmd.Flags().StringVar(&source, "source", "", `with "latest" or "all": only snapshots of this source path (or source:NAME)`)
	cmd.AddCommand(m.replicatePolicyCmd())
	return cmd
}

// policyEntry is a repo's replication policy, as brr replicate policy --json prints it.
type policyEntry struct {
	Pool        string   `json:"pool"`
	Repo        string   `json:"repo"`
	ReplicateTo []string `json:"replicate_to"`
}

func (m *Main) replicatePolicyCmd() *cobra.Command {
	ls := func(cmd *cobra.Command, args []string) error {
		return m.withRegistry(cmd, func(ctx context.Context, _ *brr.Client, registry *events.Registry) error {
			regs, err := registry.List(ctx, m.pool)
			if err != nil {
				return err
			}
			var policies []policyEntry
			for _, reg := range regs {
				if reg.ReplicateTo != nil && len(*reg.ReplicateTo) > 0 {
					policies = append(policies, policyEntry{Pool: reg.Pool, Repo: reg.Repo, ReplicateTo: *reg.ReplicateTo})
				}
			}
			empty := fmt.Sprintf("no repo of pool %s has a replication policy (set one with: brr replicate policy set FROM --to NAME%s)", m.pool, m.poolFlag())
			return printList(m, policies, empty, "FROM\tREPLICATE TO", func(p policyEntry) string {
				return p.Repo + "\t" + strings.Join(p.ReplicateTo, ",")
			})
		})
	}
	cmd := &cobra.Command{
		Use:   "policy [ls | set FROM --to NAME... | rm FROM]",
		Short: "Replicate each new snapshot of a repo to other repos, automatically",
		Long: `A repo's replication policy names the repos of the pool that each snapshot committed
to it is copied to: the worker that commits the snapshot publishes a replicate job for
each of them, as "brr replicate SNAPSHOT --from FROM --to NAME" would. The policy is
kept in the pool's registry (KV BRR_REPOS, see brr repo) and every worker of the pool
applies a change to the next snapshot committed, within seconds, without a restart.

The policy set here wins over the replicate: block of the workers' configs, which only
sets a policy for a repo that never had one. Without a subcommand, brr replicate policy
lists the repos of the pool (--pool, default "default") that have one.

Its subcommands write the KV bucket BRR_REPOS, and ls reads it, so they need the NATS
admin role (docs/security.md): the publisher role may not read or write KV buckets.`,
		Example: `  brr replicate policy set local --to offsite
  brr replicate policy set local --to offsite --to archive
  brr replicate policy ls
  brr replicate policy rm local`,
		Args: args(0, 0),
		RunE: ls,
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Short:   "List the repos of the pool that have a replication policy",
		Example: "  brr replicate policy ls --pool edge --json",
		Args:    args(0, 0),
		RunE:    ls,
	})
	var to []string
	set := &cobra.Command{
		Use:   "set FROM --to NAME [--to NAME...]",
		Short: "Replicate each snapshot committed to FROM to the --to repos",
		Long: `Set the replication policy of repo FROM: from now on each snapshot committed to it is
replicated to each --to repo, which must be repos of the pool (see brr repo ls). It
replaces the policy FROM had. Snapshots FROM has already are not copied: copy them with
"brr replicate all --from FROM --to NAME".

` + adminNote,
		Example: `  brr replicate policy set local --to offsite
  brr replicate policy set local --to offsite,archive --pool edge`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			from := args[0]
			if err := validateRepoName(from); err != nil {
				return err
			}
			if len(to) == 0 {
				return usageError(fmt.Errorf("replicate policy set: give the repos to replicate %s to with --to NAME; remove its policy with: brr replicate policy rm %s", from, from))
			}
			var targets []string
			for _, name := range to {
				if err := validateRepoName(name); err != nil {
					return err
				}
				if !slices.Contains(targets, name) {
					targets = append(targets, name)
				}
			}
			return m.withRegistry(cmd, func(ctx context.Context, _ *brr.Client, registry *events.Registry) error {
				if err := registry.SetPolicy(ctx, m.pool, from, targets); err != nil {
					return err
				}
				if m.json {
					return m.printJSON(policyEntry{Pool: m.pool, Repo: from, ReplicateTo: targets})
				}
				fmt.Fprintf(m.Stdout, "repo %s of pool %s replicates each new snapshot to %s\n", from, m.pool, strings.Join(targets, ", "))
				fmt.Fprintf(m.Stdout, "The workers apply it to the next snapshot committed to %s, within seconds.\n", from)
				fmt.Fprintf(m.Stdout, "To copy the snapshots %s has already: brr replicate all --from %s --to %s%s\n", from, from, targets[0], m.poolFlag())
				return nil
			})
		},
	}
	set.Flags().StringSliceVar(&to, "to", nil, "repo of the pool to replicate to; repeat it, or separate names with commas, for several")
	cmd.AddCommand(set)
	cmd.AddCommand(&cobra.Command{
		Use:   "rm FROM",
		Short: "Stop replicating the new snapshots of FROM",
		Long: `Remove the replication policy of repo FROM: snapshots committed to it from now on are
not replicated. Copies made before stay. The replicate: block of a worker's config no
longer sets a policy for FROM either; set one again with "brr replicate policy set".

` + adminNote,
		Example: "  brr replicate policy rm local",
		Args:    args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			from := args[0]
			if err := validateRepoName(from); err != nil {
				return err
			}
			return m.withRegistry(cmd, func(ctx context.Context, _ *brr.Client, registry *events.Registry) error {
				if err := registry.SetPolicy(ctx, m.pool, from, nil); err != nil {
					return err
				}
				if m.json {
					return m.printJSON(policyEntry{Pool: m.pool, Repo: from, ReplicateTo: []string{}})
				}
				fmt.Fprintf(m.Stdout, "repo %s of pool %s has no replication policy now: its new snapshots are not replicated\n", from, m.pool)
				return nil
			})
		},
	})
	return cmd
}

// printReplicate prints the summary of a replicate job for people. A job that failed
// has copied what it lists, and measured no lag.
func printReplicate(w io.Writer, r *brr.ReplicateResult) {
	finished := !r.Lag.Measured.IsZero()
	n := len(r.Snapshots)
	switch {
	case n > 0:
		fmt.Fprintf(w, "copied %s from repo %s to repo %s: %s\n", plural(n, "snapshot"), r.From, r.To, shortIDs(r.Snapshots))
		if r.Present > 0 {
			fmt.Fprintf(w, "present: %s the target had already\n", plural(r.Present, "snapshot"))
		}
	case !finished:
		fmt.Fprintf(w, "no snapshot copied from repo %s to repo %s\n", r.From, r.To)
	case r.Present == 1:
		fmt.Fprintf(w, "repo %s already had the snapshot; nothing copied from repo %s\n", r.To, r.From)
	case r.Present > 1:
		fmt.Fprintf(w, "repo %s already had the %d snapshots; nothing copied from repo %s\n", r.To, r.Present, r.From)
	default:
		fmt.Fprintf(w, "nothing to copy from repo %s to repo %s\n", r.From, r.To)
	}
	if n > 0 || !finished {
		fmt.Fprintf(w, "sent:    %s in %d blobs (%d blobs the target had) in %s\n", brr.FormatBytes(r.BytesSent), r.BlobsSent, r.BlobsPresent, ms(r.DurationMS))
	}
	switch {
	case !finished:
	case r.Lag.Behind == 0:
		fmt.Fprintf(w, "lag:     repo %s has every snapshot of repo %s\n", r.To, r.From)
	default:
		oldest := ""
		if r.Lag.Oldest != nil {
			oldest = fmt.Sprintf(", the oldest from %s (%s ago)", r.Lag.Oldest.Local().Format(time.RFC3339),
				(time.Duration(r.Lag.AgeSeconds) * time.Second).String())
		}
		fmt.Fprintf(w, "lag:     repo %s lacks %s of repo %s%s\n", r.To, plural(r.Lag.Behind, "snapshot"), r.From, oldest)
	}
	printWarnings(w, r.Warnings)
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func shortIDs(ids []string) string {
	const shown = 10
	short := make([]string, 0, min(len(ids), shown))
	for _, id := range ids[:min(len(ids), shown)] {
		short = append(short, shortID(id))
	}
	s := strings.Join(short, ", ")
	if len(ids) > shown {
		s += fmt.Sprintf(" and %d more", len(ids)-shown)
	}
	return s
}
