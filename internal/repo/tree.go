package repo

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"
)

// NodeType is the kind of a tree entry; stable on disk.
type NodeType string

// The node types.
const (
	NodeFile    NodeType = "file"
	NodeDir     NodeType = "dir"
	NodeSymlink NodeType = "symlink"
)

// Node is one entry of a directory.
type Node struct {
	// Name is the entry's name: any bytes the OS allows but "", ".", "..", "/" and NUL.
	Name     string
	Type     NodeType
	Mode     uint32 // os.FileMode bits: permissions, setuid, setgid, sticky and type
	ModTime  time.Time
	UID, GID uint32
	Size     int64
	// Inode, DeviceID and Links let restore recreate hard links.
	Inode    uint64
	DeviceID uint64
	Links    uint64
	// LinkTarget is a symlink's target, any bytes.
	LinkTarget string
	// Content lists a file's data blobs, in order.
	Content []ID
	// Subtree is a directory's tree blob.
	Subtree ID
}

// Tree is one directory: its entries, sorted by name.
type Tree struct {
	Nodes []*Node
}

// Trees are encoded in a binary format (strings as length and bytes, so any name
// round-trips) in name order, so an unchanged directory always gives the same blob.
const treeVersion = 1

var nodeTypeCodes = map[NodeType]byte{NodeFile: 1, NodeDir: 2, NodeSymlink: 3}
var nodeTypeByCode = [...]NodeType{1: NodeFile, 2: NodeDir, 3: NodeSymlink}

// checkName rejects names that are not a single path element.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty name")
	case name == "." || name == "..":
		return fmt.Errorf("name %q", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q contains / or NUL", name)
	}
	return nil
}

func checkNode(n *Node) error {
	if err := checkName(n.Name); err != nil {
		return err
	}
	if _, ok := nodeTypeCodes[n.Type]; !ok {
		return fmt.Errorf("%q: unknown node type %q", n.Name, n.Type)
	}
	if n.Type == NodeDir && n.Subtree.IsZero() {
		return fmt.Errorf("%q: directory without a subtree", n.Name)
	}
	if n.Type != NodeDir && !n.Subtree.IsZero() {
		return fmt.Errorf("%q: %s with a subtree", n.Name, n.Type)
	}
	if n.Type != NodeFile && len(n.Content) > 0 {
		return fmt.Errorf("%q: %s with content", n.Name, n.Type)
	}
	return nil
}

// EncodeTree encodes t deterministically, nodes in name order (t is not changed). It
// rejects bad names, duplicate names and inconsistent nodes.
func EncodeTree(t *Tree) ([]byte, error) {
	nodes := slices.Clone(t.Nodes)
	slices.SortFunc(nodes, func(a, b *Node) int { return strings.Compare(a.Name, b.Name) })
	n := 1 + binary.MaxVarintLen64
	for i, nd := range nodes {
		if err := checkNode(nd); err != nil {
			return nil, fmt.Errorf("encode tree: %w", err)
		}
		if i > 0 && nodes[i-1].Name == nd.Name {
			return nil, fmt.Errorf("encode tree: name %q twice", nd.Name)
		}
		n += len(nd.Name) + len(nd.LinkTarget) + 32*(len(nd.Content)+1) + 12*binary.MaxVarintLen64
	}
	b := make([]byte, 0, n)
	b = append(b, treeVersion)
	b = binary.AppendUvarint(b, uint64(len(nodes)))
	for _, nd := range nodes {
		b = appendString(b, nd.Name)
		b = append(b, nodeTypeCodes[nd.Type])
		b = binary.AppendUvarint(b, uint64(nd.Mode))
		b = binary.AppendVarint(b, nd.ModTime.Unix())
		b = binary.AppendUvarint(b, uint64(nd.ModTime.Nanosecond()))
		b = binary.AppendUvarint(b, uint64(nd.UID))
		b = binary.AppendUvarint(b, uint64(nd.GID))
		b = binary.AppendVarint(b, nd.Size)
		b = binary.AppendUvarint(b, nd.Inode)
		b = binary.AppendUvarint(b, nd.DeviceID)
		b = binary.AppendUvarint(b, nd.Links)
		b = appendString(b, nd.LinkTarget)
		b = binary.AppendUvarint(b, uint64(len(nd.Content)))
		for _, id := range nd.Content {
			b = append(b, id[:]...)
		}
		if nd.Type == NodeDir {
			b = append(b, nd.Subtree[:]...)
		}
	}
	return b, nil
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// treeDecoder reads the fields of an encoded tree, remembering the first error.
type treeDecoder struct {
	b   []byte
	err error
}

func (d *treeDecoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf(format, args...)
	}
}

func (d *treeDecoder) uvarint(max uint64) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 || (n > 1 && d.b[n-1] == 0) {
		d.fail("truncated, bad or non-minimal number")
		return 0
	}
	if v > max {
		d.fail("number %d over %d", v, max)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *treeDecoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 || (n > 1 && d.b[n-1] == 0) {
		d.fail("truncated, bad or non-minimal number")
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *treeDecoder) bytes(n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated")
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *treeDecoder) string() string {
	return string(d.bytes(d.uvarint(uint64(len(d.b)))))
}

func (d *treeDecoder) id() ID {
	var id ID
	copy(id[:], d.bytes(32))
	return id
}

// DecodeTree decodes what EncodeTree made. It rejects anything EncodeTree would not
// write: names that are empty, ".", "..", contain "/" or NUL, are duplicate or out of
// order, unknown node types, and trailing bytes.
func DecodeTree(data []byte) (*Tree, error) {
	if len(data) < 1 || data[0] != treeVersion {
		return nil, fmt.Errorf("decode tree: unknown version")
	}
	d := &treeDecoder{b: data[1:]}
	// A node takes at least 15 bytes, which bounds the count before allocating.
	count := d.uvarint(uint64(len(d.b)) / 15)
	if d.err != nil {
		return nil, fmt.Errorf("decode tree: node count: %w", d.err)
	}
	t := &Tree{Nodes: make([]*Node, 0, count)}
	for i := uint64(0); i < count; i++ {
		nd := new(Node)
		nd.Name = d.string()
		if d.err == nil {
			code := d.bytes(1)
			if d.err == nil {
				if int(code[0]) >= len(nodeTypeByCode) || nodeTypeByCode[code[0]] == "" {
					d.fail("unknown node type %d", code[0])
				} else {
					nd.Type = nodeTypeByCode[code[0]]
				}
			}
		}
		nd.Mode = uint32(d.uvarint(1<<32 - 1))
		sec := d.varint()
		nsec := d.uvarint(999_999_999)
		nd.ModTime = time.Unix(sec, int64(nsec)).UTC()
		nd.UID = uint32(d.uvarint(1<<32 - 1))
		nd.GID = uint32(d.uvarint(1<<32 - 1))
		nd.Size = d.varint()
		nd.Inode = d.uvarint(1<<64 - 1)
		nd.DeviceID = d.uvarint(1<<64 - 1)
		nd.Links = d.uvarint(1<<64 - 1)
		nd.LinkTarget = d.string()
		nc := d.uvarint(uint64(len(d.b)) / 32)
		if d.err == nil && nc > 0 {
			nd.Content = make([]ID, nc)
			for j := range nd.Content {
				nd.Content[j] = d.id()
			}
		}
		if nd.Type == NodeDir {
			nd.Subtree = d.id()
		}
		if d.err != nil {
			return nil, fmt.Errorf("decode tree: node %d: %w", i, d.err)
		}
		if err := checkNode(nd); err != nil {
			return nil, fmt.Errorf("decode tree: node %d: %w", i, err)
		}
		if i > 0 && t.Nodes[i-1].Name >= nd.Name {
			return nil, fmt.Errorf("decode tree: node %d: name %q not after %q", i, nd.Name, t.Nodes[i-1].Name)
		}
		t.Nodes = append(t.Nodes, nd)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("decode tree: %d bytes after the last node", len(d.b))
	}
	return t, nil
}

// SaveTree encodes t and saves it as a tree blob; it returns the tree's id. An unchanged
// directory has the same id as before and is not stored again.
func (r *Repository) SaveTree(ctx context.Context, t *Tree) (ID, error) {
	data, err := EncodeTree(t)
	if err != nil {
		return ID{}, err
	}
	id := r.BlobID(data)
	if _, _, err := r.SaveBlob(ctx, TreeBlob, id, data); err != nil {
		return ID{}, err
	}
	return id, nil
}

// LoadTree loads and decodes the tree blob id. A tree that does not decode gives an error
// wrapping ErrDamaged.
func (r *Repository) LoadTree(ctx context.Context, id ID) (*Tree, error) {
	data, err := r.LoadBlob(ctx, TreeBlob, id, nil)
	if err != nil {
		return nil, err
	}
	t, err := DecodeTree(data)
	if err != nil {
		return nil, fmt.Errorf("%w: tree %s: %w", ErrDamaged, id, err)
	}
	return t, nil
}

// Find returns the node called name, or nil; t.Nodes must be in name order, as
// DecodeTree returns them.
func (t *Tree) Find(name string) *Node {
	i, ok := slices.BinarySearchFunc(t.Nodes, name, func(n *Node, name string) int { return strings.Compare(n.Name, name) })
	if !ok {
		return nil
	}
	return t.Nodes[i]
}
