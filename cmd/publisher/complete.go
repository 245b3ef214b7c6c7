package main

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

// completeTimeout bounds what a completion asks the pool: a shell waits for it at each
// TAB, and no answer is better than a slow one.
const completeTimeout = 2 * time.Second

// completions adds to the command tree what the shell completes from the pool (cobra's
// `brr completion bash|zsh|fish|powershell` scripts call the hidden `brr __complete`):
// job ids, dead job ids, snapshot ids and repo names, asked over NATS with the command's
// own flags (--nats, --pool, the login); and the values of --kind. Commands are found by
// their path, so that one added later only needs a line here.
func (m *Main) completions(root *cobra.Command) {
	jobKinds := func() []string {
		var out []string
		for _, k := range brr.Kinds {
			out = append(out, string(k))
		}
		return out
	}
	types := func() []string {
		var out []string
		for _, t := range eventTypes {
			out = append(out, string(t))
		}
		return out
	}
	args := map[string]cobra.CompletionFunc{
		"jobs show":   m.completeFirst(m.jobIDs),
		"cancel":      m.completeFirst(m.jobIDs),
		"dlq retry":   m.completeFirst(m.deadIDs),
		"dlq rm":      m.completeAll(m.deadIDs),
		"restore":     m.completeFirst(m.snapshotIDs),
		"replicate":   m.completeFirst(m.snapshotIDs),
		"checkpoint":  m.completeFirst(m.snapshotIDs),
		"ls":          m.completeFirst(m.snapshotIDs),
		"dump":        m.completeFirst(m.snapshotIDs),
		"diff":        m.completeUpTo(2, m.snapshotIDs),
		"repo rm":     m.completeFirst(m.repoNames),
		"schedule rm": m.completeFirst(m.scheduleNames),
	}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		path := subcommand(c)
		if fn := args[path]; fn != nil && c.ValidArgsFunction == nil {
			c.ValidArgsFunction = fn
		}
		for _, name := range []string{"repo", "to", "from"} {
			if c.LocalFlags().Lookup(name) != nil {
				_ = c.RegisterFlagCompletionFunc(name, m.completeAny(m.repoNames))
			}
		}
		if c.LocalFlags().Lookup("kind") != nil {
			values := jobKinds()
			if path == "events" {
				values = types()
			}
			_ = c.RegisterFlagCompletionFunc("kind", cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
}

// completeFirst completes the first argument with list, and nothing after it.
func (m *Main) completeFirst(list func(cmd *cobra.Command) []string) cobra.CompletionFunc {
	return m.completeUpTo(1, list)
}

// completeUpTo completes the first n arguments with list.
func (m *Main) completeUpTo(n int, list func(cmd *cobra.Command) []string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		if len(args) >= n {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return matching(list(cmd), toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeAll completes every argument with list, leaving out those given already.
func (m *Main) completeAll(list func(cmd *cobra.Command) []string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, args []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		out := slices.DeleteFunc(list(cmd), func(s string) bool { return slices.Contains(args, s) })
		return matching(out, toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

// completeAny completes a flag's value with list.
func (m *Main) completeAny(list func(cmd *cobra.Command) []string) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]string, cobra.ShellCompDirective) {
		return matching(list(cmd), toComplete), cobra.ShellCompDirectiveNoFileComp
	}
}

func matching(list []string, prefix string) []string {
	out := list[:0:0]
	for _, s := range list {
		if strings.HasPrefix(s, prefix) {
			out = append(out, s)
		}
	}
	return out
}

// ask runs fn with a client, within completeTimeout; any failure is no completion.
func (m *Main) ask(cmd *cobra.Command, fn func(ctx context.Context, c *brr.Client) []string) []string {
	var out []string
	ctx, cancel := context.WithTimeout(cmd.Context(), completeTimeout)
	defer cancel()
	cmd.SetContext(ctx)
	_ = m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
		out = fn(ctx, c)
		return nil
	})
	return out
}

func (m *Main) jobIDs(cmd *cobra.Command) []string {
	return m.ask(cmd, func(ctx context.Context, c *brr.Client) []string {
		events, _ := c.Jobs(ctx, 100)
		var out []string
		for _, e := range events {
			if e.Kind != brr.KindPing {
				out = append(out, e.JobID)
			}
		}
		return out
	})
}

func (m *Main) deadIDs(cmd *cobra.Command) []string {
	return m.ask(cmd, func(ctx context.Context, c *brr.Client) []string {
		entries, _ := c.DeadLetters(ctx)
		var out []string
		for _, e := range entries {
			if e.JobID != "" && !slices.Contains(out, e.JobID) {
				out = append(out, e.JobID)
			}
		}
		return out
	})
}

// snapshotIDs are "latest" and the short ids of the snapshots of the command's --repo
// (or --from), newest first.
func (m *Main) snapshotIDs(cmd *cobra.Command) []string {
	repo := ""
	for _, name := range []string{"repo", "from"} {
		if f := cmd.Flags().Lookup(name); f != nil && f.Value.String() != "" {
			repo = f.Value.String()
		}
	}
	return m.ask(cmd, func(ctx context.Context, c *brr.Client) []string {
		snaps, _ := c.Snapshots(ctx, repo, "")
		out := []string{"latest"}
		for i := len(snaps) - 1; i >= 0; i-- {
			out = append(out, shortID(snaps[i].ID))
		}
		return out
	})
}

// repoNames are the repos the live workers of the pool serve.
func (m *Main) repoNames(cmd *cobra.Command) []string {
	return m.ask(cmd, func(ctx context.Context, c *brr.Client) []string {
		workers, _ := c.Workers(ctx)
		var out []string
		for _, w := range workers {
			if !slices.Contains(w.Pools, m.pool) {
				continue
			}
			for _, r := range w.Repos {
				if !slices.Contains(out, r) {
					out = append(out, r)
				}
			}
		}
		slices.Sort(out)
		return out
	})
}

func (m *Main) scheduleNames(cmd *cobra.Command) []string {
	return m.ask(cmd, func(ctx context.Context, c *brr.Client) []string {
		all, _ := c.Schedules(ctx)
		var out []string
		for _, s := range all {
			out = append(out, s.Name)
		}
		return out
	})
}
