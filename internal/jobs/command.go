package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
)

// maxCommandStderr bounds what a source command's standard error adds to the job's
// result and log: its last 4 KiB.
const maxCommandStderr = 4 << 10

// maxErrorStderr bounds the end of standard error that the error of a failed command
// quotes; the result's CommandRun keeps more.
const maxErrorStderr = 1 << 10

// A command's output is chunked by one goroutine and its new chunks compressed,
// encrypted and stored by streamSavers others, in streamSavers+1 buffers of
// repo.MaxChunkSize. With the chunker's window (2×MaxChunkSize) and what each SaveBlob
// holds (two buffers of up to MaxChunkSize), a command backup holds at most about 36 MiB,
// however long its output.
const streamSavers = 2

// filename is the name the output of the source's command is stored as.
func (s Source) filename() string {
	if s.Filename != "" {
		return s.Filename
	}
	return s.Name + ".out"
}

// backupCommand backs up the standard output of src.Command as one file, src.Filename,
// the only entry of the snapshot's tree, and commits the snapshot only when the command
// exited 0 within the source's timeout. A command that fails, times out or is killed
// commits nothing: the chunks it stored are referenced by no snapshot, and the next
// prune deletes them. The snapshot is of SourceKey(src.Name). A job delivered again
// after its snapshot committed returns it without running the command again.
//
// A dry run does not run the command (it could not tell what it would store without
// running it, and a dump is no dry thing): it checks that this worker has the source and
// the repo, and says what a backup would do.
func (e *Engine) backupCommand(ctx context.Context, jobID string, a brr.BackupJob, src *Source, r *repo.Repository, repoName string, pr *reporter, start time.Time) (_ *brr.BackupResult, _ *repo.Snapshot, err error) {
	source := SourceKey(src.Name)
	name := src.filename()
	if a.DryRun {
		return &brr.BackupResult{
			Repo:      repoName,
			Source:    source,
			Files:     1,
			DryRun:    true,
			WouldRead: []string{name},
			Warnings: []string{fmt.Sprintf("source %s is a command: a dry run does not run it; a backup would run it and store its standard output as %s (the size is known only then)",
				src.Name, name)},
			DurationMS: time.Since(start).Milliseconds(),
		}, nil, nil
	}

	ctx, st, err := e.startBackup(ctx, jobID, r, repoName, source, src.Name)
	if err != nil {
		return nil, nil, err
	}
	defer st.release()
	if st.committed != nil {
		return committedResult(repoName, st.committed, time.Since(start)), st.committed, nil
	}
	w := st.w

	out, run, err := e.runCommand(ctx, jobID, src, w, pr, start)
	if err != nil {
		if run == nil {
			return nil, nil, err
		}
		// Nothing committed; the result says how the command ended (its exit code, the
		// end of its stderr), which the failed job's record and event carry.
		return &brr.BackupResult{Repo: repoName, Source: source, BytesRead: run.Bytes, Command: run,
			DurationMS: time.Since(start).Milliseconds()}, nil, err
	}
	now := e.now().UTC()
	node := &repo.Node{
		Name:    name,
		Type:    repo.NodeFile,
		Mode:    0o600,
		ModTime: now,
		UID:     uint32(os.Getuid()),
		GID:     uint32(os.Getgid()),
		Size:    out.size,
		Links:   1,
		Content: out.content,
	}
	tree, err := r.SaveTree(ctx, &repo.Tree{Nodes: []*repo.Node{node}})
	if err != nil {
		return nil, nil, fmt.Errorf("save tree of source %s: %w", src.Name, err)
	}
	sn := &repo.Snapshot{
		Time:       now,
		Source:     source,
		Tags:       a.Tags,
		Tree:       tree,
		Files:      1,
		Bytes:      out.size,
		BlobsAdded: out.blobsAdded,
		BytesAdded: out.bytesAdded,
	}
	if err := st.commit(ctx, sn); err != nil {
		return nil, nil, err
	}
	res := committedResult(repoName, sn, time.Since(start))
	res.BytesRead = out.size
	res.Command = run
	return res, sn, nil
}

// streamed is what saveStream made of a stream: the data blobs of its one file.
type streamed struct {
	content                []repo.ID
	size                   int64
	blobsAdded, bytesAdded int64
}

// runCommand runs the command of src and saves its standard output through w, with the
// job's facts in its environment. Its error says why nothing may be committed: the
// command exited non-zero, was killed, or outlived the source's timeout (each marked
// Permanent: running a failed dump again at once rarely helps, and the schedule's next
// run, or `brr dlq retry`, runs it again), the output could not be stored (retried), or
// the job was cancelled. The run (exit code, end of stderr) comes with the error too,
// once the command was started.
func (e *Engine) runCommand(ctx context.Context, jobID string, src *Source, w *repo.Writer, pr *reporter, start time.Time) (*streamed, *brr.CommandRun, error) {
	runCtx, cancel := context.WithTimeout(ctx, src.timeout())
	defer cancel()
	cmd := shellCommand(runCtx, src.Command)
	cmd.Env = append(os.Environ(),
		"BRR_JOB_ID="+jobID,
		"BRR_SOURCE_NAME="+src.Name,
		"BRR_SOURCE="+SourceKey(src.Name),
	)
	stderr := &tailBuffer{max: maxCommandStderr}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, nil, fmt.Errorf("command of source %s: %w", src.Name, err)
	}
	cmdStart := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start command of source %s: %w", src.Name, err)
	}
	var read atomic.Int64
	stopProgress := pr.tick(ctx, func() brr.Progress {
		p := brr.Progress{Phase: "backup", Bytes: read.Load()}
		fillRate(&p, start, false)
		return p
	})
	out, saveErr := saveStream(runCtx, w, stdout, &read)
	if saveErr != nil {
		cancel() // the output is not wanted any more: kill the command rather than wait for it
	}
	waitErr := cmd.Wait()
	stopProgress()
	run := &brr.CommandRun{ExitCode: -1, Stderr: stderr.String(), Bytes: read.Load(), DurationMS: time.Since(cmdStart).Milliseconds()}
	if cmd.ProcessState != nil {
		run.ExitCode = cmd.ProcessState.ExitCode()
	}

	switch {
	case ctx.Err() != nil:
		err = fmt.Errorf("command of source %s stopped: %w", src.Name, context.Cause(ctx))
	case (waitErr != nil || saveErr != nil) && errors.Is(runCtx.Err(), context.DeadlineExceeded):
		err = brr.Permanent(fmt.Errorf("command of source %s did not finish within %s and was killed; nothing was committed (set timeout: on the source for more)%s",
			src.Name, src.timeout(), stderrNote(run.Stderr)))
	case saveErr != nil:
		err = fmt.Errorf("store the output of the command of source %s: %w", src.Name, saveErr)
	case waitErr != nil:
		err = brr.Permanent(commandFailed("command of source "+src.Name, "; nothing was committed", waitErr, run))
	}
	// The run, for the worker's log; the job's error is logged where the job ends.
	ev := e.Log.Info()
	if run.ExitCode != 0 {
		ev = e.Log.Warn()
	}
	ev.Str("job_id", jobID).Str("source_name", src.Name).Int("exit_code", run.ExitCode).Int64("bytes", run.Bytes).
		Int64("duration_ms", run.DurationMS).Str("stderr", run.Stderr).Msg("ran source command")
	if err != nil {
		return nil, run, err
	}
	return out, run, nil
}

// commandFailed says how the command what ended, when Wait gave err: its exit code or
// the signal that killed it, then so (what that means for the job), then the end of its
// standard error.
func commandFailed(what, so string, err error, run *brr.CommandRun) error {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return fmt.Errorf("%s: %w%s%s", what, err, so, stderrNote(run.Stderr))
	}
	if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return fmt.Errorf("%s was killed by signal %s%s%s", what, ws.Signal(), so, stderrNote(run.Stderr))
	}
	return fmt.Errorf("%s exited %d%s%s", what, run.ExitCode, so, stderrNote(run.Stderr))
}

// stderrNote is the end of a command's standard error, for an error message: its last
// lines, at most maxErrorStderr bytes, or a note that it wrote nothing.
func stderrNote(stderr string) string {
	s := strings.TrimSpace(strings.TrimPrefix(stderr, "…"))
	if s == "" {
		return " (it wrote nothing to stderr)"
	}
	if len(s) > maxErrorStderr {
		s = s[len(s)-maxErrorStderr:]
		if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
			s = s[i+1:]
		}
		s = "…" + s
	}
	return ": " + s
}

// saveStream cuts rd into content-defined chunks, as a file of a tree is cut, and saves
// the new ones through w; read counts the bytes read so far. It holds a bounded number of
// chunks whatever the length of the stream (see streamSavers). When it fails it closes
// rd, so that a writer on the other end (a command) gets EPIPE instead of blocking.
func saveStream(ctx context.Context, w *repo.Writer, rd io.ReadCloser, read *atomic.Int64) (*streamed, error) {
	r := w.Repository()
	g, gctx := errgroup.WithContext(ctx)
	// A read blocked on a stream nobody waits for any more returns when rd is closed.
	// This also runs when Wait returns without error, after the stream ended: closing
	// it again then does no harm.
	stop := context.AfterFunc(gctx, func() { _ = rd.Close() })
	defer stop()

	type chunk struct {
		id   repo.ID
		data []byte
		buf  *[]byte
	}
	bufs := make(chan *[]byte, streamSavers+1)
	for range cap(bufs) {
		b := make([]byte, repo.MaxChunkSize)
		bufs <- &b
	}
	work := make(chan chunk)
	var blobsAdded, bytesAdded atomic.Int64
	for range streamSavers {
		g.Go(func() error {
			for c := range work {
				added, stored, err := w.SaveBlob(gctx, repo.DataBlob, c.id, c.data)
				bufs <- c.buf
				if err != nil {
					return err
				}
				if added {
					blobsAdded.Add(1)
					bytesAdded.Add(int64(stored))
				}
			}
			return nil
		})
	}
	out := &streamed{content: []repo.ID{}}
	g.Go(func() error {
		defer close(work)
		ch := r.NewChunker(rd)
		for {
			var bp *[]byte
			select {
			case bp = <-bufs:
			case <-gctx.Done():
				return gctx.Err()
			}
			data, err := ch.Next((*bp)[:0])
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil {
				if gctx.Err() != nil {
					return gctx.Err() // the read failed because rd was closed
				}
				return fmt.Errorf("read: %w", err)
			}
			id := r.BlobID(data)
			out.content = append(out.content, id)
			out.size += int64(len(data))
			read.Add(int64(len(data)))
			if r.HasBlob(repo.DataBlob, id) {
				bufs <- bp
				continue
			}
			select {
			case work <- chunk{id: id, data: data, buf: bp}:
			case <-gctx.Done():
				return gctx.Err()
			}
		}
	})
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out.blobsAdded, out.bytesAdded = blobsAdded.Load(), bytesAdded.Load()
	return out, nil
}
