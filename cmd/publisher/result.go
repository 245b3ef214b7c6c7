package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/brr-dev/brr"
)

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
