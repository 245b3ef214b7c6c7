package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
)

// restoreSource runs a restore job that names a source of the worker's config: a worker
// without the source refuses it (Handle snoozes it for one that has it). "latest" and
// as_of look among the source's snapshots. With a target the snapshot is restored there
// as any other; without one, the file of the snapshot of a command source is piped into
// the source's restore_command.
func (e *Engine) restoreSource(ctx context.Context, jobID string, a brr.RestoreJob, progress func(brr.Progress)) (*brr.RestoreResult, error) {
	if err := a.Validate(); err != nil {
		return nil, brr.Permanent(err)
	}
	resolved, src, err := e.resolveSource(brr.BackupJob{SourceName: a.SourceName})
	if err != nil {
		return nil, err
	}
	if a.Repo == "" {
		a.Repo = src.Repo
	}
	source := sourcePath(resolved, src)
	if a.Target != "" {
		t := a
		t.SourceName, t.Source = "", source
		res, err := e.Restore(ctx, jobID, t, progress)
		if res != nil {
			res.SourceName = src.Name
		}
		return res, err
	}
	if src.Command == "" || src.RestoreCommand == "" {
		what := "is not a command source"
		if src.Command != "" {
			what = "has no restore_command in this worker's config"
		}
		return nil, brr.Permanent(fmt.Errorf("source %s %s, so a restore without a target has nothing to pipe the snapshot into; give a target directory to write the snapshot out (brr restore %s TARGET --source-name %s)",
			src.Name, what, a.Snapshot, src.Name))
	}
	return e.restoreCommand(ctx, jobID, a, src, source, progress)
}

// restoreCommand pipes the file of a snapshot of the command source src into its
// restore_command, and fails when the command does not exit 0 within the source's
// timeout. A snapshot of another source is refused: the command is the source's, and
// only for what the source's command stored. The file is read blob by blob, each checked
// against its id as it is read, a few blobs ahead of the command: memory stays bounded
// however large the file. Unlike a restore into a directory, it does not fall back to
// the repo's replicas: a partial file may have gone into the command already. Name a
// replica in the job's repo to read from it.
func (e *Engine) restoreCommand(ctx context.Context, jobID string, a brr.RestoreJob, src *Source, source string, progress func(brr.Progress)) (*brr.RestoreResult, error) {
	start := time.Now()
	pr := newReporter(progress)
	defer pr.flush()
	r, repoName, err := e.Repo(a.Repo)
	if err != nil {
		return nil, err
	}
	if err := r.ReloadIndex(ctx); err != nil {
		return nil, fmt.Errorf("read the index of repo %s: %w", repoName, err)
	}
	sn, err := r.FindSnapshot(ctx, a.Snapshot, source, a.AsOf)
	switch {
	case errors.Is(err, brr.ErrNotFound):
		return nil, brr.Permanent(fmt.Errorf("find snapshot %q of source %s in repo %s: %w; list them with `brr snapshots --repo %s`", a.Snapshot, src.Name, repoName, err, repoName))
	case err != nil && ambiguous(ctx, r, a.Snapshot):
		return nil, brr.Permanent(fmt.Errorf("find snapshot %q in repo %s: %w", a.Snapshot, repoName, err))
	case err != nil:
		return nil, fmt.Errorf("find snapshot %q in repo %s: %w", a.Snapshot, repoName, err)
	case sn.Source != source:
		return nil, brr.Permanent(fmt.Errorf("snapshot %s is of %s, not of source %s (%s); the restore_command of a source takes only the source's own snapshots: give a target directory to write this one out",
			sn.ID.Short(), sn.Source, src.Name, source))
	}
	node, err := streamFile(ctx, r, sn)
	if err != nil {
		return nil, err
	}

	var written atomic.Int64
	stopProgress := pr.tick(ctx, func() brr.Progress {
		p := brr.Progress{Phase: "restore", Bytes: written.Load(), TotalFiles: 1, TotalBytes: node.Size}
		fillRate(&p, start, true)
		return p
	})
	run, err := e.pipeIntoCommand(ctx, jobID, src, r, sn, node, &written)
	stopProgress()
	res := &brr.RestoreResult{
		Snapshot:   sn.ID.String(),
		Repo:       repoName,
		SourceName: src.Name,
		Command:    run,
		Bytes:      written.Load(),
		DurationMS: time.Since(start).Milliseconds(),
	}
	if err != nil {
		return res, err
	}
	res.Files = 1
	if written.Load() < node.Size {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the restore_command of source %s exited 0 after taking %d of the file's %d bytes; check that it restored everything",
			src.Name, written.Load(), node.Size))
	}
	return res, nil
}

// streamFile returns the one regular file of the snapshot of a command source, whatever
// its name (the source's filename may have changed since).
func streamFile(ctx context.Context, r *repo.Repository, sn *repo.Snapshot) (*repo.Node, error) {
	tree, err := r.LoadTree(ctx, sn.Tree)
	if err != nil {
		return nil, fmt.Errorf("load the tree of snapshot %s: %w", sn.ID.Short(), err)
	}
	if len(tree.Nodes) != 1 || tree.Nodes[0].Type != repo.NodeFile {
		return nil, brr.Permanent(fmt.Errorf("snapshot %s of %s holds %d entries, not the one file a command source stores; give a target directory to write it out",
			sn.ID.Short(), sn.Source, len(tree.Nodes)))
	}
	return tree.Nodes[0], nil
}

// pipeIntoCommand runs the restore_command of src with the file node of snapshot sn of r on
// its standard input; written counts the bytes it took. The command's standard output is
// discarded; the end of its standard error is in the run. A command that exits non-zero,
// is killed or outlives the source's timeout fails the restore for good (running it
// again at once would apply a partial restore again); a blob that cannot be read kills
// the command before it sees the end of its input, and the job is retried, unless the
// blob is damaged or missing.
func (e *Engine) pipeIntoCommand(ctx context.Context, jobID string, src *Source, r *repo.Repository, sn *repo.Snapshot, node *repo.Node, written *atomic.Int64) (*brr.CommandRun, error) {
	runCtx, cancel := context.WithTimeout(ctx, src.timeout())
	defer cancel()
	cmd := shellCommand(runCtx, src.RestoreCommand)
	cmd.Env = append(os.Environ(),
		"BRR_JOB_ID="+jobID,
		"BRR_SOURCE_NAME="+src.Name,
		"BRR_SOURCE="+sn.Source,
		"BRR_SNAPSHOT="+sn.ID.String(),
	)
	stderr := &tailBuffer{max: maxCommandStderr}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("restore_command of source %s: %w", src.Name, err)
	}
	cmdStart := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start restore_command of source %s: %w", src.Name, err)
	}
	feedErr := feed(runCtx, r, node.Content, stdin, written)
	if feedErr != nil && !errors.Is(feedErr, syscall.EPIPE) {
		// Killed before its input ends, so that it cannot take a truncated file for a
		// whole one.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	_ = stdin.Close()
	waitErr := cmd.Wait()
	run := &brr.CommandRun{ExitCode: -1, Stderr: stderr.String(), Bytes: written.Load(), DurationMS: time.Since(cmdStart).Milliseconds()}
	if cmd.ProcessState != nil {
		run.ExitCode = cmd.ProcessState.ExitCode()
	}

	what := "restore_command of source " + src.Name
	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("%s stopped: %w", what, context.Cause(ctx))
	case (waitErr != nil || feedErr != nil) && errors.Is(runCtx.Err(), context.DeadlineExceeded):
		err = brr.Permanent(fmt.Errorf("%s did not finish within %s and was killed (set timeout: on the source for more)%s", what, src.timeout(), stderrNote(run.Stderr)))
	case feedErr != nil && !errors.Is(feedErr, syscall.EPIPE):
		err = fmt.Errorf("read snapshot %s for the %s: %w; the command was killed before the end of its input", sn.ID.Short(), what, feedErr)
		if errors.Is(feedErr, repo.ErrDamaged) || errors.Is(feedErr, repo.ErrNotInIndex) {
			err = brr.Permanent(fmt.Errorf("%w (brr verify --read-data lists what is damaged)", err))
		}
	case waitErr != nil:
		err = brr.Permanent(commandFailed(what, "", waitErr, run))
	}
	// The run, for the worker's log; the job's error is logged where the job ends.
	ev := e.Log.Info()
	if run.ExitCode != 0 {
		ev = e.Log.Warn()
	}
	ev.Str("job_id", jobID).Str("source_name", src.Name).Str("snapshot", sn.ID.String()).Int("exit_code", run.ExitCode).
		Int64("bytes", run.Bytes).Int64("duration_ms", run.DurationMS).Str("stderr", run.Stderr).Msg("ran source restore_command")
	return run, err
}

// feedAhead is how many blobs feed reads ahead of the command.
const feedAhead = 2

// feed writes the data blobs content to w in order, reading up to feedAhead of them
// ahead of the writes; written counts the bytes written. A write error is returned as it
// is: EPIPE means the reader went away.
func feed(ctx context.Context, r *repo.Repository, content []repo.ID, w io.Writer, written *atomic.Int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type loaded struct {
		data []byte
		err  error
	}
	blobs := make(chan loaded, feedAhead)
	free := make(chan []byte, feedAhead+1)
	for range cap(free) {
		free <- nil
	}
	go func() {
		defer close(blobs)
		for _, id := range content {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return
			}
			data, err := r.LoadBlob(ctx, repo.DataBlob, id, buf)
			select {
			case blobs <- loaded{data, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	for b := range blobs {
		if b.err != nil {
			return b.err
		}
		n, err := w.Write(b.data)
		written.Add(int64(n))
		if err != nil {
			return err
		}
		free <- b.data[:0]
	}
	return ctx.Err()
}
