package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

// keyCmd is `brr key list|add|remove|passwd`: key jobs, which always wait for their
// result.
func (m *Main) keyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key list|add|remove|passwd --repo NAME",
		Short: "List, add, remove or replace the keys (passwords) of a repository",
		Long: `A repository has one master key and any number of keys: each is the master key
wrapped with one password (or key file), and any of them opens the repository. These
commands run as key jobs on a worker of the pool that serves the repo, and wait for it.

No password ever travels in a job or a result. 'brr key add' makes the worker generate a
password and write it to a file in its key directory (<data_dir>/keys, mode 0600), and
prints where; with --password-file NAME the worker reads the password from the file NAME
in that directory instead, which you put there (mode 0600) on the worker's host.

A worker never removes the key it opened the repository with, nor the last key, and an
append_only worker removes none. To rotate a key, see docs/operations.md ("Rotating a
repository key"): add a key, point the workers' key_file or password_env at it, restart
them, then remove the old key.`,
		Example: `  brr key list --repo offsite
  brr key add --repo offsite
  brr key add --repo offsite --password-file offsite-2027.pw
  brr key remove 1a2b3c4d --repo offsite
  brr key passwd 1a2b3c4d --repo offsite`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			_ = cmd.Help()
			return usageError(fmt.Errorf("key: name an action: list, add, remove or passwd"))
		},
	}
	sub := func(use, short string, nargs int, file bool, action string) *cobra.Command {
		var (
			f            jobFlags
			repo, pwFile string
		)
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Args:  args(nargs, nargs),
			RunE: func(cmd *cobra.Command, args []string) error {
				job := brr.KeyJob{Action: action, Repo: repo, PasswordFile: pwFile}
				if nargs == 1 {
					job.ID = args[0]
				}
				// A bad job is a usage error before anything is asked of the server.
				if err := job.Validate(); err != nil {
					return err
				}
				f.wait = m.capture == nil // a key job's result is the point; a scheduled one has nobody waiting
				return m.runJob(cmd, f, job)
			},
		}
		c.Flags().StringVar(&f.id, "id", "", "job id (default: generated); publishing the same id again does nothing")
		c.Flags().StringVar(&repo, "repo", "", "repository name from the worker's config")
		if file {
			c.Flags().StringVar(&pwFile, "password-file", "", "name of a file in the worker's key directory (<data_dir>/keys) holding the new password (default: the worker generates one)")
		}
		return c
	}
	cmd.AddCommand(
		sub("list", "List the keys: id, created, host, user, the workers that use each, KDF", 0, false, brr.KeyList),
		sub("add", "Add a key, for a generated password or one in the worker's key directory", 0, true, brr.KeyAdd),
		sub("remove ID", "Remove a key (never the worker's own, nor the last)", 1, false, brr.KeyRemove),
		sub("passwd ID", "Replace a key with one for a new password: add the new, remove the old", 1, true, brr.KeyPasswd),
	)
	return cmd
}

// printKeys prints a key job's result for people.
func printKeys(w io.Writer, k *brr.KeyResult) {
	if k.Removed != nil && k.Added != nil {
		fmt.Fprintf(w, "replaced key %s of repo %s with key %s\n", shortKey(k.Removed.ID), k.Repo, shortKey(k.Added.ID))
	} else if k.Removed != nil {
		fmt.Fprintf(w, "removed key %s of repo %s\n", shortKey(k.Removed.ID), k.Repo)
	} else if k.Added != nil {
		fmt.Fprintf(w, "added key %s to repo %s\n", shortKey(k.Added.ID), k.Repo)
	}
	if k.Added != nil {
		how := "read from"
		if k.Generated {
			how = "generated into"
		}
		fmt.Fprintf(w, "its password: %s %s on worker %s; keep a copy where you keep the repository's other keys\n", how, k.KeyFile, k.Worker)
	}
	// The worker that ran the job speaks for itself only: another worker of the pool may
	// have opened the repo with another key, which USED BY says (from the heartbeats).
	fmt.Fprintf(w, "keys of repo %s (* the key worker %s, which ran this job, opened it with; USED BY: the live workers that say they opened it with that key):\n", k.Repo, k.Worker)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  ID\tCREATED\tHOST\tUSER\tUSED BY\tKDF")
	for _, key := range k.Keys {
		mark := " "
		if key.Current {
			mark = "*"
		}
		kdf := key.KDF
		if key.Error != "" {
			kdf = "unreadable: " + key.Error
		}
		fmt.Fprintf(tw, "%s %s\t%s\t%s\t%s\t%s\t%s\n", mark, shortKey(key.ID), key.Created.Local().Format(time.DateTime), dash(key.Host), dash(key.User), dash(strings.Join(key.UsedBy, ",")), kdf)
	}
	tw.Flush()
}

func shortKey(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
