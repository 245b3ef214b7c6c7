package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

func (m *Main) snapshotsCmd() *cobra.Command {
	var repo, source string
	cmd := &cobra.Command{
		Use:   "snapshots",
		Short: "List the snapshots in a repository",
		Long: `List the snapshots in a repository, asking a worker of the pool; with --source only
those of one source path.`,
		Example: `  brr snapshots --repo local
  brr snapshots --source /srv/app --json`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var err error
			if source, err = m.absSource(source); err != nil {
				return err
			}
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				snaps, err := c.Snapshots(ctx, repo, source)
				if err != nil {
					return err
				}
				return printList(m, snaps, "no snapshots (make one with: brr backup PATH)", "ID\tTIME\tHOST\tSOURCE\tFILES\tSIZE\tADDED\tTAGS", func(s brr.Snapshot) string {
					return fmt.Sprintf("%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s", shortID(s.ID), s.Time.Local().Format(time.DateTime), s.Host, s.Source,
						s.Files, brr.FormatBytes(s.Bytes), brr.FormatBytes(s.BytesAdded), strings.Join(s.Tags, ","))
				})
			})
		},
	}
	cmd.Flags().StringVar(&repo, "repo", "", "repository name from the worker's config (default: the worker's default)")
	cmd.Flags().StringVar(&source, "source", "", "only snapshots of this source path")
	return cmd
}
