package repo

import (
	"context"
	"fmt"
	"io"
	"strings"

	"github.com/brr-dev/brr"
)

// Browsing a snapshot loads only the trees it needs: Lookup the trees on the path to one
// entry, ListDir one more, Walk and DiffTrees those below where they start (and DiffTrees
// none that both sides share). Nothing holds a whole snapshot's tree in memory.

// SplitPath splits p, a path inside a snapshot from its root ("/a/b", "a/b"; "" and "/"
// are the root), into its names. A ".." element is refused, not cleaned away: it would
// name something other than what the path seems to, and a caller that builds paths from
// outside input should hear so. A NUL byte is refused too.
func SplitPath(p string) ([]string, error) {
	if strings.ContainsRune(p, 0) {
		return nil, fmt.Errorf("path %q contains a NUL byte: %w", p, brr.ErrInvalid)
	}
	var names []string
	for _, el := range strings.Split(p, "/") {
		switch el {
		case "", ".":
			continue
		case "..":
			return nil, fmt.Errorf("path %q has a \"..\" element: give the path from the snapshot's root, e.g. /etc/hosts: %w", p, brr.ErrInvalid)
		}
		names = append(names, el)
	}
	return names, nil
}

// JoinPath is the path of names, from the root, with a leading "/".
func JoinPath(names []string) string { return "/" + strings.Join(names, "/") }

// RootNode is the node of a snapshot's root directory, whose tree is root.
func RootNode(sn *Snapshot) *Node {
	return &Node{Name: "/", Type: NodeDir, Mode: 0o755 | 1<<31, ModTime: sn.Time, Subtree: sn.Tree}
}

// Lookup returns the node at path names below the tree root, loading only the trees on
// the way; no names is the root itself (a directory node whose Subtree is root). A path
// that is not there gives an error wrapping brr.ErrNotFound that names the first missing
// part.
func (r *Repository) Lookup(ctx context.Context, root ID, names []string) (*Node, error) {
	node := &Node{Name: "/", Type: NodeDir, Subtree: root}
	for i, name := range names {
		if node.Type != NodeDir {
			return nil, fmt.Errorf("%s is a %s, not a directory: %w", JoinPath(names[:i]), node.Type, brr.ErrNotFound)
		}
		t, err := r.LoadTree(ctx, node.Subtree)
		if err != nil {
			return nil, fmt.Errorf("load the tree of %s: %w", JoinPath(names[:i]), err)
		}
		if node = t.Find(name); node == nil {
			return nil, fmt.Errorf("no %s in the snapshot: %w", JoinPath(names[:i+1]), brr.ErrNotFound)
		}
	}
	return node, nil
}

// Walk calls fn for every node below the tree id, whose path is dir, depth first in name
// order: a directory before what it holds. It holds the trees of one branch at a time.
func (r *Repository) Walk(ctx context.Context, id ID, dir string, fn func(p string, n *Node) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	t, err := r.LoadTree(ctx, id)
	if err != nil {
		return fmt.Errorf("load the tree of %s: %w", dir, err)
	}
	for _, n := range t.Nodes {
		p := strings.TrimSuffix(dir, "/") + "/" + n.Name
		if err := fn(p, n); err != nil {
			return err
		}
		if n.Type == NodeDir {
			if err := r.Walk(ctx, n.Subtree, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// DiffTrees calls fn for every path whose node differs from tree a to tree b (dir is
// their path), in path order: old is nil for a node added, cur nil for one removed. A
// directory that is the same tree on both sides is not loaded; one added or removed is
// reported, then everything below it.
func (r *Repository) DiffTrees(ctx context.Context, a, b ID, dir string, fn func(p string, old, cur *Node) error) error {
	if a == b {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	load := func(id ID) ([]*Node, error) {
		if id.IsZero() {
			return nil, nil
		}
		t, err := r.LoadTree(ctx, id)
		if err != nil {
			return nil, fmt.Errorf("load the tree of %s: %w", dir, err)
		}
		return t.Nodes, nil
	}
	an, err := load(a)
	if err != nil {
		return err
	}
	bn, err := load(b)
	if err != nil {
		return err
	}
	subtree := func(n *Node) ID {
		if n != nil && n.Type == NodeDir {
			return n.Subtree
		}
		return ID{}
	}
	for len(an) > 0 || len(bn) > 0 {
		var old, cur *Node
		switch {
		case len(bn) == 0 || len(an) > 0 && an[0].Name < bn[0].Name:
			old, an = an[0], an[1:]
		case len(an) == 0 || bn[0].Name < an[0].Name:
			cur, bn = bn[0], bn[1:]
		default:
			old, cur, an, bn = an[0], bn[0], an[1:], bn[1:]
		}
		name := cur
		if name == nil {
			name = old
		}
		p := strings.TrimSuffix(dir, "/") + "/" + name.Name
		if old == nil || cur == nil || len(NodeChanges(old, cur)) > 0 {
			if err := fn(p, old, cur); err != nil {
				return err
			}
		}
		if sa, sb := subtree(old), subtree(cur); sa != sb {
			if err := r.DiffTrees(ctx, sa, sb, p, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// NodeChanges names what differs between two nodes of one path: "type", "content"
// (a file's blobs), "target" (a symlink's), "mode", "mtime", "owner". A directory's
// subtree is not its content: what changed below it is reported below it.
func NodeChanges(a, b *Node) []string {
	var out []string
	if a.Type != b.Type {
		return []string{"type"}
	}
	if a.Type == NodeFile && (a.Size != b.Size || !sameIDs(a.Content, b.Content)) {
		out = append(out, "content")
	}
	if a.LinkTarget != b.LinkTarget {
		out = append(out, "target")
	}
	if a.Mode != b.Mode {
		out = append(out, "mode")
	}
	if !a.ModTime.Equal(b.ModTime) {
		out = append(out, "mtime")
	}
	if a.UID != b.UID || a.GID != b.GID {
		out = append(out, "owner")
	}
	return out
}

func sameIDs(a, b []ID) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// WriteFile writes the content of the file node n to w, one blob at a time (at most
// MaxChunkSize bytes held), and checks that it is n.Size bytes.
func (r *Repository) WriteFile(ctx context.Context, n *Node, w io.Writer) error {
	if n.Type != NodeFile {
		return fmt.Errorf("%s is a %s, not a file", n.Name, n.Type)
	}
	var buf []byte
	var written int64
	for i, id := range n.Content {
		if err := ctx.Err(); err != nil {
			return err
		}
		data, err := r.LoadBlob(ctx, DataBlob, id, buf)
		if err != nil {
			return fmt.Errorf("read blob %d of %d of %s: %w", i+1, len(n.Content), n.Name, err)
		}
		if _, err := w.Write(data); err != nil {
			return err
		}
		written += int64(len(data))
		buf = data
	}
	if written != n.Size {
		return fmt.Errorf("%w: %s has %d bytes in its blobs, its entry says %d", ErrDamaged, n.Name, written, n.Size)
	}
	return nil
}
