package brr

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// RestoreJob restores a snapshot, or part of it, into a target directory, or pipes the
// file of a command source's snapshot into the source's restore_command.
type RestoreJob struct {
	// Snapshot is a snapshot id, a unique prefix of one, or "latest": the newest snapshot
	// in the repo, or of Source (or of SourceName) when it is set.
	Snapshot string `json:"snapshot"`
	// Source narrows "latest" and AsOf to the snapshots of one source: a path, or
	// "source:NAME" for a named source with no path (a command).
	Source string `json:"source,omitempty"`
	// SourceName names a source of the worker's config (docs/sources.md): "latest" and
	// AsOf look among its snapshots, and without a Target the file of the snapshot of a
	// command source is piped into the source's restore_command. Only a worker with the
	// source in its config runs the job (another snoozes it); a message can name a
	// source, never say what it runs.
	SourceName string `json:"source_name,omitempty"`
	// AsOf, with Snapshot "latest", picks the newest snapshot at or before this time.
	AsOf *time.Time `json:"as_of,omitempty"`
	// Target is the absolute path of the directory to restore into; it may be empty
	// only with SourceName, for a restore through the source's restore_command.
	Target string `json:"target,omitempty"`
	Repo   string `json:"repo,omitempty"`
	// Paths, when set, restores only these paths (relative to the snapshot's root) and
	// what is below them.
	Paths []string `json:"paths,omitempty"`
	// Overwrite allows replacing files that exist in the target.
	Overwrite bool `json:"overwrite,omitempty"`
}

// Kind returns KindRestore.
func (RestoreJob) Kind() Kind { return KindRestore }

// Scope returns the repo and the source that narrows the snapshot, if any.
func (a RestoreJob) Scope() Scope { return Scope{Repo: a.Repo, Source: a.Source} }

// Validate checks the snapshot reference, the source, the target and the paths.
func (a RestoreJob) Validate() error {
	if !snapshotRefPattern.MatchString(a.Snapshot) {
		return fmt.Errorf("%w: snapshot %q: want \"latest\" or 4-64 hex digits of a snapshot id", ErrInvalid, a.Snapshot)
	}
	if a.AsOf != nil && a.Snapshot != "latest" {
		return fmt.Errorf("%w: as_of goes with snapshot \"latest\", not %q", ErrInvalid, a.Snapshot)
	}
	if a.Source != "" {
		if err := validateSourceRef(a.Source); err != nil {
			return err
		}
	}
	if a.SourceName != "" {
		if err := ValidateSourceName(a.SourceName); err != nil {
			return err
		}
		if a.Source != "" {
			return fmt.Errorf("%w: the restore names both a source (%q) and a source name (%q); give one", ErrInvalid, a.Source, a.SourceName)
		}
	}
	if a.Target == "" && a.SourceName != "" {
		// Through the source's restore_command: nothing is written by name.
		if len(a.Paths) > 0 || a.Overwrite {
			return fmt.Errorf("%w: paths and overwrite go with a target directory; a restore without one pipes the snapshot's file into the restore_command of source %q", ErrInvalid, a.SourceName)
		}
		return ValidateRepoName(a.Repo)
	}
	if err := validateAbs("restore target", a.Target); err != nil {
		if a.Target == "" {
			return fmt.Errorf("%w (give a target directory, or a source_name to pipe a command source's snapshot into its restore_command)", err)
		}
		return err
	}
	if a.Target == "/" {
		return fmt.Errorf("%w: restore target is \"/\"; restore into a directory", ErrInvalid)
	}
	if err := ValidateRepoName(a.Repo); err != nil {
		return err
	}
	if len(a.Paths) > 1024 {
		return fmt.Errorf("%w: %d paths, the limit is 1024", ErrInvalid, len(a.Paths))
	}
	for _, p := range a.Paths {
		clean := path.Clean("/" + p)
		if p == "" || strings.ContainsRune(p, 0) || clean == "/" && p != "/" || hasDotDot(p) {
			return fmt.Errorf("%w: restore path %q: want a path inside the snapshot, without \"..\"", ErrInvalid, p)
		}
	}
	return nil
}

// validateSourceRef checks what a job says its snapshots are of: an absolute, clean
// path, or "source:NAME", what the snapshots of a named source with no path are of.
func validateSourceRef(s string) error {
	if name, ok := strings.CutPrefix(s, "source:"); ok {
		if err := ValidateSourceName(name); err != nil {
			return fmt.Errorf("%w: source %q: after \"source:\" give a source name: 1-64 letters, digits, '-' or '_'", ErrInvalid, s)
		}
		return nil
	}
	return validateAbs("source", s)
}

// hasDotDot reports whether the slash-separated path p has a ".." element.
func hasDotDot(p string) bool {
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return true
		}
	}
	return false
}

// RestoreResult describes what a restore wrote.
type RestoreResult struct {
	Snapshot string `json:"snapshot"`
	Repo     string `json:"repo"`
	// Target is the directory written; empty when the file of the snapshot was piped
	// into the restore_command of the source SourceName, whose run Command is.
	Target string `json:"target"`
	// SourceName is the configured source the job named, if any.
	SourceName string      `json:"source_name,omitempty"`
	Command    *CommandRun `json:"command,omitempty"`

	Files    int64    `json:"files"`
	Dirs     int64    `json:"dirs"`
	Symlinks int64    `json:"symlinks"`
	Bytes    int64    `json:"bytes"`
	Warnings []string `json:"warnings,omitempty"`
	// FellBackFrom names the repo the restore was asked to use when it read from a
	// replica (Repo) instead, and FallbackReason says why: the primary could not be read
	// or its copy of the snapshot is damaged.
	FellBackFrom   string `json:"fell_back_from,omitempty"`
	FallbackReason string `json:"fallback_reason,omitempty"`
	DurationMS     int64  `json:"duration_ms"`
}
