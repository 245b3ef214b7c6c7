package brr

import (
	"fmt"
	"path"
	"strings"
	"time"
)

// RestoreJob restores a snapshot, or part of it, into a target directory.
type RestoreJob struct {
	// Snapshot is a snapshot id, a unique prefix of one, or "latest": the newest snapshot
	// in the repo, or of Source when it is set.
	Snapshot string `json:"snapshot"`
	// Source narrows "latest" and AsOf to the snapshots of one source path.
	Source string `json:"source,omitempty"`
	// AsOf, with Snapshot "latest", picks the newest snapshot at or before this time.
	AsOf *time.Time `json:"as_of,omitempty"`
	// Target is the absolute path of the directory to restore into.
	Target string `json:"target"`
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

// Validate checks the snapshot reference, the target and the paths.
func (a RestoreJob) Validate() error {
	if !snapshotRefPattern.MatchString(a.Snapshot) {
		return fmt.Errorf("%w: snapshot %q: want \"latest\" or 4-64 hex digits of a snapshot id", ErrInvalid, a.Snapshot)
	}
	if a.AsOf != nil && a.Snapshot != "latest" {
		return fmt.Errorf("%w: as_of goes with snapshot \"latest\", not %q", ErrInvalid, a.Snapshot)
	}
	if a.Source != "" {
		if err := validateAbs("source", a.Source); err != nil {
			return err
		}
	}
	if err := validateAbs("restore target", a.Target); err != nil {
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
	Snapshot string   `json:"snapshot"`
	Repo     string   `json:"repo"`
	Target   string   `json:"target"`
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
