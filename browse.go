package brr

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// Browsing reads what a snapshot holds without restoring it: list a directory (List),
// find which snapshots hold a file (Find), compare two snapshots (Diff) and read one file
// or a directory as a tar stream (Dump). The worker reads the repository, so the client
// needs no key. Each query opens a stream (stream.go): the open reply says what was
// found, the rest comes in bounded chunks, one request per chunk.

// ListRequest asks, on brr.api.<pool>.ls, for the entries of one directory of a snapshot
// (or the entry at Path when it is not a directory), and with Recursive for everything
// below it.
type ListRequest struct {
	V    int    `json:"v"`
	Repo string `json:"repo,omitempty"`
	// Snapshot is "latest", an id or a prefix of at least 4 hex characters.
	Snapshot string `json:"snapshot"`
	// Path is relative to the snapshot's root; "" and "/" are the root. A ".." element
	// is refused.
	Path      string `json:"path,omitempty"`
	Recursive bool   `json:"recursive,omitempty"`
}

// FindRequest asks, on brr.api.<pool>.find, for the entries that match Pattern in the
// snapshots of a repository (only in Snapshots when set), newest snapshot first.
type FindRequest struct {
	V    int    `json:"v"`
	Repo string `json:"repo,omitempty"`
	// Pattern is a shell pattern (path.Match) matched against an entry's name, or,
	// when it holds a "/", against its whole path from the snapshot's root ("/etc/*.conf").
	Pattern   string   `json:"pattern"`
	Snapshots []string `json:"snapshots,omitempty"`
}

// DiffRequest asks, on brr.api.<pool>.diff, what changed from snapshot A to snapshot B.
type DiffRequest struct {
	V    int    `json:"v"`
	Repo string `json:"repo,omitempty"`
	A    string `json:"a"`
	B    string `json:"b"`
}

// DumpRequest asks, on brr.api.<pool>.dump, for the content of the file at Path in a
// snapshot, or for a directory as a tar stream.
type DumpRequest struct {
	V        int    `json:"v"`
	Repo     string `json:"repo,omitempty"`
	Snapshot string `json:"snapshot"`
	Path     string `json:"path"`
}

// TreeEntry is one entry of a snapshot, as `brr ls` lists it. Path is from the
// snapshot's root, with a leading "/".
type TreeEntry struct {
	Path string `json:"path"`
	Name string `json:"name"`
	// Type is "file", "dir" or "symlink".
	Type    string    `json:"type"`
	Mode    uint32    `json:"mode"` // os.FileMode bits
	Size    int64     `json:"size"`
	ModTime time.Time `json:"mtime"`
	UID     uint32    `json:"uid"`
	GID     uint32    `json:"gid"`
	Target  string    `json:"target,omitempty"` // a symlink's
}

// FindMatch is an entry that matched a find, in the snapshot that holds it.
type FindMatch struct {
	Snapshot string    `json:"snapshot"`
	Time     time.Time `json:"time"`
	Source   string    `json:"source"`
	TreeEntry
}

// The kinds of a Change.
const (
	ChangeAdded    = "added"
	ChangeRemoved  = "removed"
	ChangeModified = "modified"
	// ChangeMetadata is an entry whose content is the same but whose mode, times or
	// owner changed.
	ChangeMetadata = "metadata"
)

// Change is one entry of a diff: what it was in snapshot A (OldSize, zero when added)
// and in B (NewSize, zero when removed).
type Change struct {
	Path    string `json:"path"`
	Change  string `json:"change"`
	Type    string `json:"type"` // in B, or in A when removed
	OldSize int64  `json:"old_size"`
	NewSize int64  `json:"new_size"`
	// Fields names what changed of a modified or metadata entry: content, type, target,
	// mode, mtime, owner.
	Fields []string `json:"fields,omitempty"`
}

// ListInfo is what the open reply of a ls stream says: the snapshot and the entry at the
// path asked for.
type ListInfo struct {
	Snapshot Snapshot  `json:"snapshot"`
	Entry    TreeEntry `json:"entry"`
}

// FindInfo is what the open reply of a find stream says: the snapshots searched.
type FindInfo struct {
	Snapshots int `json:"snapshots"`
}

// DiffInfo is what the open reply of a diff stream says: the snapshots compared.
type DiffInfo struct {
	A Snapshot `json:"a"`
	B Snapshot `json:"b"`
}

// DumpInfo is what the open reply of a dump stream says. Format is "file" (the file's
// bytes, Size of them) or "tar" (a directory and what is below it; Size is 0, unknown).
type DumpInfo struct {
	Snapshot Snapshot  `json:"snapshot"`
	Entry    TreeEntry `json:"entry"`
	Format   string    `json:"format"`
	Size     int64     `json:"size"`
}

// List lists the directory at path of snapshot in repo (empty: the worker's default),
// everything below it when recursive, calling fn for each entry in name order (a
// directory's entries right after it). It returns what the stream's open reply says.
func (c *Client) List(ctx context.Context, req ListRequest, fn func(TreeEntry) error) (*ListInfo, error) {
	req.V = Version
	if err := checkInSnapshot(req.Repo, req.Snapshot, req.Path); err != nil {
		return nil, err
	}
	return browseLines[ListInfo](ctx, c, "list snapshot", "ls", req, fn)
}

// Find calls fn for each entry that matches req.Pattern, newest snapshot first.
func (c *Client) Find(ctx context.Context, req FindRequest, fn func(FindMatch) error) (*FindInfo, error) {
	req.V = Version
	if err := ValidateRepoName(req.Repo); err != nil {
		return nil, err
	}
	if err := ValidatePattern(req.Pattern); err != nil {
		return nil, err
	}
	if err := checkSnapshotRefs(req.Snapshots...); err != nil {
		return nil, err
	}
	return browseLines[FindInfo](ctx, c, "find", "find", req, fn)
}

// Diff calls fn for each entry that differs from snapshot req.A to req.B, in path order.
func (c *Client) Diff(ctx context.Context, req DiffRequest, fn func(Change) error) (*DiffInfo, error) {
	req.V = Version
	if err := ValidateRepoName(req.Repo); err != nil {
		return nil, err
	}
	if err := checkSnapshotRefs(req.A, req.B); err != nil {
		return nil, err
	}
	return browseLines[DiffInfo](ctx, c, "diff snapshots", "diff", req, fn)
}

// Dump reads the file at req.Path of a snapshot, or the directory there as a tar
// stream. open is called once the worker found it, with what it found, and returns where
// the bytes go; they come in chunks of at most StreamChunk bytes, and Dump returns an
// error unless their SHA-256 matches the one the worker sent last.
func (c *Client) Dump(ctx context.Context, req DumpRequest, open func(DumpInfo) (io.Writer, error)) (*DumpInfo, error) {
	req.V = Version
	if err := checkInSnapshot(req.Repo, req.Snapshot, req.Path); err != nil {
		return nil, err
	}
	var info DumpInfo
	s, err := c.openStream(ctx, "dump", req, &info)
	if err != nil {
		return nil, fmt.Errorf("dump %s: %w", req.Path, err)
	}
	defer s.Close()
	w, err := open(info)
	if err != nil {
		return nil, err
	}
	if _, err := io.Copy(w, s); err != nil {
		return nil, fmt.Errorf("dump %s: %w", req.Path, err)
	}
	return &info, nil
}

// browseLinesOf reads a stream of JSON lines and calls fn with each, decoded.
func browseLinesOf[T any](s io.Reader, fn func(T) error) error {
	br := bufio.NewReaderSize(s, 64<<10)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 {
			var v T
			if jerr := json.Unmarshal(line, &v); jerr != nil {
				return fmt.Errorf("%w: stream line is not valid JSON: %v", ErrInvalid, jerr)
			}
			if ferr := fn(v); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// browseLines opens query with req and decodes the stream's lines into fn. It returns
// what the open reply says once the worker opened the stream, even when reading the
// stream failed or fn stopped it.
func browseLines[I, T any](ctx context.Context, c *Client, what, query string, req any, fn func(T) error) (*I, error) {
	var info I
	s, err := c.openStream(ctx, query, req, &info)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	defer s.Close()
	if err := browseLinesOf(s, fn); err != nil {
		return &info, fmt.Errorf("%s: %w", what, err)
	}
	return &info, nil
}

// ValidateSnapshotPath checks a path inside a snapshot: relative to its root, a leading
// "/" allowed; a ".." element, which could name something outside the directory asked
// for, is refused rather than cleaned away, and so is a NUL byte.
func ValidateSnapshotPath(p string) error {
	switch {
	case len(p) > 4096:
		return fmt.Errorf("%w: path is %d bytes, the limit is 4096", ErrInvalid, len(p))
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w: path %q contains a NUL byte", ErrInvalid, p)
	}
	for _, el := range strings.Split(p, "/") {
		if el == ".." {
			return fmt.Errorf("%w: path %q has a \"..\" element: give the path from the snapshot's root, e.g. /etc/hosts", ErrInvalid, p)
		}
	}
	return nil
}

// ValidatePattern checks a find pattern: not empty, no NUL, at most 1024 bytes.
func ValidatePattern(p string) error {
	switch {
	case p == "":
		return fmt.Errorf("%w: empty pattern: give a name or a shell pattern such as '*.conf'", ErrInvalid)
	case len(p) > 1024:
		return fmt.Errorf("%w: pattern is %d bytes, the limit is 1024", ErrInvalid, len(p))
	case strings.ContainsRune(p, 0):
		return fmt.Errorf("%w: pattern %q contains a NUL byte", ErrInvalid, p)
	}
	return nil
}

// checkInSnapshot checks what List and Dump ask for: a repo, a snapshot of it and a path
// in that.
func checkInSnapshot(repo, ref, p string) error {
	if err := ValidateRepoName(repo); err != nil {
		return err
	}
	if err := checkSnapshotRefs(ref); err != nil {
		return err
	}
	return ValidateSnapshotPath(p)
}

// checkSnapshotRefs checks snapshot references before asking: each "latest" or 4 to 64
// hex characters. The worker resolves them.
func checkSnapshotRefs(refs ...string) error {
	for _, ref := range refs {
		if ref == "latest" {
			continue
		}
		if len(ref) < 4 || len(ref) > 64 || strings.Trim(strings.ToLower(ref), "0123456789abcdef") != "" {
			return fmt.Errorf("%w: snapshot %q: give \"latest\" or at least 4 hex characters of a snapshot id (see brr snapshots)", ErrInvalid, ref)
		}
	}
	return nil
}
