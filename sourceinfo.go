package brr

import "time"

// SourceKind says what a named source is (docs/sources.md).
type SourceKind string

// The kinds of named sources.
const (
	// SourcePath is a directory tree on the worker's host, with its excludes.
	SourcePath SourceKind = "path"
	// SourceCommand is a command whose standard output is stored as one file.
	SourceCommand SourceKind = "command"
	// SourceSQLite is a SQLite database file, of which a consistent copy is stored.
	SourceSQLite SourceKind = "sqlite"
)

// SourceInfo is a named source of a worker's config as the worker's heartbeats tell it,
// for `brr sources` and GET /api/v1/sources. It never holds the text of a command or of a
// hook: those may name hosts, users or files that readers of heartbeats need not know.
type SourceInfo struct {
	Name string     `json:"name"`
	Kind SourceKind `json:"kind"`
	// Path is the tree of a path source and the database file of a sqlite source; empty
	// for a command source.
	Path string `json:"path,omitempty"`
	// Repo is the repo its backups go to when a job names none; empty: the worker's
	// default repo.
	Repo string   `json:"repo,omitempty"`
	Tags []string `json:"tags,omitempty"`
	// Watch, when set, says that the source is backed up as it changes.
	Watch *SourceWatch `json:"watch,omitempty"`
	// Watching is set by the one worker that watches the source now (it holds the
	// watch's lease): what its watch knows of the source's changes. It is no part of the
	// source's definition.
	Watching *SourceWatching `json:"watching,omitempty"`
}

// SourceWatching is what the worker that watches a source says of its changes, for the
// RPO check of the health report (docs/sources.md, "Watch").
type SourceWatching struct {
	// UnprotectedSince is when the oldest change that no committed snapshot is known to
	// hold was seen; absent when every change seen is in a snapshot (an idle source).
	UnprotectedSince *time.Time `json:"unprotected_since,omitempty"`
}

// SourceWatch is how a watched source is backed up as it changes: at most every DelayMS
// while changes keep coming, at least every MaxDelayMS during a steady stream of them.
type SourceWatch struct {
	DelayMS    int64 `json:"delay_ms"`
	MaxDelayMS int64 `json:"max_delay_ms"`
}

// Key is what the source's snapshots are of (their Source): the path of a path source,
// "source:NAME" for a command or a sqlite source.
func (s SourceInfo) Key() string {
	if s.Kind == SourcePath {
		return s.Path
	}
	return "source:" + s.Name
}
