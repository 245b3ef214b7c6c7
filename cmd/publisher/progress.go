package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/brr-dev/brr"
)

// progressView shows a job's events while `--wait` waits: on a terminal one bar redrawn
// in place, otherwise one plain line per event. With --json it shows nothing, so that
// stdout holds only the result and stderr stays quiet.
type progressView struct {
	w      io.Writer
	tty    bool
	width  int
	quiet  bool
	drawn  bool // a bar is on the current line
	last   time.Time
	status brr.Status
	// attempt is the attempt of the last event shown: a job put back by a drain or
	// retried starts again, and its first progress is shown at once.
	attempt int
	// started is the attempt whose start was shown. The results bucket keeps only a
	// job's latest entry, so a watcher may see an attempt's progress without its start.
	started int
}

func newProgressView(w io.Writer, quiet bool) *progressView {
	width, tty := terminalWidth(w)
	return &progressView{w: w, tty: tty, width: width, quiet: quiet}
}

func (v *progressView) event(e *brr.Event) {
	if v.quiet {
		return
	}
	if e.Attempt > v.attempt {
		v.attempt, v.last, v.status = e.Attempt, time.Time{}, ""
	}
	if e.Status == brr.StatusProgress && e.Progress != nil {
		if n := max(e.Attempt, 1); n > v.started {
			v.clear()
			v.started, v.status = n, brr.StatusStarted
			fmt.Fprintf(v.w, "started (attempt %d)\n", n)
		}
		v.progress(e.Kind, e.Progress)
		return
	}
	if e.Status == v.status {
		return
	}
	v.status = e.Status
	v.clear()
	switch e.Status {
	case brr.StatusAccepted:
		fmt.Fprintf(v.w, "accepted by worker %s\n", e.Worker)
	case brr.StatusStarted:
		v.started = max(e.Attempt, 1)
		fmt.Fprintf(v.w, "started (attempt %d)\n", v.started)
	case brr.StatusRetrying:
		fmt.Fprintf(v.w, "attempt %d failed, retrying in %s: %s\n", e.Attempt, ms(e.RetryInMS), e.Error)
	default:
		if !e.Status.Final() {
			fmt.Fprintf(v.w, "%s\n", e.Status)
		}
	}
}

func (v *progressView) progress(kind brr.Kind, p *brr.Progress) {
	if !v.tty {
		// Plain lines at most every 2 s: a log, not a flood.
		if now := time.Now(); now.Sub(v.last) >= 2*time.Second {
			v.last = now
			fmt.Fprintln(v.w, jobProgressText(kind, p))
		}
		return
	}
	text := jobProgressText(kind, p)
	barWidth := v.width - len(text) - 4
	line := text
	if barWidth >= 10 && (p.TotalBytes > 0 || p.TotalFiles > 0) {
		frac := fraction(p)
		fill := int(frac * float64(barWidth))
		line = "[" + strings.Repeat("=", fill) + strings.Repeat(" ", barWidth-fill) + "] " + text
	}
	if len(line) > v.width-1 {
		line = line[:v.width-1]
	}
	fmt.Fprintf(v.w, "\r\033[K%s", line)
	v.drawn = true
}

// done ends the bar's line.
func (v *progressView) done() { v.clear() }

func (v *progressView) clear() {
	if v.drawn {
		fmt.Fprint(v.w, "\r\033[K")
		v.drawn = false
	}
}

func fraction(p *brr.Progress) float64 {
	var f float64
	switch {
	case p.TotalBytes > 0:
		f = float64(p.Bytes) / float64(p.TotalBytes)
	case p.TotalFiles > 0:
		f = float64(p.Files) / float64(p.TotalFiles)
	}
	return min(max(f, 0), 1)
}

// jobProgressText is the words of a progress line of a job of kind: the kind and phase,
// then how far it has got, rate and ETA, e.g. "backup: 5210/15036 files, 700.0 MiB/1.0 GiB
// (68%), 140.0 MiB/s, ETA 2s" or "verify: read data 120/452 objects (27%), ETA 9s".
// A verify counts objects (packs and snapshots), not files. Bytes are left out when the
// job counts none, as a verify does, rather than shown as "0 B".
func jobProgressText(kind brr.Kind, p *brr.Progress) string {
	var b strings.Builder
	switch {
	case kind != "" && p.Phase != "" && p.Phase != string(kind):
		fmt.Fprintf(&b, "%s: %s ", kind, p.Phase)
	case kind != "":
		fmt.Fprintf(&b, "%s: ", kind)
	case p.Phase != "":
		fmt.Fprintf(&b, "%s: ", p.Phase)
	}
	unit := "files"
	if kind == brr.KindVerify {
		unit = "objects"
	}
	switch {
	case p.TotalFiles > 0 && p.TotalBytes == 0:
		// The count is the only measure of how far: the percentage goes with it.
		fmt.Fprintf(&b, "%d/%d %s (%.0f%%)", p.Files, p.TotalFiles, unit, 100*fraction(p))
	case p.TotalFiles > 0:
		fmt.Fprintf(&b, "%d/%d %s", p.Files, p.TotalFiles, unit)
	default:
		fmt.Fprintf(&b, "%d %s", p.Files, unit)
	}
	switch {
	case p.TotalBytes > 0:
		fmt.Fprintf(&b, ", %s/%s (%.0f%%)", brr.FormatBytes(p.Bytes), brr.FormatBytes(p.TotalBytes), 100*fraction(p))
	case p.Bytes > 0:
		fmt.Fprintf(&b, ", %s", brr.FormatBytes(p.Bytes))
	}
	if p.BytesPerSec > 0 {
		fmt.Fprintf(&b, ", %s/s", brr.FormatBytes(int64(p.BytesPerSec)))
	}
	if p.ETASeconds > 0 {
		fmt.Fprintf(&b, ", ETA %s", (time.Duration(p.ETASeconds * float64(time.Second))).Round(time.Second))
	}
	return b.String()
}
