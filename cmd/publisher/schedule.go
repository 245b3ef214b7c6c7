package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	// --tz is checked against Go's zone database; embedded, it does not depend on the
	// host having one (minimal containers do not).
	_ "time/tzdata"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

// capturedJob is what a job command records in capture mode instead of publishing.
type capturedJob struct {
	args brr.JobArgs
	// pool is the --pool given among the job command's words, or "".
	pool string
}

// errNotAJob is connect's error in capture mode: the command is not a job command, since
// those record their job in runJob before they would connect.
var errNotAJob = errors.New("not a job command")

// captureJob records a job command's job for `brr schedule add`. --wait and --id have no
// meaning in a schedule: nobody waits for a tick, and every tick needs an id of its own.
func (m *Main) captureJob(cmd *cobra.Command, f jobFlags, args brr.JobArgs) error {
	switch {
	case f.wait:
		return usageError(fmt.Errorf("%s --wait: nobody waits for a scheduled job; follow the jobs with brr events --follow", subcommand(cmd)))
	case f.id != "":
		return usageError(fmt.Errorf("%s --id: a schedule's jobs are named after the schedule (s-NAME-<n>); drop --id", subcommand(cmd)))
	}
	if err := args.Validate(); err != nil {
		return err
	}
	m.capture.args = args
	if cmd.Flags().Changed("pool") {
		m.capture.pool = m.pool
	}
	return nil
}

// captureWords runs words as a command line of this CLI in capture mode and returns the
// job it asks for, without publishing anything.
func (m *Main) captureWords(ctx context.Context, words []string) (*capturedJob, error) {
	line := strings.Join(words, " ")
	inner := &Main{Stdout: m.Stdout, Stderr: m.Stderr, Getenv: m.Getenv, Getwd: m.Getwd, Version: m.Version, capture: &capturedJob{}}
	root := inner.newRoot()
	root.SetArgs(words)
	root.SetOut(m.Stdout)
	root.SetErr(m.Stderr)
	err := root.ExecuteContext(ctx)
	switch {
	case errors.Is(err, errNotAJob):
		return nil, usageError(fmt.Errorf("%q is not a job command: put a command that publishes a job after --, such as backup, verify or prune", line))
	case err != nil:
		return nil, fmt.Errorf("job command %q: %w", line, err)
	case inner.capture.args == nil:
		return nil, usageError(fmt.Errorf("job command %q asks for no job", line))
	}
	return inner.capture, nil
}

func (m *Main) scheduleCmd() *cobra.Command {
	ls := func(cmd *cobra.Command, args []string) error {
		return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
			all, err := c.Schedules(ctx)
			if err != nil {
				return err
			}
			now := time.Now()
			if m.json {
				// The next run is computed here, not stored: it goes beside the schedule.
				for _, s := range all {
					row := struct {
						*brr.Schedule
						Next *time.Time `json:"next,omitempty"`
					}{Schedule: s}
					if next := nextRun(s, now); !next.IsZero() {
						row.Next = &next
					}
					if err := m.printJSON(row); err != nil {
						return err
					}
				}
				return nil
			}
			return printList(m, all, "no schedules", "NAME\tCRON\tTZ\tNEXT\tTARGET\tJOB", func(s *brr.Schedule) string {
				tz := s.TimeZone
				if tz == "" {
					tz = "UTC"
				}
				return fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s", s.Name, s.Cron, tz, nextRunText(s, now), s.Target, jobSummary(s))
			})
		})
	}
	cmd := &cobra.Command{
		Use:   "schedule [ls | add NAME --cron EXPR [--tz ZONE] -- JOB COMMAND | rm NAME]",
		Short: "Run a job on a cron schedule, list schedules, remove one",
		Long: `Schedules are kept and fired by the NATS server: each is a message in the job
stream, and on every tick the server publishes a copy of its job to the workers' pool,
where one worker runs it. No worker keeps a timer, and no worker has to be up for the
schedule to tick; ticks while no worker runs wait in the queue.

Each fired job has its own id, s-NAME-<n>, and says "by schedule NAME".
See docs/schedules.md for the cron syntax, time zones and missed ticks.`,
		Example: `  brr schedule add nightly --cron "0 30 2 * * *" --tz Europe/Paris -- backup /srv/app --repo local
  brr schedule ls
  brr schedule rm nightly`,
		Args: args(0, 0),
		RunE: ls,
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Short:   "List the schedules: name, cron, time zone, next run, target subject and job",
		Example: "  brr schedule ls --json",
		Args:    args(0, 0),
		RunE:    ls,
	})
	cmd.AddCommand(m.scheduleAddCmd())
	cmd.AddCommand(&cobra.Command{
		Use:     "rm NAME",
		Short:   "Remove a schedule; the server fires it no more",
		Long:    "Remove schedule NAME. Jobs it fired before and that wait in the queue still run.",
		Example: "  brr schedule rm nightly",
		Args:    args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := brr.ValidateScheduleName(args[0]); err != nil {
				return err
			}
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				if err := c.RemoveSchedule(ctx, args[0]); err != nil {
					return err
				}
				if m.json {
					return m.printJSON(map[string]any{"name": args[0], "removed": true})
				}
				fmt.Fprintf(m.Stdout, "schedule %s removed\n", args[0])
				return nil
			})
		},
	})
	return cmd
}

func (m *Main) scheduleAddCmd() *cobra.Command {
	var cron, tz string
	cmd := &cobra.Command{
		Use:   "add NAME --cron EXPR [--tz ZONE] -- JOB COMMAND",
		Short: "Add or replace a schedule that runs a job command",
		Long: `Add schedule NAME, which runs the job command given after -- on every tick of
--cron. The job command is any command of this CLI that publishes a job (backup,
restore, verify, replicate, prune, checkpoint, drill, ...), with its flags, as you would
type it, without --wait and --id; a relative path in it is made absolute now. A
schedule of that name is replaced.

--cron takes six fields, seconds first: "SEC MIN HOUR DAY-OF-MONTH MONTH DAY-OF-WEEK",
each "*", "?", N, N-M, a list of those, with an optional /STEP; months and weekdays also
by name (jan, mon). Or a name: @hourly, @daily, @weekly, @monthly, @yearly; or an
interval: "@every 15m" (at least 1s). --tz reads the cron fields in an IANA time zone
(default UTC); it does not apply to @every.`,
		Example: `  # every night at 02:30, Paris time
  brr schedule add nightly --cron "0 30 2 * * *" --tz Europe/Paris -- backup /srv/app --repo local
  # every 15 minutes, in the pool of the host web1
  brr schedule add web1-often --cron "@every 15m" --pool web1 -- backup /var/www --tag often
  # a full verify on Sundays at 04:00 UTC
  brr schedule add weekly-verify --cron "0 0 4 * * sun" -- verify --read-data`,
		Args: func(cmd *cobra.Command, args []string) error {
			switch dash := cmd.ArgsLenAtDash(); {
			case dash < 0:
				return usageError(fmt.Errorf("schedule add: give the job command after --: brr schedule add NAME --cron EXPR -- backup /srv/app"))
			case dash != 1:
				return usageError(fmt.Errorf("schedule add: want one NAME before --, got %d: usage: %s", dash, cmd.UseLine()))
			case len(args) == 1:
				return usageError(fmt.Errorf("schedule add: no job command after --, such as: -- backup /srv/app"))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			if err := brr.ValidateScheduleName(name); err != nil {
				return err
			}
			if cron == "" {
				return usageError(errors.New(`schedule add: --cron is required, such as --cron "0 30 2 * * *" or --cron @daily`))
			}
			if err := brr.ValidateCron(cron, tz); err != nil {
				return err
			}
			job, err := m.captureWords(cmd.Context(), args[1:])
			if err != nil {
				return err
			}
			pool := m.pool
			if job.pool != "" {
				pool = job.pool
			}
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				s, err := c.AddSchedule(ctx, name, cron, tz, job.args, brr.WithJobPool(pool))
				if err != nil {
					return err
				}
				if m.json {
					return m.printJSON(s)
				}
				fmt.Fprintf(m.Stdout, "schedule %s: %s to %s on %q", s.Name, jobSummary(s), s.Target, s.Cron)
				if s.TimeZone != "" {
					fmt.Fprintf(m.Stdout, " (%s)", s.TimeZone)
				}
				fmt.Fprintln(m.Stdout)
				return nil
			})
		},
	}
	cmd.Flags().StringVar(&cron, "cron", "", `when to run: six cron fields, seconds first ("0 30 2 * * *"), @daily, or "@every 1h"`)
	cmd.Flags().StringVar(&tz, "tz", "", "IANA time zone the cron fields are read in, such as Europe/Paris (default UTC)")
	return cmd
}

// jobSummary is a schedule's job in one line: its kind and its args as JSON, or what is
// wrong with the stored schedule.
func jobSummary(s *brr.Schedule) string {
	if s.Job == nil {
		return "(broken: " + s.Problem + ")"
	}
	args, err := json.Marshal(s.Job.Args)
	if err != nil {
		return string(s.Job.Kind)
	}
	return string(s.Job.Kind) + " " + string(args)
}
