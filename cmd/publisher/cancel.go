package main

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/brr-dev/brr"
)

// cancelReply is what `brr cancel --json` prints.
type cancelReply struct {
	ID string `json:"id"`
	// Status is the job's status when the cancel was asked ("" when no worker had it
	// yet); with --wait, Final is how it ended and TookMS the time from the request to
	// the end.
	Status brr.Status `json:"status,omitempty"`
	Worker string     `json:"worker,omitempty"`
	Final  brr.Status `json:"final,omitempty"`
	TookMS int64      `json:"took_ms,omitempty"`
	Error  string     `json:"error,omitempty"`
}

func (m *Main) cancelCmd() *cobra.Command {
	var wait bool
	cmd := &cobra.Command{
		Use:   "cancel ID",
		Short: "Cancel a queued or running job",
		Long: `Ask the workers to cancel a job. A running job stops within moments and ends with
status cancelled: what it wrote is left for its next run (a backup's packs are kept and
reused, no snapshot is written; a restore leaves complete files only). A job no worker
has taken yet (queued, waiting for a lease, between attempts) ends cancelled without
running when a worker takes it. A cancelled job is not a failure and does not go to the
dead-letter stream.

Cancelling a job that already ended changes nothing: brr says how it ended and exits 1.
With --wait, follow the job to its end: exit 0 if it ended cancelled, 1 if it ended
otherwise first.`,
		Example: `  brr cancel nightly-2026-11-26
  brr cancel nightly-2026-11-26 --wait`,
		Args: args(1, 1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return m.withClient(cmd, func(ctx context.Context, c *brr.Client) error {
				return m.cancel(ctx, c, args[0], wait)
			})
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait for the job to end and say how long that took")
	return cmd
}

func (m *Main) cancel(ctx context.Context, c *brr.Client, id string, wait bool) error {
	var w *brr.Waiter
	if wait {
		// Watch before the request, so that an end that comes at once is not missed.
		var err error
		if w, err = c.Watch(ctx, id, nil); err != nil {
			return err
		}
		defer w.Stop()
	}
	start := time.Now()
	res, err := c.Cancel(ctx, id, brr.CancelBy(who()))
	if errors.Is(err, brr.ErrJobEnded) {
		if m.json {
			_ = m.printJSON(cancelReply{ID: id, Status: res.Status, Worker: res.Worker, Final: res.Status, Error: err.Error()})
		}
		return &exitError{code: exitFailed, err: err}
	}
	if err != nil {
		return err
	}
	reply := cancelReply{ID: res.ID, Status: res.Status, Worker: res.Worker}
	if !wait {
		if m.json {
			return m.printJSON(reply)
		}
		switch {
		case res.Status == "":
			fmt.Fprintf(m.Stdout, "cancel of job %s requested: no worker has taken it yet; it ends cancelled, without running, when one does\n", id)
		default:
			fmt.Fprintf(m.Stdout, "cancel of job %s requested (it was %s on worker %s); follow it with: brr jobs show %s --wait\n", id, res.Status, res.Worker, id)
		}
		return nil
	}
	e, werr := w.Result(ctx)
	if e == nil {
		if errors.Is(werr, context.DeadlineExceeded) {
			return fmt.Errorf("job %s did not end within --timeout %s after the cancel; it ends when a worker takes it (follow it with: brr jobs show %s --wait)", id, m.timeout, id)
		}
		return werr
	}
	took := time.Since(start)
	reply.Final, reply.TookMS = e.Status, took.Milliseconds()
	if e.Status != brr.StatusCancelled {
		reply.Error = fmt.Sprintf("job %s ended %s before the cancel reached it", id, e.Status)
	}
	if m.json {
		if err := m.printJSON(reply); err != nil {
			return err
		}
	} else if reply.Error == "" {
		fmt.Fprintf(m.Stdout, "job %s cancelled, %s after the request\n", id, took.Round(time.Millisecond))
	}
	if reply.Error != "" {
		return &exitError{code: exitFailed, err: errors.New(reply.Error)}
	}
	return nil
}
