package brr

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
)

// BackupJob backs up the directory tree at Path, or the source named SourceName, into a
// repository.
type BackupJob struct {
	// Path is the absolute, clean path of the source on the worker's host; empty when the
	// job names a source.
	Path string `json:"path,omitempty"`
	// SourceName names a source of the worker's config (docs/sources.md) instead of a
	// path: a tree with its excludes and hooks, a command whose output is stored, or a
	// database. A message can only pick a configured source, never say what it runs.
	// The job's excludes, tags and repo add to the source's.
	SourceName string `json:"source_name,omitempty"`
	// Repo names a repository of the worker's config; empty means its default repo.
	Repo string   `json:"repo,omitempty"`
	Tags []string `json:"tags,omitempty"`
	// Excludes are patterns of what to leave out, in gitignore syntax, relative to Path:
	// "node_modules/" anywhere, "/build" only at the top, "!keep.tmp" to take back a
	// path an earlier pattern left out. They take precedence over the .brrignore files
	// in the tree (see docs/sources.md); ValidateExclude says which are refused.
	Excludes []string `json:"excludes,omitempty"`
	// ExcludeCaches leaves out the contents of every directory that holds a valid
	// CACHEDIR.TAG file; the directory and the tag file are kept.
	ExcludeCaches bool `json:"exclude_caches,omitempty"`
	// OneFileSystem keeps the backup on the file system of Path: a directory on another
	// one (a mount point) is kept, empty.
	OneFileSystem bool `json:"one_file_system,omitempty"`
	// ExcludeLargerThan leaves out regular files larger than this many bytes; 0 means no
	// limit.
	ExcludeLargerThan int64 `json:"exclude_larger_than,omitempty"`
	// DryRun walks the tree as the backup would, excludes applied, and reports what it
	// would store, without reading a file or writing to the repository.
	DryRun bool `json:"dry_run,omitempty"`
}

// Kind returns KindBackup.
func (BackupJob) Kind() Kind { return KindBackup }

// Scope returns the repo and the path backed up (empty for a named source, whose path
// only the worker knows).
func (a BackupJob) Scope() Scope { return Scope{Repo: a.Repo, Source: a.Path} }

// ValidateSourceName checks the name of a configured source: 1-64 letters, digits, '-'
// or '_'.
func ValidateSourceName(name string) error {
	if !sourceNamePattern.MatchString(name) {
		return fmt.Errorf("%w: source name %q: use 1-64 letters, digits, '-' or '_'", ErrInvalid, name)
	}
	return nil
}

var sourceNamePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// MaxExcludes bounds the exclude patterns of one job; more belong in a .brrignore file in
// the tree.
const MaxExcludes = 1000

// Validate checks the path or source name, the repo name, the tags and the excludes.
func (a BackupJob) Validate() error {
	switch {
	case a.SourceName != "" && a.Path != "":
		return fmt.Errorf("%w: the backup names both a path (%q) and a source (%q); give one", ErrInvalid, a.Path, a.SourceName)
	case a.SourceName != "":
		if err := ValidateSourceName(a.SourceName); err != nil {
			return err
		}
	default:
		if err := validateAbs("backup path", a.Path); err != nil {
			return err
		}
	}
	if err := ValidateRepoName(a.Repo); err != nil {
		return err
	}
	if len(a.Tags) > 32 {
		return fmt.Errorf("%w: %d tags, the limit is 32", ErrInvalid, len(a.Tags))
	}
	for _, t := range a.Tags {
		if !tagPattern.MatchString(t) {
			return fmt.Errorf("%w: tag %q: use 1-128 letters, digits or _.:=-", ErrInvalid, t)
		}
	}
	if len(a.Excludes) > MaxExcludes {
		return fmt.Errorf("%w: %d exclude patterns, the limit is %d; put the others in a .brrignore file in the tree", ErrInvalid, len(a.Excludes), MaxExcludes)
	}
	for _, p := range a.Excludes {
		if err := ValidateExclude(p); err != nil {
			return err
		}
		if a.Path != "" && a.Path != "/" && strings.HasPrefix(strings.TrimPrefix(p, "!"), a.Path+"/") {
			return fmt.Errorf("%w: exclude pattern %q names the absolute path; patterns are relative to the backup path, write %q", ErrInvalid, p, strings.Replace(p, a.Path, "", 1))
		}
	}
	if a.ExcludeLargerThan < 0 {
		return fmt.Errorf("%w: exclude_larger_than is %d; give a size in bytes, or 0 for no limit", ErrInvalid, a.ExcludeLargerThan)
	}
	return nil
}

// ValidateExclude checks one exclude pattern of a job. The syntax is gitignore's (see
// docs/sources.md), one pattern per string. A pattern that gitignore would accept but
// that can never match is refused, so that a typo does not quietly leave nothing out: a
// blank pattern, a comment, a lone "!" or "/", an empty, "." or ".." path component, a
// "[" that is not closed, an unknown [:class:], a "\" at the end.
func ValidateExclude(p string) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: exclude pattern %q: %s", ErrInvalid, p, fmt.Sprintf(format, args...))
	}
	switch {
	case len(p) > 4096:
		return bad("%d bytes, the limit is 4096", len(p))
	case strings.ContainsAny(p, "\x00\n\r"):
		return bad("holds a line break or a NUL byte; give one pattern per entry")
	case strings.HasPrefix(p, "#"):
		return bad(`starts with #, which makes it a comment that matches nothing; write \# to match a name that starts with #`)
	}
	g := TrimExcludeSpaces(p)
	g = strings.TrimPrefix(g, "!")
	g = strings.TrimSuffix(g, "/")
	if strings.Contains(g, "/") {
		g = strings.TrimPrefix(g, "/")
		for _, c := range strings.Split(g, "/") {
			if c == "" || c == "." || c == ".." {
				return bad("has an empty, \".\" or \"..\" path component, which no path has; patterns are relative to the backup path, like a/b or /a/b")
			}
		}
	}
	if g == "" {
		return bad("matches nothing; give a name or a glob like *.tmp")
	}
	return checkGlob(g, bad)
}

// checkGlob reports what in glob g makes it match nothing, as git's wildmatch reads it.
func checkGlob(g string, bad func(string, ...any) error) error {
	for i := 0; i < len(g); i++ {
		switch g[i] {
		case '\\':
			i++
			if i == len(g) {
				return bad(`ends with \, which escapes nothing; remove it, or write \\ to match a \`)
			}
		case '[':
			end, err := classEnd(g, i)
			if err != "" {
				return bad("%s", err)
			}
			i = end
		}
	}
	return nil
}

// classEnd returns the index of the "]" that closes the character class opened at
// g[open], or what is wrong with the class. It reads the class as git's wildmatch does:
// a leading "!" or "^" negates, the first member may be "]", "\" escapes, "a-z" is a
// range and "[:name:]" a POSIX class.
func classEnd(g string, open int) (int, string) {
	const notClosed = `the [ is not closed by a ]; write \[ to match a [`
	i := open + 1
	if i < len(g) && (g[i] == '!' || g[i] == '^') {
		i++
	}
	prev := false // a member before this one, which a "-" would make a range from
	for {
		if i >= len(g) {
			return 0, notClosed
		}
		switch c := g[i]; {
		case c == '\\':
			if i++; i == len(g) {
				return 0, notClosed
			}
			prev = true
		case c == '-' && prev && i+1 < len(g) && g[i+1] != ']':
			i++
			if g[i] == '\\' {
				if i++; i == len(g) {
					return 0, notClosed
				}
			}
			prev = false
		case c == '[' && i+1 < len(g) && g[i+1] == ':':
			end := strings.IndexByte(g[i+2:], ']')
			if end < 0 {
				return 0, notClosed
			}
			end += i + 2
			if end == i+2 || g[end-1] != ':' {
				// Not "[:name:]": the [ is a member, and the class goes on after it.
				prev = true
				break
			}
			if name := g[i+2 : end-1]; !posixClasses[name] {
				return 0, fmt.Sprintf("[:%s:] is not a character class (use alnum, alpha, blank, cntrl, digit, graph, lower, print, punct, space, upper or xdigit)", name)
			}
			i, prev = end, false
		default:
			prev = true
		}
		if i++; i < len(g) && g[i] == ']' {
			return i, ""
		}
	}
}

var posixClasses = map[string]bool{
	"alnum": true, "alpha": true, "blank": true, "cntrl": true, "digit": true, "graph": true,
	"lower": true, "print": true, "punct": true, "space": true, "upper": true, "xdigit": true,
}

// TrimExcludeSpaces removes the trailing spaces of a pattern, as gitignore does: all but
// one escaped with a backslash ("a\ " keeps its space).
func TrimExcludeSpaces(p string) string {
	last := -1
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case ' ':
			if last < 0 {
				last = i
			}
		case '\\':
			i++
			if i == len(p) {
				return p
			}
			last = -1
		default:
			last = -1
		}
	}
	if last >= 0 {
		return p[:last]
	}
	return p
}

// ExcludeLines returns the patterns of an exclude file in gitignore syntax (a .brrignore
// file, or the file of `brr backup --exclude-file`): one per line, a UTF-8 byte order
// mark and carriage returns before line feeds dropped, without blank lines and "#"
// comments. Trailing spaces are left for the matcher to trim, as it trims those of a
// job's patterns.
func ExcludeLines(data []byte) []string {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var out []string
	for len(data) > 0 {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 || line[0] == '#' || TrimExcludeSpaces(string(line)) == "" {
			continue
		}
		out = append(out, string(line))
	}
	return out
}

// BackupResult describes the snapshot a backup committed, or, for a dry run, what it
// would store.
type BackupResult struct {
	Snapshot string `json:"snapshot"`
	Parent   string `json:"parent,omitempty"`
	Repo     string `json:"repo"`
	Source   string `json:"source"`
	// SourceName is the configured source the job named, if any; Hooks are the runs of
	// its before and after hooks.
	SourceName string    `json:"source_name,omitempty"`
	Hooks      []HookRun `json:"hooks,omitempty"`
	// Command is the run of the command of a command source, whose standard output is
	// the snapshot's one file. A job delivered again after its snapshot committed does
	// not run the command again, and its result has no Command.
	Command *CommandRun `json:"command,omitempty"`
	// Files and Dirs count the entries in the snapshot; Bytes is the size of its files.
	Files int64 `json:"files"`
	Dirs  int64 `json:"dirs"`
	Bytes int64 `json:"bytes"`
	// FilesNew, FilesChanged and FilesUnchanged compare with the parent snapshot;
	// unchanged files were not read again.
	FilesNew       int64 `json:"files_new"`
	FilesChanged   int64 `json:"files_changed"`
	FilesUnchanged int64 `json:"files_unchanged"`
	// BytesRead is what was read from the source; BlobsAdded and BytesAdded (stored, after
	// compression and encryption) are what the repository did not have yet.
	BytesRead  int64 `json:"bytes_read"`
	BlobsAdded int64 `json:"blobs_added"`
	BytesAdded int64 `json:"bytes_added"`
	// FilesExcluded counts the entries other than directories that the excludes left
	// out (by pattern, cache tag or size), and BytesExcluded the size of those that are
	// regular files. DirsExcluded counts the directories whose contents were left out
	// unlisted: those excluded, and the mount points that one_file_system keeps empty.
	// What is below a directory left out is not listed, so not counted. A job delivered
	// again after its snapshot committed reports 0: the snapshot does not keep them.
	FilesExcluded int64 `json:"files_excluded"`
	DirsExcluded  int64 `json:"dirs_excluded"`
	BytesExcluded int64 `json:"bytes_excluded"`
	// DryRun is set when nothing was stored: Snapshot is empty, Files, Dirs and Bytes
	// are what the backup would store, and WouldRead lists the first MaxWouldRead of its
	// files in path order (relative to Source), WouldReadMore how many others there are.
	DryRun        bool     `json:"dry_run,omitempty"`
	WouldRead     []string `json:"would_read,omitempty"`
	WouldReadMore int64    `json:"would_read_more,omitempty"`
	// Warnings lists what was skipped or changed while read; the snapshot still committed.
	Warnings   []string `json:"warnings,omitempty"`
	DurationMS int64    `json:"duration_ms"`
}

// MaxWouldRead bounds the paths a dry run lists in its result.
const MaxWouldRead = 1000

// HookRun is one run of a source's before or after hook (docs/sources.md).
type HookRun struct {
	// Hook is "before" or "after".
	Hook     string `json:"hook"`
	ExitCode int    `json:"exit_code"`
	// Output is the end of what it wrote to stdout and stderr, at most 4 KiB ("…" first
	// when the start was dropped).
	Output     string `json:"output,omitempty"`
	DurationMS int64  `json:"duration_ms"`
}

// CommandRun is one run of a command of a source (docs/sources.md): the command of a
// backup, whose standard output was stored, or the restore_command of a restore, which
// the stored file was piped into.
type CommandRun struct {
	ExitCode int `json:"exit_code"`
	// Stderr is the end of what the command wrote to its standard error, at most 4 KiB
	// ("…" first when the start was dropped).
	Stderr string `json:"stderr,omitempty"`
	// Bytes is what the command wrote to its standard output (a backup), or what was
	// written to its standard input (a restore).
	Bytes      int64 `json:"bytes"`
	DurationMS int64 `json:"duration_ms"`
}
