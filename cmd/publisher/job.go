package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

// jobFlags are the flags every job command has.
type jobFlags struct {
	id   string
	wait bool
}

func (f *jobFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.id, "id", "", "job id (default: generated); publishing the same id again does nothing")
	cmd.Flags().BoolVar(&f.wait, "wait", false, "wait for the job to end, with progress, and print its result (fails at once when no worker serves the pool)")
}

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

func (m *Main) verifyCmd() *cobra.Command {
	var (
		f        jobFlags
		repo     string
		readData bool
		drill    bool
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Check a repository for missing or damaged data",
		Long: `Check that every blob a snapshot refers to exists in the repository; with
--read-data also decrypt and hash every blob. Damage is listed with the snapshots and
files it affects, and the job ends failed. With --drill the worker then restores the
newest snapshot into scratch space and checks every file against it (see brr drill);
a failed drill fails the verify.`,
		Example: `  brr verify --repo local --wait
  brr verify --repo offsite --read-data --wait
  brr verify --repo local --drill --wait`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.runJob(cmd, f, brr.VerifyJob{Repo: repo, ReadData: readData, Drill: drill})
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&repo, "repo", "", "repository name from the worker's config")
	cmd.Flags().BoolVar(&readData, "read-data", false, "read, decrypt and hash all data (slow)")
	cmd.Flags().BoolVar(&drill, "drill", false, "also run a restore drill of the newest snapshot")
	return cmd
}

// abs makes p absolute from the current directory and cleans it.
func (m *Main) abs(p string) (string, error) {
	if p == "" {
		return "", usageError(errors.New("empty path"))
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	wd, err := m.Getwd()
	if err != nil {
		return "", fmt.Errorf("make %q absolute: %w", p, err)
	}
	return filepath.Join(wd, p), nil
}

// absSource is abs for an optional source flag: "" stays "", and so does source:NAME,
// what the snapshots of a command source are of.
func (m *Main) absSource(p string) (string, error) {
	if p == "" || strings.HasPrefix(p, "source:") {
		return p, nil
	}
	return m.abs(p)
}

// parseTime reads an RFC 3339 time, a date, or a duration before now.
func parseTime(s string, now time.Time) (time.Time, error) {
	if d, err := parseSpan(s); err == nil {
		return now.Add(-d).UTC(), nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.Local); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("time %q: use RFC 3339 (2026-11-26T12:00:00Z), a date (2026-11-26) or a duration ago (24h, 7d)", s)
}

// parseSpan reads a duration as Go does, plus the units d (days) and w (weeks) that the
// API takes too: 90m, 24h, 7d, 2w.
func parseSpan(s string) (time.Duration, error) {
	for suffix, unit := range map[string]time.Duration{"d": 24 * time.Hour, "w": 7 * 24 * time.Hour} {
		if n, ok := strings.CutSuffix(s, suffix); ok {
			f, err := strconv.ParseFloat(n, 64)
			if err != nil || f < 0 {
				return 0, fmt.Errorf("duration %q: want a number before %q, like 7%s", s, suffix, suffix)
			}
			return time.Duration(f * float64(unit)), nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("duration %q: use 30m, 24h, 7d or 2w", s)
	}
	return d, nil
}

// who says who asks for a job: user@host.
func who() string {
	name := "unknown"
	if u, err := user.Current(); err == nil {
		name = u.Username
	}
	host, _ := os.Hostname()
	return oneLine(name+"@"+host, 256)
}

// runJob publishes args and, with --wait, waits for the job's end. With --wait the id is
// chosen here and the job watched before it is published, so that none of its events,
// progress included, comes before the watch; and the pool is asked first whether a
// worker serves it, since otherwise the wait would never end. Without --wait the job is
// published whether or not a worker serves the pool (one may start later), with a
// warning when none does. In capture mode (m.capture, for `brr schedule add`) it only
// records args. Every job command goes through here, so every job command can be
// scheduled.
func (m *Main) runJob(cmd *cobra.Command, f jobFlags, args brr.JobArgs) error {
	if m.capture != nil {
		return m.captureJob(cmd, f, args)
	}
	return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
		opts := []brr.PublishOption{brr.WithBy(who())}
		if !f.wait {
			if f.id != "" {
				opts = append(opts, brr.WithID(f.id))
			}
			res, err := c.Publish(ctx, args, opts...)
			if err != nil {
				return err
			}
			if _, err := c.Served(ctx, ""); errors.Is(err, brr.ErrNoWorker) {
				fmt.Fprintf(m.Stderr, "brr: warning: %v; until one starts, job %s waits in the queue\n", err, res.ID)
			}
			if m.json {
				return m.printJSON(res)
			}
			if res.Duplicate {
				fmt.Fprintf(m.Stdout, "%s duplicate\n", res.ID)
				fmt.Fprintf(m.Stderr, "job %s was already published; it was not queued again (see: brr jobs show %s)\n", res.ID, res.ID)
				return nil
			}
			fmt.Fprintln(m.Stdout, res.ID)
			return nil
		}
		id := f.id
		if id == "" {
			id = brr.NewID()
		}
		// A bad job is a usage error before anything is asked of the server, as without --wait.
		if err := args.Validate(); err != nil {
			return err
		}
		if _, err := c.Served(ctx, ""); err != nil {
			return err
		}
		view := newProgressView(m.Stderr, m.json)
		w, err := c.Watch(ctx, id, view.event)
		if err != nil {
			return err
		}
		defer w.Stop()
		res, err := c.Publish(ctx, args, append(opts, brr.WithID(id))...)
		if err != nil {
			return err
		}
		if !m.json {
			note := ""
			if res.Duplicate {
				note = " (duplicate: following the job published before)"
			}
			fmt.Fprintf(m.Stderr, "%s job %s published%s\n", res.Kind, res.ID, note)
		}
		return m.result(ctx, w, id, view)
	})
}

// wait follows job id to its end, shows its progress and prints its result.
func (m *Main) wait(ctx context.Context, c *brr.Client, id string, opts ...brr.WaitOption) error {
	view := newProgressView(m.Stderr, m.json)
	w, err := c.Watch(ctx, id, view.event, opts...)
	if err != nil {
		return err
	}
	return m.result(ctx, w, id, view)
}

// result waits for w's job id to end, showing its events in view, and prints its result.
func (m *Main) result(ctx context.Context, w *brr.Waiter, id string, view *progressView) error {
	e, err := w.Result(ctx)
	view.done()
	if e == nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("job %s did not end within --timeout %s; it goes on (follow it with: brr jobs show %s --wait)", id, m.timeout, id)
		}
		if errors.Is(err, context.Canceled) {
			return &exitError{code: exitInterrupted, err: fmt.Errorf("stopped waiting for job %s; it goes on (follow it with: brr jobs show %s --wait)", id, id)}
		}
		return err
	}
	if m.json {
		if perr := m.printJSON(e); perr != nil {
			return perr
		}
	} else {
		m.printResult(e)
	}
	if err != nil {
		if m.json {
			return &exitError{code: exitFailed, err: err} // Run prints it as JSON
		}
		fmt.Fprintf(m.Stderr, "brr: job %s %s: %s\n", e.JobID, e.Status, reason(e))
		return &exitError{code: exitFailed, err: err, quiet: true}
	}
	return nil
}

func reason(e *brr.Event) string {
	if e.Error == "" {
		return "no reason given"
	}
	return e.Error
}

// printResult prints the summary of a final event for people.
func (m *Main) printResult(e *brr.Event) {
	w := m.Stdout
	r := e.Result
	switch {
	case r != nil && r.Backup != nil && r.Backup.DryRun:
		printDryRun(w, r.Backup)
	case r != nil && r.Backup != nil:
		b := r.Backup
		fmt.Fprintf(w, "snapshot %s of %s in repo %s\n", b.Snapshot, b.Source, b.Repo)
		if b.Command != nil {
			fmt.Fprintf(w, "file:    the command's output, %s\n", brr.FormatBytes(b.Bytes))
		} else {
			fmt.Fprintf(w, "files:   %d (%d new, %d changed, %d unchanged), %d dirs, %s\n", b.Files, b.FilesNew, b.FilesChanged, b.FilesUnchanged, b.Dirs, brr.FormatBytes(b.Bytes))
		}
		fmt.Fprintf(w, "added:   %s in %d blobs (read %s) in %s\n", brr.FormatBytes(b.BytesAdded), b.BlobsAdded, brr.FormatBytes(b.BytesRead), ms(b.DurationMS))
		printExcluded(w, b)
		printCommand(w, "command", b.Command)
		for _, h := range b.Hooks {
			fmt.Fprintf(w, "hook:    %s exited %d in %s\n", h.Hook, h.ExitCode, ms(h.DurationMS))
		}
		printWarnings(w, b.Warnings)
	case r != nil && r.Restore != nil && r.Restore.Target == "" && r.Restore.Command != nil:
		x := r.Restore
		fmt.Fprintf(w, "restored snapshot %s from repo %s through the restore_command of source %s\n", x.Snapshot, x.Repo, x.SourceName)
		printCommand(w, "command", x.Command)
		printWarnings(w, x.Warnings)
	case r != nil && r.Restore != nil:
		x := r.Restore
		fmt.Fprintf(w, "restored snapshot %s from repo %s into %s\n", x.Snapshot, x.Repo, x.Target)
		fmt.Fprintf(w, "files:   %d, %d dirs, %d symlinks, %s in %s\n", x.Files, x.Dirs, x.Symlinks, brr.FormatBytes(x.Bytes), ms(x.DurationMS))
		printWarnings(w, x.Warnings)
	case r != nil && r.Verify != nil:
		v := r.Verify
		if v.Drill != nil {
			defer printDrill(w, v.Drill) // after the verify's own report, whichever it is
		}
		what := "structure"
		if v.ReadData {
			what = "structure and data"
		}
		if v.OK() {
			fmt.Fprintf(w, "repo %s OK (%s): %d snapshots, %d packs, %d blobs, read %s in %s\n", v.Repo, what, v.Snapshots, v.Packs, v.Blobs, brr.FormatBytes(v.BytesRead), ms(v.DurationMS))
			return
		}
		fmt.Fprintf(w, "repo %s DAMAGED (%s): %d problems\n", v.Repo, what, len(v.Damaged))
		for _, d := range v.Damaged {
			obj := strings.TrimSpace("pack " + d.Pack + " blob " + d.Blob)
			switch {
			case d.Pack == "":
				obj = "blob " + d.Blob
			case d.Blob == "":
				obj = "pack " + d.Pack
			}
			fmt.Fprintf(w, "  %s: %s\n", obj, d.Problem)
			if len(d.Snapshots) > 0 {
				fmt.Fprintf(w, "    snapshots: %s\n", strings.Join(d.Snapshots, ", "))
			}
			for _, p := range d.Paths {
				fmt.Fprintf(w, "    file: %s\n", p)
			}
		}
	case r != nil && r.Ping != nil:
		fmt.Fprintf(w, "pong from worker %s\n", r.Ping.Worker)
	case r != nil && (r.Prune != nil || r.Checkpoint != nil || r.Drill != nil):
		printRecovery(w, r)
	case r != nil && r.Replicate != nil:
		printReplicate(w, r.Replicate)
	case r != nil && r.Key != nil:
		printKeys(w, r.Key)
	default:
		fmt.Fprintf(w, "%s job %s %s\n", e.Kind, e.JobID, e.Status)
	}
}

// printDryRun prints what a dry run found: the files a backup would store, in path
// order, then the counts.
func printDryRun(w io.Writer, b *brr.BackupResult) {
	for _, p := range b.WouldRead {
		if strings.ContainsFunc(p, func(r rune) bool { return r < ' ' || r == 0x7f }) {
			p = strconv.Quote(p) // a name with a line break must not read as two
		}
		fmt.Fprintln(w, p)
	}
	if b.WouldReadMore > 0 {
		fmt.Fprintf(w, "... and %d more files (the result lists the first %d)\n", b.WouldReadMore, len(b.WouldRead))
	}
	fmt.Fprintf(w, "dry run of %s for repo %s: nothing stored\n", b.Source, b.Repo)
	fmt.Fprintf(w, "would store: %d files, %d dirs, %s, in %s\n", b.Files, b.Dirs, brr.FormatBytes(b.Bytes), ms(b.DurationMS))
	printExcluded(w, b)
	printWarnings(w, b.Warnings)
}

// printExcluded prints what the excludes left out, when they left out anything.
func printExcluded(w io.Writer, b *brr.BackupResult) {
	if b.FilesExcluded+b.DirsExcluded == 0 {
		return
	}
	fmt.Fprintf(w, "excluded: %d files (%s), %d dirs (not counted inside)\n", b.FilesExcluded, brr.FormatBytes(b.BytesExcluded), b.DirsExcluded)
}

// printCommand prints the run of a source's command (what), when there was one: its exit
// code, what went through its standard output or input, and the end of its stderr.
func printCommand(w io.Writer, what string, c *brr.CommandRun) {
	if c == nil {
		return
	}
	fmt.Fprintf(w, "%-8s exited %d, %s in %s\n", what+":", c.ExitCode, brr.FormatBytes(c.Bytes), ms(c.DurationMS))
	for _, l := range strings.Split(strings.TrimRight(c.Stderr, "\n"), "\n") {
		if l != "" {
			fmt.Fprintf(w, "  stderr: %s\n", l)
		}
	}
}

func printWarnings(w io.Writer, warnings []string) {
	for _, s := range warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
}

func ms(n int64) string {
	return (time.Duration(n) * time.Millisecond).Round(time.Millisecond).String()
}
