package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/brr-dev/brr"
)

// Source is a named source of the worker's config (docs/sources.md): what a backup job
// may name instead of a path. It is one of a directory tree (Path), a command whose
// standard output is stored as one file (Command), or a SQLite database (SQLite). What it
// runs comes only from the worker's config, never from a message.
type Source struct {
	Name string
	// Path is the tree backed up, with the excludes below.
	Path              string
	Excludes          []string
	ExcludeCaches     bool
	OneFileSystem     bool
	ExcludeLargerThan int64
	// Command is run with /bin/sh -c; its standard output is stored as the file
	// Filename of the snapshot. RestoreCommand, when set, is what a restore of the
	// source pipes that file into.
	Command        string
	RestoreCommand string
	Filename       string
	// SQLite is the path of a SQLite database file, of which a consistent copy is
	// stored.
	SQLite string
	// Before runs before anything is read; After runs after the backup, whatever its
	// outcome. Both with /bin/sh -c.
	Before, After string
	// Timeout bounds the command and each hook; 0 is DefaultSourceTimeout.
	Timeout time.Duration
	// Repo is the repo its backups go to when a job names none; Tags are added to every
	// snapshot of it.
	Repo string
	Tags []string
	// Watch, when set, has the worker that holds the source's watch lease back it up
	// when it changes (cmd/worker).
	Watch *Watch
}

// Watch is how a watched source is backed up as it changes: at most every Delay while
// changes keep coming, and at least every MaxDelay during a steady stream of them.
type Watch struct {
	Delay, MaxDelay time.Duration
}

// DefaultSourceTimeout bounds a source's command and hooks when its config sets none.
const DefaultSourceTimeout = time.Hour

// timeout is how long the source's command and each of its hooks may run.
func (s Source) timeout() time.Duration {
	if s.Timeout > 0 {
		return s.Timeout
	}
	return DefaultSourceTimeout
}

// SourceKey is what a named source is called where a path would be: in the snapshots of
// a command or SQLite source, in events and in health checks: "source:NAME".
func SourceKey(name string) string { return "source:" + name }

// resolveSource turns a job that names a source into the job the source says, and
// returns the source. A job that names none is returned as it is, with a nil source. A
// source this worker's config lacks is refused (snoozed for a worker that has it, see
// Handle).
func (e *Engine) resolveSource(a brr.BackupJob) (brr.BackupJob, *Source, error) {
	if a.SourceName == "" {
		return a, nil, nil
	}
	src, ok := e.Sources[a.SourceName]
	if !ok {
		names := slices.Sorted(func(yield func(string) bool) {
			for n := range e.Sources {
				if !yield(n) {
					return
				}
			}
		})
		configured := strings.Join(names, ", ")
		if configured == "" {
			configured = "none"
		}
		return a, nil, &refusedError{what: "source " + a.SourceName, why: fmt.Sprintf(
			"source %q is not in this worker's config (its sources: %s); route the job to the pool of the workers that have it with --pool, or add it to sources: in this worker's config",
			a.SourceName, configured)}
	}
	src.Name = a.SourceName
	out := a
	out.Path = src.Path
	out.Excludes = append(slices.Clone(src.Excludes), a.Excludes...)
	out.ExcludeCaches = a.ExcludeCaches || src.ExcludeCaches
	out.OneFileSystem = a.OneFileSystem || src.OneFileSystem
	if out.ExcludeLargerThan == 0 {
		out.ExcludeLargerThan = src.ExcludeLargerThan
	}
	if out.Repo == "" {
		out.Repo = src.Repo
	}
	for _, t := range src.Tags {
		if !slices.Contains(out.Tags, t) {
			out.Tags = append(out.Tags, t)
		}
	}
	return out, &src, nil
}

// maxHookOutput bounds what a hook's output adds to the job's result and log.
const maxHookOutput = 4 << 10

// hookEnv is what a hook's environment says of the job, besides the worker's own.
type hookEnv struct {
	jobID, source, status, snapshot, errMsg string
}

// runHook runs the source's hook (which is "before" or "after") with the job's facts in
// its environment, and returns its outcome: the exit code and the end of its output,
// bounded. An error means it did not succeed.
func (e *Engine) runHook(ctx context.Context, src *Source, which, command string, env hookEnv) (brr.HookRun, error) {
	run := brr.HookRun{Hook: which}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, src.timeout())
	defer cancel()
	cmd := shellCommand(ctx, command)
	cmd.Env = append(os.Environ(),
		"BRR_JOB_ID="+env.jobID,
		"BRR_SOURCE_NAME="+src.Name,
		"BRR_SOURCE="+env.source,
		"BRR_HOOK="+which,
		"BRR_STATUS="+env.status,
		"BRR_SNAPSHOT="+env.snapshot,
		"BRR_ERROR="+env.errMsg,
	)
	var out tailBuffer
	out.max = maxHookOutput
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	run.DurationMS = time.Since(start).Milliseconds()
	run.Output = out.String()
	run.ExitCode = cmd.ProcessState.ExitCode()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		err = fmt.Errorf("%s hook of source %s did not finish within %s (set timeout: on the source for more)", which, src.Name, src.timeout())
	case err != nil:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%s hook of source %s exited %d: %s", which, src.Name, run.ExitCode, lastLine(run.Output))
		} else {
			err = fmt.Errorf("%s hook of source %s: %w", which, src.Name, err)
		}
	}
	ev := e.Log.Info()
	if err != nil {
		ev = e.Log.Warn().Err(err)
	}
	ev.Str("job_id", env.jobID).Str("source_name", src.Name).Str("hook", which).Int("exit_code", run.ExitCode).
		Int64("duration_ms", run.DurationMS).Str("output", run.Output).Msg("ran hook")
	return run, err
}

// shellCommand returns a command that runs command with /bin/sh -c, as hooks and the
// commands of sources run. It and whatever it starts are one process group, killed
// together when ctx is done (at the timeout, or when the job is cancelled), so that a
// child of the shell cannot hold its output open; Wait gives up on the output 5 s after
// that.
func shellCommand(ctx context.Context, command string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// lastLine is the last non-empty line of s, for an error message.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if l := strings.TrimSpace(lines[len(lines)-1]); l != "" {
		return l
	}
	return "(no output)"
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	buf     bytes.Buffer
	max     int
	dropped bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	n := len(p)
	if len(p) > t.max {
		p = p[len(p)-t.max:]
		t.dropped = true
	}
	if over := t.buf.Len() + len(p) - t.max; over > 0 {
		rest := slices.Clone(t.buf.Bytes()[over:])
		t.buf.Reset()
		t.buf.Write(rest)
		t.dropped = true
	}
	t.buf.Write(p)
	return n, nil
}

// String is what was kept, marked when the start was dropped.
func (t *tailBuffer) String() string {
	if t.dropped {
		return "…" + t.buf.String()
	}
	return t.buf.String()
}
