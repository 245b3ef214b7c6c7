package jobs

import (
	"archive/tar"
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
)

// Browsing answers brr ls, find, diff and dump (internal/events streams the answers).
// Each method resolves what it was asked for at once, so that a wrong snapshot or path is
// said in the open reply, and returns info (the reply's Info) and run, which writes the
// stream to w. The caller must call run exactly once, even with a done context: it is
// what lets a repository dropped meanwhile be closed.

// browse holds repo name for a browse and returns it with a function that releases it.
func (e *Engine) browse(repoName string) (*repo.Repository, string, func(), error) {
	r, name, err := e.Repo(repoName)
	if err != nil {
		return nil, name, nil, err
	}
	e.jobStarted()
	return r, name, e.jobEnded, nil
}

// entryAt is the entry of a snapshot that a List or a Dump asked for.
type entryAt struct {
	r        *repo.Repository
	snapshot brr.Snapshot
	entry    brr.TreeEntry
	node     *repo.Node
	names    []string // the path's elements
	release  func()   // releases the hold on r
}

// browseAt holds repoName for a browse and looks up path p of snapshot ref in it. The
// caller must call the entry's release; on an error nothing is held.
func (e *Engine) browseAt(ctx context.Context, repoName, ref, p string) (*entryAt, error) {
	r, name, release, err := e.browse(repoName)
	if err != nil {
		return nil, err
	}
	sn, node, names, err := lookup(ctx, r, name, ref, p)
	if err != nil {
		release()
		return nil, err
	}
	return &entryAt{r: r, snapshot: publicSnapshot(name, sn), entry: treeEntry(repo.JoinPath(names), node), node: node, names: names, release: release}, nil
}

// List opens the listing of a directory of a snapshot (ls).
func (e *Engine) List(ctx context.Context, req brr.ListRequest) (any, func(context.Context, io.Writer) error, error) {
	at, err := e.browseAt(ctx, req.Repo, req.Snapshot, req.Path)
	if err != nil {
		return nil, nil, err
	}
	r, node, release := at.r, at.node, at.release
	info := brr.ListInfo{Snapshot: at.snapshot, Entry: at.entry}
	return info, func(ctx context.Context, w io.Writer) error {
		defer release()
		lw := newLines(w)
		if node.Type != repo.NodeDir {
			return lw.end(lw.put(info.Entry))
		}
		if !req.Recursive {
			t, err := r.LoadTree(ctx, node.Subtree)
			if err != nil {
				return err
			}
			for _, n := range t.Nodes {
				if err := lw.put(treeEntry(childPath(info.Entry.Path, n.Name), n)); err != nil {
					return err
				}
			}
			return lw.end(nil)
		}
		return lw.end(r.Walk(ctx, node.Subtree, info.Entry.Path, func(p string, n *repo.Node) error {
			return lw.put(treeEntry(p, n))
		}))
	}, nil
}

// Diff opens the comparison of two snapshots (diff).
func (e *Engine) Diff(ctx context.Context, req brr.DiffRequest) (any, func(context.Context, io.Writer) error, error) {
	r, name, release, err := e.browse(req.Repo)
	if err != nil {
		return nil, nil, err
	}
	a, err := findSnapshot(ctx, r, name, req.A)
	if err == nil {
		var b *repo.Snapshot
		if b, err = findSnapshot(ctx, r, name, req.B); err == nil {
			info := brr.DiffInfo{A: publicSnapshot(name, a), B: publicSnapshot(name, b)}
			return info, func(ctx context.Context, w io.Writer) error {
				defer release()
				lw := newLines(w)
				return lw.end(r.DiffTrees(ctx, a.Tree, b.Tree, "/", func(p string, old, cur *repo.Node) error {
					return lw.put(change(p, old, cur))
				}))
			}, nil
		}
	}
	release()
	return nil, nil, err
}

// change is the diff entry of p from old to cur (either may be nil).
func change(p string, old, cur *repo.Node) brr.Change {
	c := brr.Change{Path: p}
	switch {
	case old == nil:
		c.Change, c.Type, c.NewSize = brr.ChangeAdded, string(cur.Type), cur.Size
	case cur == nil:
		c.Change, c.Type, c.OldSize = brr.ChangeRemoved, string(old.Type), old.Size
	default:
		c.Type, c.OldSize, c.NewSize = string(cur.Type), old.Size, cur.Size
		c.Fields = repo.NodeChanges(old, cur)
		c.Change = brr.ChangeMetadata
		for _, f := range c.Fields {
			if f == "content" || f == "type" || f == "target" {
				c.Change = brr.ChangeModified
			}
		}
	}
	return c
}

// maxFindMemo bounds the subtrees a find remembers as holding no match.
const maxFindMemo = 1 << 20

// Find opens the search of the snapshots of a repository for a pattern (find), newest
// snapshot first. A subtree that held no match in a newer snapshot is not read again.
func (e *Engine) Find(ctx context.Context, req brr.FindRequest) (any, func(context.Context, io.Writer) error, error) {
	if _, err := path.Match(req.Pattern, ""); err != nil {
		return nil, nil, brr.Permanent(fmt.Errorf("pattern %q: %v: %w", req.Pattern, err, brr.ErrInvalid))
	}
	r, name, release, err := e.browse(req.Repo)
	if err != nil {
		return nil, nil, err
	}
	var sns []*repo.Snapshot
	if len(req.Snapshots) == 0 {
		sns, err = r.Snapshots(ctx)
		if err != nil {
			release()
			return nil, nil, fmt.Errorf("list snapshots of repo %s: %w", name, err)
		}
	}
	for _, ref := range req.Snapshots {
		sn, err := findSnapshot(ctx, r, name, ref)
		if err != nil {
			release()
			return nil, nil, err
		}
		sns = append(sns, sn)
	}
	slices.SortStableFunc(sns, func(a, b *repo.Snapshot) int { return b.Time.Compare(a.Time) })
	byPath := strings.Contains(req.Pattern, "/")
	pattern := req.Pattern
	if byPath && !strings.HasPrefix(pattern, "/") {
		pattern = "/" + pattern
	}
	return brr.FindInfo{Snapshots: len(sns)}, func(ctx context.Context, w io.Writer) error {
		defer release()
		lw := newLines(w)
		type memoKey struct {
			id  repo.ID
			dir string
		}
		barren := map[memoKey]bool{} // subtrees that hold no match
		for _, sn := range sns {
			var walk func(id repo.ID, dir string) (bool, error)
			walk = func(id repo.ID, dir string) (bool, error) {
				key := memoKey{id: id}
				if byPath {
					key.dir = dir
				}
				if barren[key] {
					return false, nil
				}
				if err := ctx.Err(); err != nil {
					return false, err
				}
				t, err := r.LoadTree(ctx, id)
				if err != nil {
					return false, fmt.Errorf("snapshot %s: load the tree of %s: %w", sn.ID.Short(), dir, err)
				}
				found := false
				for _, n := range t.Nodes {
					p := childPath(dir, n.Name)
					subject := n.Name
					if byPath {
						subject = p
					}
					if ok, _ := path.Match(pattern, subject); ok {
						found = true
						m := brr.FindMatch{Snapshot: sn.ID.String(), Time: sn.Time, Source: sn.Source, TreeEntry: treeEntry(p, n)}
						if err := lw.put(m); err != nil {
							return false, err
						}
					}
					if n.Type == repo.NodeDir {
						sub, err := walk(n.Subtree, p)
						if err != nil {
							return false, err
						}
						found = found || sub
					}
				}
				if !found && len(barren) < maxFindMemo {
					barren[key] = true
				}
				return found, nil
			}
			if _, err := walk(sn.Tree, "/"); err != nil {
				return lw.end(err)
			}
			if err := lw.bw.Flush(); err != nil { // what this snapshot held, before the next is searched
				return err
			}
		}
		return lw.end(nil)
	}, nil
}

// Dump opens the reading of a file of a snapshot, or of a directory as a tar stream.
func (e *Engine) Dump(ctx context.Context, req brr.DumpRequest) (any, func(context.Context, io.Writer) error, error) {
	at, err := e.browseAt(ctx, req.Repo, req.Snapshot, req.Path)
	if err != nil {
		return nil, nil, err
	}
	r, node, names, release := at.r, at.node, at.names, at.release
	info := brr.DumpInfo{Snapshot: at.snapshot, Entry: at.entry}
	switch node.Type {
	case repo.NodeFile:
		info.Format, info.Size = "file", node.Size
		return info, func(ctx context.Context, w io.Writer) error {
			defer release()
			return r.WriteFile(ctx, node, w)
		}, nil
	case repo.NodeDir:
		info.Format = "tar"
		base := ""
		if len(names) > 0 {
			base = names[len(names)-1] + "/"
		}
		return info, func(ctx context.Context, w io.Writer) error {
			defer release()
			return writeTar(ctx, r, node, base, w)
		}, nil
	}
	release()
	return nil, nil, brr.Permanent(fmt.Errorf("%s is a symlink to %q, which has no content of its own; dump the file it points to: %w",
		info.Entry.Path, node.LinkTarget, brr.ErrInvalid))
}

// writeTar writes the directory node and what is below it as a tar stream, its entries
// named base + their path below it.
func writeTar(ctx context.Context, r *repo.Repository, dir *repo.Node, base string, w io.Writer) error {
	tw := tar.NewWriter(w)
	header := func(name string, n *repo.Node) *tar.Header {
		return &tar.Header{Name: name, Mode: tarMode(n.Mode), ModTime: n.ModTime, Uid: int(n.UID), Gid: int(n.GID), Format: tar.FormatPAX}
	}
	if base != "" {
		h := header(base, dir)
		h.Typeflag = tar.TypeDir
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
	}
	err := r.Walk(ctx, dir.Subtree, "/", func(p string, n *repo.Node) error {
		h := header(base+strings.TrimPrefix(p, "/"), n)
		switch n.Type {
		case repo.NodeDir:
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			return tw.WriteHeader(h)
		case repo.NodeSymlink:
			h.Typeflag, h.Linkname = tar.TypeSymlink, n.LinkTarget
			return tw.WriteHeader(h)
		}
		h.Typeflag, h.Size = tar.TypeReg, n.Size
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		return r.WriteFile(ctx, n, tw)
	})
	if err != nil {
		return err
	}
	return tw.Close()
}

// tarMode is the tar mode of the os.FileMode bits m: permissions, setuid, setgid, sticky.
func tarMode(m uint32) int64 {
	fm := fs.FileMode(m)
	mode := int64(fm.Perm())
	if fm&fs.ModeSetuid != 0 {
		mode |= 0o4000
	}
	if fm&fs.ModeSetgid != 0 {
		mode |= 0o2000
	}
	if fm&fs.ModeSticky != 0 {
		mode |= 0o1000
	}
	return mode
}

// lookup resolves a snapshot reference and a path in it.
func lookup(ctx context.Context, r *repo.Repository, repoName, ref, p string) (*repo.Snapshot, *repo.Node, []string, error) {
	names, err := repo.SplitPath(p)
	if err != nil {
		return nil, nil, nil, brr.Permanent(err)
	}
	sn, err := findSnapshot(ctx, r, repoName, ref)
	if err != nil {
		return nil, nil, nil, err
	}
	if len(names) == 0 {
		return sn, repo.RootNode(sn), nil, nil
	}
	node, err := r.Lookup(ctx, sn.Tree, names)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("snapshot %s of %s: %w", sn.ID.Short(), sn.Source, err)
	}
	return sn, node, names, nil
}

// findSnapshot resolves ref ("latest", an id or a prefix) in repo repoName.
func findSnapshot(ctx context.Context, r *repo.Repository, repoName, ref string) (*repo.Snapshot, error) {
	sn, err := r.FindSnapshot(ctx, ref, "", nil)
	if err != nil {
		return nil, fmt.Errorf("repo %s: %w", repoName, err)
	}
	return sn, nil
}

func childPath(dir, name string) string { return strings.TrimSuffix(dir, "/") + "/" + name }

// treeEntry is n, at path p, as brr ls shows it.
func treeEntry(p string, n *repo.Node) brr.TreeEntry {
	return brr.TreeEntry{Path: p, Name: path.Base(p), Type: string(n.Type), Mode: n.Mode, Size: n.Size,
		ModTime: n.ModTime, UID: n.UID, GID: n.GID, Target: n.LinkTarget}
}

// lines writes one JSON object per line through a buffer, so that the stream gets few
// large writes.
type lines struct {
	bw  *bufio.Writer
	enc *json.Encoder
}

func newLines(w io.Writer) *lines {
	bw := bufio.NewWriterSize(w, brr.StreamChunk)
	return &lines{bw: bw, enc: json.NewEncoder(bw)}
}

func (l *lines) put(v any) error { return l.enc.Encode(v) }

// end flushes what is buffered and returns err, or the flush's error.
func (l *lines) end(err error) error {
	if err != nil {
		return err
	}
	return l.bw.Flush()
}
