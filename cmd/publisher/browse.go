package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

// The browse commands ask a worker of the pool to read a snapshot: the CLI holds no key.

func (m *Main) lsCmd() *cobra.Command {
	var repo string
	var long, recursive bool
	cmd := &cobra.Command{
		Use:   "ls SNAPSHOT [PATH]",
		Short: "List a directory of a snapshot",
		Long: `List the entries of a directory of a snapshot (its root by default), or everything
below it with --recursive. SNAPSHOT is "latest", an id or a prefix of at least 4 characters;
PATH is from the snapshot's root (/etc/hosts or etc/hosts). Only the trees on the path are
read, so a directory of a very large snapshot lists quickly.`,
		Example: `  brr ls latest
  brr ls 3f9c2a /etc --long
  brr ls 3f9c2a /srv/app --recursive --json`,
		Args: args(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := brr.ListRequest{Repo: repo, Snapshot: args[0], Recursive: recursive}
			if len(args) > 1 {
				req.Path = args[1]
			}
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				out := bufio.NewWriter(m.Stdout)
				tw := tabwriter.NewWriter(out, 0, 4, 1, ' ', tabwriter.AlignRight)
				_, err := c.List(ctx, req, func(e brr.TreeEntry) error {
					switch {
					case m.json:
						return m.printJSONTo(out, e)
					case long:
						_, err := fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t %s\n", fs.FileMode(e.Mode), e.UID, e.GID,
							brr.FormatBytes(e.Size), e.ModTime.Local().Format(time.DateTime), entryName(e, recursive, true))
						return err
					}
					_, err := fmt.Fprintln(out, entryName(e, recursive, false))
					return err
				})
				if ferr := tw.Flush(); err == nil {
					err = ferr
				}
				if ferr := out.Flush(); err == nil {
					err = ferr
				}
				return err
			})
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "repository name from the worker's config (default: the worker's default)")
	cmd.Flags().BoolVarP(&long, "long", "l", false, "show mode, owner, size and modification time")
	cmd.Flags().BoolVarP(&recursive, "recursive", "R", false, "list everything below the directory, with full paths")
	return cmd
}

// entryName is how ls shows e: its name (its path when recursive), "/" after a directory,
// and with long the target of a symlink.
func entryName(e brr.TreeEntry, recursive, long bool) string {
	name := e.Name
	if recursive {
		name = e.Path
	}
	switch {
	case e.Type == "dir" && name != "/":
		name += "/"
	case e.Type == "symlink" && long:
		name += " -> " + e.Target
	}
	return name
}

func (m *Main) findCmd() *cobra.Command {
	var repo string
	var snapshots []string
	cmd := &cobra.Command{
		Use:   "find PATTERN",
		Short: "Find which snapshots hold a file",
		Long: `Find the entries whose name matches PATTERN (a shell pattern: *, ?, [a-z]) in the snapshots
of a repository, newest snapshot first; a PATTERN with a "/" is matched against the whole
path from the snapshot's root (/etc/*.conf). --snapshot limits the search, and may be
given more than once.`,
		Example: `  brr find hosts
  brr find '*.sql' --snapshot latest --json
  brr find '/srv/app/config/*.yaml' --repo offsite`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := brr.FindRequest{Repo: repo, Pattern: args[0], Snapshots: snapshots}
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				out := bufio.NewWriter(m.Stdout)
				found := 0
				info, err := c.Find(ctx, req, func(f brr.FindMatch) error {
					found++
					if m.json {
						return m.printJSONTo(out, f)
					}
					if found == 1 {
						fmt.Fprintln(out, "SNAPSHOT      TIME                 SIZE       PATH")
					}
					_, err := fmt.Fprintf(out, "%-12s  %s  %9s  %s\n", shortID(f.Snapshot), f.Time.Local().Format(time.DateTime),
						brr.FormatBytes(f.Size), entryName(f.TreeEntry, true, true))
					return err
				})
				if ferr := out.Flush(); err == nil {
					err = ferr
				}
				if err == nil && !m.json {
					fmt.Fprintf(m.Stderr, "%d matches in %d snapshots\n", found, info.Snapshots)
				}
				return err
			})
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "repository name from the worker's config (default: the worker's default)")
	cmd.Flags().StringArrayVar(&snapshots, "snapshot", nil, "search only this snapshot (latest, an id or a prefix); repeatable")
	return cmd
}

func (m *Main) diffCmd() *cobra.Command {
	var repo string
	cmd := &cobra.Command{
		Use:   "diff SNAP_A SNAP_B",
		Short: "Show what changed between two snapshots",
		Long: `Show what changed from snapshot SNAP_A to SNAP_B, one line per path:
  +  added      -  removed      M  modified (content, type or symlink target)
  U  metadata only (mode, modification time or owner)
with the sizes before and after. Directories that are the same in both are not read.`,
		Example: `  brr diff 3f9c2a latest
  brr diff 3f9c2a 7be1 --json`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := brr.DiffRequest{Repo: repo, A: args[0], B: args[1]}
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				out := bufio.NewWriter(m.Stdout)
				counts := map[string]int{}
				_, err := c.Diff(ctx, req, func(ch brr.Change) error {
					counts[ch.Change]++
					if m.json {
						return m.printJSONTo(out, ch)
					}
					_, err := fmt.Fprintln(out, changeLine(ch))
					return err
				})
				if ferr := out.Flush(); err == nil {
					err = ferr
				}
				if err == nil && !m.json {
					fmt.Fprintf(m.Stderr, "%d added, %d removed, %d modified, %d metadata only\n",
						counts[brr.ChangeAdded], counts[brr.ChangeRemoved], counts[brr.ChangeModified], counts[brr.ChangeMetadata])
				}
				return err
			})
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "repository name from the worker's config (default: the worker's default)")
	return cmd
}

// changeLine is how diff shows ch.
func changeLine(ch brr.Change) string {
	path := ch.Path
	if ch.Type == "dir" {
		path += "/"
	}
	switch ch.Change {
	case brr.ChangeAdded:
		return fmt.Sprintf("+  %s  (%s)", path, brr.FormatBytes(ch.NewSize))
	case brr.ChangeRemoved:
		return fmt.Sprintf("-  %s  (%s)", path, brr.FormatBytes(ch.OldSize))
	case brr.ChangeModified:
		return fmt.Sprintf("M  %s  (%s → %s; %s)", path, brr.FormatBytes(ch.OldSize), brr.FormatBytes(ch.NewSize), strings.Join(ch.Fields, ", "))
	}
	return fmt.Sprintf("U  %s  (%s)", path, strings.Join(ch.Fields, ", "))
}

func (m *Main) dumpCmd() *cobra.Command {
	var repo string
	cmd := &cobra.Command{
		Use:   "dump SNAPSHOT FILE",
		Short: "Write a file of a snapshot to stdout (a directory as tar)",
		Long: `Write the content of FILE in a snapshot to stdout, or, when FILE is a directory, a tar
archive of it. The worker sends it in chunks of at most 256 KiB, and the SHA-256 of what
came is checked against the worker's at the end: on a mismatch or an error the command
exits non-zero (what was written so far is incomplete).`,
		Example: `  brr dump latest /etc/hosts
  brr dump 3f9c2a /srv/app/db.sqlite > db.sqlite
  brr dump latest /srv/app/config | tar -tv`,
		Args: args(2, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			req := brr.DumpRequest{Repo: repo, Snapshot: args[0], Path: args[1]}
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				out := bufio.NewWriterSize(m.Stdout, 256<<10)
				_, err := c.Dump(ctx, req, func(brr.DumpInfo) (io.Writer, error) { return out, nil })
				if ferr := out.Flush(); err == nil {
					err = ferr
				}
				return err
			})
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "repository name from the worker's config (default: the worker's default)")
	return cmd
}
