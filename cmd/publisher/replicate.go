package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
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

A worker with a replication policy (replicate: {local: [offsite]} in its config)
publishes these jobs itself whenever a snapshot is committed.`,
		Example: `  brr replicate latest --to offsite --wait
  brr replicate all --from local --to offsite --source /srv/app --wait
  brr replicate 3fa2c1d9 --to offsite`,
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
	cmd.Flags().StringVar(&source, "source", "", `with "latest" or "all": only snapshots of this source path`)
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
