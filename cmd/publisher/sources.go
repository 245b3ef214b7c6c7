package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

// sourceRow is a row of `brr sources`: a named source as the live workers of the pool
// that have it define it, with the newest snapshot of it.
type sourceRow struct {
	brr.SourceInfo
	// Source is what its snapshots are of: the path, or source:NAME.
	Source string `json:"source"`
	// Workers are the live workers of the pool that have it, sorted.
	Workers []string `json:"workers"`
	// Latest is its newest snapshot in its repo, from any host; nil when there is none
	// (or Error says why it is unknown). AgeSeconds is that snapshot's age.
	Latest     *brr.Snapshot `json:"latest,omitempty"`
	AgeSeconds float64       `json:"age_seconds,omitempty"`
	Error      string        `json:"error,omitempty"`
	// defaultRepo names the default repo, for a source with no repo of its own, when the
	// listing of the default repo told it.
	defaultRepo string
}

func (m *Main) sourcesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "sources",
		Short: "List the named sources of the workers, with their last snapshot",
		Long: `List the named sources (sources: in the workers' config, see docs/sources.md) of the
live workers of the pool, one row per source: what it is (path, command or sqlite), the
path of a path or sqlite source, the repo its backups go to, the workers that have it,
and its newest snapshot in that repo (from any host) with its age. The sources are read
from the workers' heartbeats, which never carry the text of a command or a hook; a source
that two workers define differently is listed once per definition. Back a source up with
brr backup --source-name NAME.`,
		Example: `  brr sources
  brr sources --pool edge --json`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				workers, err := c.Workers(ctx)
				if err != nil {
					return err
				}
				rows := poolSources(workers, m.pool)
				unread := latestSnapshots(ctx, c, rows, time.Now())
				err = printList(m, rows, fmt.Sprintf("no live worker of pool %s has a named source (add one under sources: in a worker's config, see docs/sources.md)", m.pool),
					"NAME\tKIND\tPATH\tREPO\tWORKERS\tLAST SNAPSHOT\tAGE",
					func(r sourceRow) string {
						last, age := "never", "-"
						switch {
						case r.Error != "":
							last = "?"
						case r.Latest != nil:
							last = shortID(r.Latest.ID) + " " + r.Latest.Time.Local().Format(time.DateTime)
							age = roundDuration(time.Duration(r.AgeSeconds * float64(time.Second)))
						}
						return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", r.Name, r.Kind, cmp.Or(r.Path, "-"), rowRepo(r),
							strings.Join(r.Workers, ","), last, age)
					})
				if err != nil {
					return err
				}
				if len(unread) > 0 {
					return errors.Join(unread...)
				}
				return nil
			})
		},
	}
}

// rowRepo is the repo of a row for the table: the one configured, else the default
// repo's name once a snapshot in it tells it.
func rowRepo(r sourceRow) string {
	switch {
	case r.Repo != "":
		return r.Repo
	case r.defaultRepo != "":
		return r.defaultRepo
	}
	return "(default)"
}

// poolSources are the sources of the live workers of pool, one row per definition,
// sorted by name.
func poolSources(workers []brr.WorkerInfo, pool string) []sourceRow {
	var rows []sourceRow
	for _, w := range workers {
		if w.Missing || !slices.Contains(w.Pools, pool) {
			continue
		}
		for _, s := range w.Sources {
			i := slices.IndexFunc(rows, func(r sourceRow) bool { return sameSource(r.SourceInfo, s) })
			if i < 0 {
				def := s
				def.Watching = nil
				rows = append(rows, sourceRow{SourceInfo: def, Source: s.Key()})
				i = len(rows) - 1
			}
			rows[i].Workers = append(rows[i].Workers, w.ID)
			// What the watch says comes from the worker that watches the source now.
			if s.Watching != nil {
				rows[i].Watching = s.Watching
			}
		}
	}
	slices.SortStableFunc(rows, func(a, b sourceRow) int { return strings.Compare(a.Name, b.Name) })
	for i := range rows {
		slices.Sort(rows[i].Workers)
	}
	return rows
}

// sameSource reports whether two workers define a source alike: same name, kind, path,
// repo, tags and watch.
func sameSource(a, b brr.SourceInfo) bool {
	return a.Name == b.Name && a.Kind == b.Kind && a.Path == b.Path && a.Repo == b.Repo && slices.Equal(a.Tags, b.Tags) &&
		(a.Watch == nil) == (b.Watch == nil) && (a.Watch == nil || *a.Watch == *b.Watch)
}

// latestSnapshots fills in the newest snapshot of each row, listing each repo once (""
// is the default repo of the worker that answers). It returns an error for each repo
// that could not be listed; the rows of those say so.
func latestSnapshots(ctx context.Context, c *brr.Client, rows []sourceRow, now time.Time) []error {
	var unread []error
	listed := map[string][]brr.Snapshot{}
	failed := map[string]error{}
	for i := range rows {
		r := &rows[i]
		snaps, ok := listed[r.Repo]
		err := failed[r.Repo]
		if !ok && err == nil {
			snaps, err = c.Snapshots(ctx, r.Repo, "")
			if err != nil {
				failed[r.Repo] = err
				unread = append(unread, err)
			} else {
				listed[r.Repo] = snaps
			}
		}
		if err != nil {
			r.Error = err.Error()
			continue
		}
		if r.Repo == "" && len(snaps) > 0 {
			r.defaultRepo = snaps[0].Repo
		}
		for j := range snaps {
			if sn := &snaps[j]; sn.Source == r.Source && (r.Latest == nil || sn.Time.After(r.Latest.Time)) {
				r.Latest = sn
			}
		}
		if r.Latest != nil {
			r.AgeSeconds = max(now.Sub(r.Latest.Time).Seconds(), 0)
		}
	}
	return unread
}
