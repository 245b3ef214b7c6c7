package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

var eventTypes = []brr.EventType{brr.EventJob, brr.EventSnapshot, brr.EventReplication, brr.EventRecovery, brr.EventHealth}

func (m *Main) eventsCmd() *cobra.Command {
	var (
		kind   string
		follow bool
		since  time.Duration
		limit  int
		quiet  bool
		all    bool
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show events: jobs, snapshots, replication, recovery, health",
		Long: `Show the events the workers published, oldest first: the last --limit of them, or
those of the last --since. With --follow, keep printing new events until interrupted
(from --since ago when given, else only new ones).

The events of ping jobs (the health canary, brr bench) are left out unless --all is
given; --quiet leaves out progress and worker heartbeats as well.`,
		Example: `  brr events --kind job --since 1h
  brr events --since 7d --quiet
  brr events --kind health --follow --json`,
		Args: args(0, 0),
		RunE: func(cmd *cobra.Command, args []string) error {
			var typ brr.EventType
			if kind != "" {
				typ = brr.EventType(kind)
				if !validType(typ) {
					return usageError(fmt.Errorf("--kind %q: use one of %s", kind, typeList()))
				}
			}
			if since < 0 {
				return usageError(fmt.Errorf("--since %s: use a positive duration like 1h", since))
			}
			show := func(e *brr.Event) bool {
				if e.Kind == brr.KindPing && !all {
					return false
				}
				return !quiet || !(e.Status == brr.StatusProgress || e.Type == brr.EventHealth && e.Status == brr.Status(brr.CheckWorker))
			}
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				filter := c.Subjects().Events(typ)
				var from time.Time
				if since > 0 {
					from = time.Now().Add(-since)
				}
				if !follow {
					n := limit
					if since > 0 {
						n = 0
					} else if !all || quiet {
						n = 20 * limit // filtered below: look further back
					}
					events, err := c.Events(ctx, filter, from, n)
					if err != nil {
						return err
					}
					events = slices.DeleteFunc(events, func(e *brr.Event) bool { return !show(e) })
					if since == 0 && limit > 0 && len(events) > limit {
						events = events[len(events)-limit:]
					}
					for _, e := range events {
						if err := m.printEvent(e); err != nil {
							return err
						}
					}
					return nil
				}
				var opts []brr.SubscribeOption
				if since > 0 {
					opts = append(opts, brr.DeliverSince(from))
				}
				errc := make(chan error, 1)
				err := c.Subscribe(ctx, filter, func(e *brr.Event) {
					if !show(e) {
						return
					}
					if err := m.printEvent(e); err != nil {
						select {
						case errc <- err:
						default:
						}
					}
				}, opts...)
				if err != nil {
					return err
				}
				select {
				case <-ctx.Done():
					return nil // interrupted or --timeout: following ends normally
				case err := <-errc:
					return err
				}
			})
		},
	}
	cmd.Flags().StringVar(&kind, "kind", "", "only events of this type: "+typeList())
	cmd.Flags().BoolVar(&follow, "follow", false, "keep printing new events until interrupted")
	cmd.Flags().Var((*spanValue)(&since), "since", "events of the last DURATION, e.g. 30m, 24h or 7d")
	cmd.Flags().IntVar(&limit, "limit", 100, "without --since or --follow: the last N events")
	cmd.Flags().BoolVar(&quiet, "quiet", false, "leave out progress events and worker heartbeats")
	cmd.Flags().BoolVar(&all, "all", false, "show the events of ping jobs (the health canary) too")
	return cmd
}

func validType(t brr.EventType) bool {
	for _, k := range eventTypes {
		if k == t {
			return true
		}
	}
	return false
}

func typeList() string {
	var s []string
	for _, t := range eventTypes {
		s = append(s, string(t))
	}
	return strings.Join(s, "|")
}

// printEvent prints one event: JSON, or a line for people.
func (m *Main) printEvent(e *brr.Event) error {
	if m.json {
		return m.printJSON(e)
	}
	var b strings.Builder
	b.WriteString(e.Time.Local().Format("2006-01-02 15:04:05.000"))
	b.WriteString("  ")
	b.WriteString(string(e.Type))
	if e.Type == brr.EventJob {
		b.WriteString("." + string(e.Kind))
	}
	b.WriteString("." + string(e.Status))
	field := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	field("job", e.JobID)
	field("worker", e.Worker)
	field("repo", e.Repo)
	field("source", e.Source)
	field("snapshot", shortID(e.Snapshot))
	if e.Progress != nil {
		field("progress", fmt.Sprintf("%q", jobProgressText(e.Kind, e.Progress)))
	}
	if info := resultInfo(e.Result); info != "" && e.Error == "" {
		field("result", fmt.Sprintf("%q", info))
	}
	if e.Error != "" {
		field("error", fmt.Sprintf("%q", e.Error))
	}
	_, err := fmt.Fprintln(m.Stdout, b.String())
	return err
}

// spanValue is a duration flag that takes the units d and w as well (parseSpan).
type spanValue time.Duration

func (v *spanValue) String() string {
	if *v == 0 {
		return "" // no default shown in --help
	}
	return time.Duration(*v).String()
}

func (v *spanValue) Set(s string) error {
	d, err := parseSpan(s)
	if err != nil {
		return err
	}
	*v = spanValue(d)
	return nil
}

func (v *spanValue) Type() string { return "duration" }
