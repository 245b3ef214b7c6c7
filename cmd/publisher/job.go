package main

import (
	"context"
	"errors"
	"fmt"
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
