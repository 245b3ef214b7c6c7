package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

func (m *Main) backupCmd() *cobra.Command {
	var (
		f            jobFlags
		repo         string
		tags         []string
		exclude      []string
		excludeFiles []string
		largerThan   string
		job          brr.BackupJob
	)
	cmd := &cobra.Command{
		Use:   "backup PATH",
		Short: "Back up a directory on a worker's host, or a source of the workers' config, into a repository",
		Long: `Back up the directory tree at PATH into a repository, as a new snapshot.

PATH is a path on the worker's host; a relative PATH is made absolute from the
current directory. Without --repo the worker's default repository is used.

--source-name NAME backs up the source NAME of the workers' config (sources: in
brr-worker's YAML) instead of a PATH: a tree with its excludes and hooks, a command
whose standard output is stored (a database dump), or a SQLite database. What a
source reads, and every command and hook it runs, comes only from the workers'
config: a job can name a source, never say what it runs. A worker without the
source leaves the job to one that has it; route such jobs with --pool. The job's
--tag, --exclude and --repo add to the source's.

--exclude takes a pattern in gitignore syntax, relative to PATH: "node_modules/"
anywhere, "/build" only at the top of PATH, "**/*.tmp", "!keep.tmp" to take back what
an earlier pattern left out. --exclude-file reads such patterns from a file here, one
per line. The .brrignore files in the tree apply too, each to its directory and
below; the patterns given here come first. --dry-run walks the tree on the worker
and prints what a backup would store, without storing anything. See docs/sources.md.`,
		Example: `  brr backup /srv/app --repo local --tag nightly --wait
  brr backup . --id app-$(date +%F)
  brr backup /srv/app --exclude node_modules/ --exclude '*.o' --exclude-caches --dry-run
  brr backup /home --exclude-file ~/.brr-excludes --one-file-system --exclude-larger-than 1G --wait
  brr backup --source-name app-db --pool db1 --wait`,
		// PATH, or --source-name instead (flags are parsed before the arguments are checked).
		Args: func(cmd *cobra.Command, a []string) error {
			switch {
			case job.SourceName != "" && len(a) > 0:
				return usageError(fmt.Errorf("backup: give a PATH or --source-name, not both (the source %s says what it reads)", job.SourceName))
			case job.SourceName != "":
				return nil
			}
			return args(1, 1)(cmd, a)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case job.SourceName != "":
				if err := brr.ValidateSourceName(job.SourceName); err != nil {
					return usageError(fmt.Errorf("--source-name: %w", err))
				}
			default:
				path, err := m.abs(args[0])
				if err != nil {
					return err
				}
				job.Path = path
			}
			var err error
			job.Repo, job.Tags = repo, tags
			for _, file := range excludeFiles {
				patterns, err := readExcludeFile(file)
				if err != nil {
					return err
				}
				job.Excludes = append(job.Excludes, patterns...)
			}
			job.Excludes = append(job.Excludes, exclude...)
			for _, p := range exclude {
				if err := brr.ValidateExclude(p); err != nil {
					return usageError(fmt.Errorf("--exclude: %w", err))
				}
			}
			if largerThan != "" {
				if job.ExcludeLargerThan, err = parseSize(largerThan); err != nil {
					return usageError(fmt.Errorf("--exclude-larger-than: %w", err))
				}
			}
			if job.DryRun {
				if m.capture != nil {
					return usageError(errors.New("--dry-run: a dry run only reports what a backup would store; schedule the backup without it"))
				}
				f.wait = true // a dry run's result is what it is for
			}
			return m.runJob(cmd, f, job)
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&repo, "repo", "", "repository name from the worker's config")
	cmd.Flags().StringVar(&job.SourceName, "source-name", "", "back up this source of the workers' config instead of a PATH (its commands and hooks come from that config only)")
	cmd.Flags().StringArrayVar(&tags, "tag", nil, "tag for the snapshot (repeatable)")
	cmd.Flags().StringArrayVar(&exclude, "exclude", nil, "leave out what matches this gitignore pattern, relative to PATH (repeatable)")
	cmd.Flags().StringArrayVar(&excludeFiles, "exclude-file", nil, "read --exclude patterns from this local file, one per line, # for comments (repeatable)")
	cmd.Flags().BoolVar(&job.ExcludeCaches, "exclude-caches", false, "leave out the contents of directories tagged with a CACHEDIR.TAG (the tag is kept)")
	cmd.Flags().BoolVar(&job.OneFileSystem, "one-file-system", false, "do not cross into other file systems (mount points are kept, empty)")
	cmd.Flags().StringVar(&largerThan, "exclude-larger-than", "", "leave out files larger than SIZE (bytes, or with a unit: 500K, 100M, 2G; powers of 1024)")
	cmd.Flags().BoolVar(&job.DryRun, "dry-run", false, "list what the backup would store, and what it would leave out, without storing anything (implies --wait)")
	return cmd
}

// readExcludeFile reads the patterns of an exclude file: gitignore syntax, one pattern a
// line, blank lines and # comments skipped.
func readExcludeFile(file string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, usageError(fmt.Errorf("--exclude-file: %w", err))
	}
	patterns := brr.ExcludeLines(data)
	for _, p := range patterns {
		if err := brr.ValidateExclude(p); err != nil {
			return nil, usageError(fmt.Errorf("--exclude-file %s: %w", file, err))
		}
	}
	return patterns, nil
}

// parseSize reads a size in bytes: a number, with an optional unit K, M, G or T (powers
// of 1024, as restic and du take them; "KiB", "KB" and "k" are the same).
func parseSize(s string) (int64, error) {
	bad := fmt.Errorf("size %q: give bytes, or a number with a unit: 500K, 100M, 1.5G, 2T", s)
	num := strings.TrimSpace(s)
	unit := strings.TrimLeft(num, "0123456789.")
	num = num[:len(num)-len(unit)]
	var shift uint
	switch strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(unit), "B"), "i")) {
	case "":
		shift = 0
	case "K":
		shift = 10
	case "M":
		shift = 20
	case "G":
		shift = 30
	case "T":
		shift = 40
	default:
		return 0, bad
	}
	v, err := strconv.ParseFloat(num, 64)
	if err != nil || v < 0 || v*float64(int64(1)<<shift) >= 1<<62 {
		return 0, bad
	}
	return int64(v * float64(int64(1)<<shift)), nil
}
