package web

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/brr-dev/brr"
)

// Browsing a snapshot over HTTP asks a worker of the pool, as the CLI does (brr ls, diff,
// dump): the tree and the diff are answered in one JSON document of at most limit
// entries (Truncated says that there were more), a file is streamed as it comes.

// Tree is the answer of GET /api/v1/snapshots/{id}/tree.
type Tree struct {
	Snapshot brr.Snapshot    `json:"snapshot"`
	Entry    brr.TreeEntry   `json:"entry"`
	Entries  []brr.TreeEntry `json:"entries"`
	// Truncated says that there are more entries than limit.
	Truncated bool `json:"truncated"`
}

// Diff is the answer of GET /api/v1/snapshots/{a}/diff/{b}.
type Diff struct {
	A         brr.Snapshot `json:"a"`
	B         brr.Snapshot `json:"b"`
	Changes   []brr.Change `json:"changes"`
	Truncated bool         `json:"truncated"`
}

// The limits on the entries of one tree or diff answer.
const (
	defaultBrowseLimit = 5000
	maxBrowseLimit     = 100000
)

// errEnough stops a listing at its limit.
var errEnough = errors.New("limit reached")

// browseLimit is the limit query parameter.
func browseLimit(r *http.Request) (int, error) {
	v := r.URL.Query().Get("limit")
	if v == "" {
		return defaultBrowseLimit, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxBrowseLimit {
		return 0, errorf(http.StatusBadRequest, "limit %q: give a number from 1 to %d", v, maxBrowseLimit)
	}
	return n, nil
}

// snapshotParam checks a snapshot reference of the path.
func snapshotParam(r *http.Request, name string) (string, error) {
	ref := r.PathValue(name)
	if ref == "latest" {
		return ref, nil
	}
	if len(ref) < 4 || len(ref) > 64 || strings.Trim(strings.ToLower(ref), "0123456789abcdef") != "" {
		return "", errorf(http.StatusBadRequest, "snapshot %q: give \"latest\" or at least 4 hex characters of a snapshot id", ref)
	}
	return ref, nil
}

func (s *Server) snapshotTree(w http.ResponseWriter, r *http.Request) error {
	repo, refs, limit, err := s.browseParams(r, "id")
	if err != nil {
		return err
	}
	q := r.URL.Query()
	tree := Tree{Entries: []brr.TreeEntry{}}
	info, err := s.client.List(r.Context(), brr.ListRequest{Repo: repo, Snapshot: refs[0], Path: q.Get("path"), Recursive: q.Get("recursive") == "true"},
		upTo(limit, &tree.Entries, &tree.Truncated))
	if err := listed(err); err != nil {
		return err
	}
	if info != nil {
		tree.Snapshot, tree.Entry = info.Snapshot, info.Entry
	}
	writeJSON(w, http.StatusOK, tree)
	return nil
}

func (s *Server) snapshotDiff(w http.ResponseWriter, r *http.Request) error {
	repo, refs, limit, err := s.browseParams(r, "a", "b")
	if err != nil {
		return err
	}
	diff := Diff{Changes: []brr.Change{}}
	info, err := s.client.Diff(r.Context(), brr.DiffRequest{Repo: repo, A: refs[0], B: refs[1]}, upTo(limit, &diff.Changes, &diff.Truncated))
	if err := listed(err); err != nil {
		return err
	}
	if info != nil {
		diff.A, diff.B = info.A, info.B
	}
	writeJSON(w, http.StatusOK, diff)
	return nil
}

// snapshotParams reads the repo query parameter and the snapshot references of the path
// named names, in that order.
func (s *Server) snapshotParams(r *http.Request, names ...string) (string, []string, error) {
	repo, err := s.repoParam(r)
	if err != nil {
		return "", nil, err
	}
	refs := make([]string, len(names))
	for i, name := range names {
		if refs[i], err = snapshotParam(r, name); err != nil {
			return "", nil, err
		}
	}
	return repo, refs, nil
}

// browseParams is snapshotParams and then the limit query parameter.
func (s *Server) browseParams(r *http.Request, names ...string) (string, []string, int, error) {
	repo, refs, err := s.snapshotParams(r, names...)
	if err != nil {
		return "", nil, 0, err
	}
	limit, err := browseLimit(r)
	if err != nil {
		return "", nil, 0, err
	}
	return repo, refs, limit, nil
}

// upTo is a listing's callback that appends to *items until they are limit, then sets
// *truncated and stops the listing with errEnough.
func upTo[T any](limit int, items *[]T, truncated *bool) func(T) error {
	return func(x T) error {
		if len(*items) == limit {
			*truncated = true
			return errEnough
		}
		*items = append(*items, x)
		return nil
	}
}

// listed is the error of a listing fed to upTo: none when it only stopped at the limit.
func listed(err error) error {
	if errors.Is(err, errEnough) {
		return nil
	}
	return err
}

// snapshotFile streams a file of a snapshot, or a directory as tar. Once the bytes have
// started, an error can no longer be answered: the connection is cut, so that a client
// sees a broken download (and, for a file, fewer bytes than Content-Length) rather than
// a complete-looking one.
func (s *Server) snapshotFile(w http.ResponseWriter, r *http.Request) error {
	repo, refs, err := s.snapshotParams(r, "id")
	if err != nil {
		return err
	}
	p := r.URL.Query().Get("path")
	if p == "" {
		return errorf(http.StatusBadRequest, "give the path of a file in the snapshot: ?path=/etc/hosts (a directory comes as tar)")
	}
	started := false
	_, err = s.client.Dump(r.Context(), brr.DumpRequest{Repo: repo, Snapshot: refs[0], Path: p}, func(info brr.DumpInfo) (io.Writer, error) {
		h := w.Header()
		name := path.Base(info.Entry.Path)
		if name == "/" {
			name = "snapshot-" + info.Snapshot.ID[:min(12, len(info.Snapshot.ID))]
		}
		if info.Format == "tar" {
			h.Set("Content-Type", "application/x-tar")
			name += ".tar"
		} else {
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Content-Length", strconv.FormatInt(info.Size, 10))
		}
		h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", strings.Map(safeFilenameRune, name)))
		h.Set("Cache-Control", "no-store")
		h.Set("Brr-Snapshot", info.Snapshot.ID)
		w.WriteHeader(http.StatusOK)
		started = true
		return w, nil
	})
	if err != nil && started {
		s.log.Warn().Err(err).Str("path", p).Msg("http api: file download cut")
		panic(http.ErrAbortHandler)
	}
	return err
}

// safeFilenameRune keeps a download's file name to characters that need no escaping in a
// header.
func safeFilenameRune(r rune) rune {
	if r < 0x20 || r == 0x7f || r == '"' || r == '\\' || r > 0x7e {
		return '_'
	}
	return r
}
