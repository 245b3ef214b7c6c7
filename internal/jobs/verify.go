package jobs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
)

// Verify checks the job's repository: that every referenced blob exists and, with
// ReadData, that every blob decrypts and matches its id; with Drill it then runs a
// restore drill of the newest snapshot (see Drill). Damage found returns the report
// and a Permanent error that names the damaged objects: running again will not repair
// them. A drill that fails fails the verify too, with its report in res.Drill.
func (e *Engine) Verify(ctx context.Context, jobID string, a brr.VerifyJob, progress func(brr.Progress)) (*brr.VerifyResult, error) {
	start := time.Now()
	pr := newReporter(progress)
	defer pr.flush()
	r, repoName, err := e.Repo(a.Repo)
	if err != nil {
		return nil, err
	}
	opts := repo.CheckOptions{ReadData: a.ReadData}
	if pr != nil {
		phase := verifyCheckStructure
		if a.ReadData {
			phase = verifyReadData
		}
		opts.Progress = func(done, total int64) {
			pr.report(verifyProgress(phase, done, total, time.Since(start)))
		}
	}
	rep, err := r.Check(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("check repo %s: %w", repoName, err)
	}
	res := &brr.VerifyResult{
		Repo:       repoName,
		ReadData:   a.ReadData,
		Snapshots:  rep.Snapshots,
		Packs:      rep.Packs,
		Blobs:      rep.Blobs,
		BytesRead:  rep.BytesRead,
		Damaged:    rep.Damage,
		DurationMS: time.Since(start).Milliseconds(),
	}
	if a.Drill {
		derr := e.verifyDrill(ctx, r, repoName, res, pr)
		res.DurationMS = time.Since(start).Milliseconds()
		if derr != nil && res.OK() {
			return res, derr
		}
	}
	if res.OK() {
		return res, nil
	}
	const shown = 5
	var parts []string
	for i, d := range res.Damaged {
		if i == shown {
			parts = append(parts, fmt.Sprintf("and %d more", len(res.Damaged)-shown))
			break
		}
		parts = append(parts, describeDamage(d))
	}
	return res, brr.Permanent(fmt.Errorf("verify found %d damaged objects in repo %s: %s; restore the affected files from another repository or back them up again",
		len(res.Damaged), repoName, strings.Join(parts, "; ")))
}

// runVerify runs a verify job; the outcome of one that ran a drill states the drill's
// recovery event.
func (e *Engine) runVerify(ctx context.Context, job *brr.Job, a brr.VerifyJob, rep brr.Reporter) (*brr.Outcome, error) {
	res, err := e.Verify(ctx, job.ID, a, progressOf(rep))
	if res == nil {
		return nil, err
	}
	out := &brr.Outcome{Result: &brr.Result{Verify: res}}
	if res.Drill != nil {
		out.Events = []*brr.Event{drillEvent(res.Drill, err)}
	}
	return out, err
}

// The phases of a verify job's progress: one for the whole job, as the repository's
// check reports one count across packs and snapshots.
const (
	verifyCheckStructure = "check structure"
	verifyReadData       = "read data"
)

// verifyProgress is a verify job's progress after elapsed, with done of total objects
// checked. A verify counts objects, not files or bytes: Files and TotalFiles are the
// snapshots walked and, with ReadData, the packs read (the counts of
// repo.CheckOptions.Progress); Bytes and TotalBytes stay 0, since the bytes read are
// known only at the end, in VerifyResult.BytesRead. ETASeconds is a rough guess: it
// assumes each object left takes as long as the average one so far.
func verifyProgress(phase string, done, total int64, elapsed time.Duration) brr.Progress {
	p := brr.Progress{Phase: phase, Files: done, TotalFiles: total}
	if done > 0 && total > done && elapsed > 0 {
		p.ETASeconds = elapsed.Seconds() / float64(done) * float64(total-done)
	}
	return p
}

func describeDamage(d brr.Damage) string {
	var b strings.Builder
	switch {
	case d.Blob != "" && d.Pack != "":
		fmt.Fprintf(&b, "blob %s in pack %s", short(d.Blob), short(d.Pack))
	case d.Blob != "":
		fmt.Fprintf(&b, "blob %s", short(d.Blob))
	case d.Pack != "":
		fmt.Fprintf(&b, "pack %s", short(d.Pack))
	}
	if d.Problem != "" {
		if b.Len() > 0 {
			b.WriteString(": ")
		}
		b.WriteString(d.Problem)
	}
	if len(d.Paths) > 0 {
		fmt.Fprintf(&b, " (affects %s", strings.Join(firstN(d.Paths, 3), ", "))
		if len(d.Paths) > 3 {
			fmt.Fprintf(&b, " and %d more", len(d.Paths)-3)
		}
		b.WriteString(")")
	}
	return b.String()
}

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
