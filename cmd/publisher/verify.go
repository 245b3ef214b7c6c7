package main

import (
	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

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
