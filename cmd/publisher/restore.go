package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

func (m *Main) restoreCmd() *cobra.Command {
	var (
		f         jobFlags
		repo      string
		from      string
		paths     []string
		asOf      string
		source    string
		overwrite bool
		srcName   string
	)
	cmd := &cobra.Command{
		Use:   "restore SNAPSHOT|latest TARGET | SNAPSHOT|latest --source-name NAME [TARGET]",
		Short: "Restore a snapshot, or part of it, into a directory on a worker's host, or through a source's restore_command",
		Long: `Restore a snapshot into the directory TARGET on the worker's host.

SNAPSHOT is a snapshot id (or a unique prefix of at least 4 hex digits), or "latest":
the newest snapshot in the repository, or of --source when given, or the newest at or
before --as-of. A relative TARGET or --source is made absolute from the current
directory. Existing files are kept unless --overwrite. --source takes a path, or
source:NAME for the snapshots of a command source.

--source-name NAME restores a snapshot of the source NAME of the workers' config
("latest" is its newest). Without TARGET, the file that a command source stored is
piped into the source's restore_command (pg_restore, say) on a worker that has the
source; its exit code and the end of its stderr are in the result, and a non-zero
exit fails the job. With TARGET the file is written there instead. The command comes
only from the workers' config: a job can name a source, never say what it runs.

--from NAME restores from the replica NAME instead of the repository (it is --repo
under another name, for reading). When the repository cannot be read, lacks the
snapshot or holds it damaged, the worker falls back to its replicas by itself and
says so in a warning.`,
		Example: `  brr restore latest /tmp/restore --source /srv/app --wait
  brr restore 3fa2c1d9 /tmp/restore --path etc/app.conf --overwrite
  brr restore latest /tmp/yesterday --source /srv/app --as-of 24h
  brr restore latest /tmp/restore --source /srv/app --from offsite --wait
  brr restore latest --source-name app-db --pool db1 --wait        # into pg_restore on a worker of pool db1
  brr restore latest /tmp/dump --source-name app-db --pool db1     # the dump, as a file`,
		Args: args(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			var target string
			switch {
			case len(args) == 2:
				var err error
				if target, err = m.abs(args[1]); err != nil {
					return err
				}
			case srcName == "":
				return usageError(fmt.Errorf("restore: give a TARGET directory, or --source-name NAME to pipe the snapshot into the source's restore_command: usage: %s", cmd.UseLine()))
			}
			if srcName != "" {
				if err := brr.ValidateSourceName(srcName); err != nil {
					return usageError(fmt.Errorf("--source-name: %w", err))
				}
				if source != "" {
					return usageError(errors.New("restore: --source and --source-name both say whose snapshots to look at; give one"))
				}
				if target == "" && (len(paths) > 0 || overwrite) {
					return usageError(errors.New("restore: --path and --overwrite go with a TARGET; without one the snapshot's file goes into the source's restore_command"))
				}
			}
			if from != "" {
				if repo != "" {
					return usageError(errors.New("restore: --from and --repo both name the repository to read; give one"))
				}
				repo = from
			}
			job := brr.RestoreJob{Snapshot: args[0], Target: target, Repo: repo, Paths: paths, Overwrite: overwrite, SourceName: srcName}
			var err error
			if job.Source, err = m.absSource(source); err != nil {
				return err
			}
			if asOf != "" {
				t, err := parseTime(asOf, time.Now())
				if err != nil {
					return usageError(err)
				}
				job.AsOf = &t
			}
			return m.runJob(cmd, f, job)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&repo, "repo", "", "repository name from the worker's config")
	cmd.Flags().StringVar(&from, "from", "", "restore from this replica (a repository name) instead")
	cmd.Flags().StringArrayVar(&paths, "path", nil, "restore only this path of the snapshot and what is below it (repeatable)")
	cmd.Flags().StringVar(&asOf, "as-of", "", `with "latest": the newest snapshot at or before this time (RFC 3339, YYYY-MM-DD, or a duration ago like 24h)`)
	cmd.Flags().StringVar(&source, "source", "", `with "latest": only snapshots of this source path (or source:NAME)`)
	cmd.Flags().StringVar(&srcName, "source-name", "", "a snapshot of this source of the workers' config; without TARGET, piped into its restore_command (which comes from that config only)")
	cmd.Flags().BoolVar(&overwrite, "overwrite", false, "replace files that exist in TARGET")
	return cmd
}
