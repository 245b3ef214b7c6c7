package repo_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

func TestTreeCodec(t *testing.T) {
	long := strings.Repeat("n", 255)
	weird := []string{"a\nb", "\xff\xfe invalid utf-8", long, " space ", "ü"}
	tree := &repo.Tree{}
	for i, name := range weird {
		tree.Nodes = append(tree.Nodes, &repo.Node{
			Name: name, Type: repo.NodeFile, Mode: 0o4755, ModTime: time.Unix(1700000000+int64(i), 123456789),
			UID: 1000, GID: 1000, Size: 42, Inode: 7, DeviceID: 9, Links: 2, Content: []repo.ID{{1}, {2}},
		})
	}
	tree.Nodes = append(tree.Nodes,
		&repo.Node{Name: "dir", Type: repo.NodeDir, Mode: uint32(os.ModeDir | 0o755), Subtree: repo.ID{3}, ModTime: time.Unix(-5, 1)},
		&repo.Node{Name: "link", Type: repo.NodeSymlink, LinkTarget: "../\xff\n/target"})
	data, err := repo.EncodeTree(tree)
	if err != nil {
		t.Fatal(err)
	}
	got, err := repo.DecodeTree(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Nodes) != len(tree.Nodes) {
		t.Fatalf("%d nodes, want %d", len(got.Nodes), len(tree.Nodes))
	}
	for _, want := range tree.Nodes {
		n := got.Find(want.Name)
		if n == nil {
			t.Fatalf("node %q lost", want.Name)
		}
		if !n.ModTime.Equal(want.ModTime) || n.Mode != want.Mode || n.LinkTarget != want.LinkTarget ||
			!slices.Equal(n.Content, want.Content) || n.Subtree != want.Subtree || n.Links != want.Links ||
			n.Inode != want.Inode || n.DeviceID != want.DeviceID || n.UID != want.UID || n.Size != want.Size {
			t.Errorf("node %q: got %+v, want %+v", want.Name, n, want)
		}
	}
	// Deterministic whatever the input order.
	slices.Reverse(tree.Nodes)
	again, err := repo.EncodeTree(tree)
	if err != nil || string(again) != string(data) {
		t.Fatalf("encoding depends on node order (err %v)", err)
	}

	for _, bad := range []string{"", ".", "..", "a/b", "nul\x00"} {
		bt := &repo.Tree{Nodes: []*repo.Node{{Name: bad, Type: repo.NodeFile}}}
		if _, err := repo.EncodeTree(bt); err == nil {
			t.Errorf("EncodeTree accepted name %q", bad)
		}
		// Craft the encoding by hand: replace a good name of the same length.
		good := strings.Repeat("x", len(bad))
		if good == "" {
			continue
		}
		enc, err := repo.EncodeTree(&repo.Tree{Nodes: []*repo.Node{{Name: good, Type: repo.NodeFile}}})
		if err != nil {
			t.Fatal(err)
		}
		forged := strings.Replace(string(enc), good, bad, 1)
		if _, err := repo.DecodeTree([]byte(forged)); err == nil {
			t.Errorf("DecodeTree accepted name %q", bad)
		}
	}
	if _, err := repo.EncodeTree(&repo.Tree{Nodes: []*repo.Node{{Name: "d", Type: repo.NodeDir}}}); err == nil {
		t.Error("EncodeTree accepted a dir without subtree")
	}
	if _, err := repo.EncodeTree(&repo.Tree{Nodes: []*repo.Node{{Name: "a", Type: repo.NodeFile}, {Name: "a", Type: repo.NodeFile}}}); err == nil {
		t.Error("EncodeTree accepted a duplicate name")
	}
}

// backup stores a small tree: /docs/report.txt, /docs/notes.txt and /top.bin, and commits a
// snapshot of it; it returns the snapshot and the content ids of report.txt.
func backup(t *testing.T, r *repo.Repository, jobID, source string, when time.Time, report []byte) (*repo.Snapshot, []repo.ID) {
	t.Helper()
	ctx := context.Background()
	file := func(name string, data []byte) *repo.Node {
		return &repo.Node{Name: name, Type: repo.NodeFile, Mode: 0o644, Size: int64(len(data)), Content: []repo.ID{saveBlob(t, r, data)}}
	}
	rep := file("report.txt", report)
	docs, err := r.SaveTree(ctx, &repo.Tree{Nodes: []*repo.Node{rep, file("notes.txt", []byte("notes of "+jobID))}})
	if err != nil {
		t.Fatal(err)
	}
	root, err := r.SaveTree(ctx, &repo.Tree{Nodes: []*repo.Node{
		{Name: "docs", Type: repo.NodeDir, Mode: uint32(os.ModeDir | 0o755), Subtree: docs},
		file("top.bin", randomBytes(uint64(len(jobID)), 3000)),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sn := &repo.Snapshot{ID: r.SnapshotIDFor(jobID), Time: when, Host: "h", Source: source, Tree: root, JobID: jobID, Files: 3, Dirs: 1}
	if err := r.SaveSnapshot(ctx, sn); err != nil {
		t.Fatal(err)
	}
	return sn, rep.Content
}

func TestSnapshots(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	a, _ := backup(t, r, "job-a", "/srv/a", t0, []byte("one"))
	b, _ := backup(t, r, "job-b", "/srv/b", t0.Add(time.Hour), []byte("two"))
	c, _ := backup(t, r, "job-c", "/srv/a", t0.Add(2*time.Hour), []byte("three"))
	if r.SnapshotIDFor("job-a") != a.ID || r.SnapshotIDFor("job-x") == a.ID {
		t.Fatal("SnapshotIDFor is not a function of the job id")
	}
	r2 := reopen(t, be)
	sns, err := r2.Snapshots(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(sns) != 3 || sns[0].ID != a.ID || sns[2].ID != c.ID || sns[1].Tree != b.Tree || sns[0].JobID != "job-a" {
		t.Fatalf("Snapshots = %+v", sns)
	}
	find := func(ref, source string, asOf *time.Time) (*repo.Snapshot, error) {
		return r2.FindSnapshot(ctx, ref, source, asOf)
	}
	at := func(d time.Duration) *time.Time { v := t0.Add(d); return &v }
	for _, tc := range []struct {
		ref, source string
		asOf        *time.Time
		want        repo.ID
	}{
		{"latest", "", nil, c.ID},
		{"latest", "/srv/b", nil, b.ID},
		{"latest", "", at(90 * time.Minute), b.ID},
		{"latest", "/srv/a", at(90 * time.Minute), a.ID},
		{"latest", "", at(time.Hour), b.ID},
		{a.ID.String()[:8], "", nil, a.ID},
		{strings.ToUpper(b.ID.String()), "", nil, b.ID},
	} {
		sn, err := find(tc.ref, tc.source, tc.asOf)
		if err != nil {
			t.Fatalf("FindSnapshot(%q, %q, %v): %v", tc.ref, tc.source, tc.asOf, err)
		}
		if sn.ID != tc.want {
			t.Errorf("FindSnapshot(%q, %q, %v) = %s, want %s", tc.ref, tc.source, tc.asOf, sn.ID.Short(), tc.want.Short())
		}
	}
	if _, err := find("latest", "/srv/none", nil); !errors.Is(err, brr.ErrNotFound) {
		t.Errorf("latest of unknown source: %v", err)
	}
	if _, err := find("latest", "", at(-time.Hour)); !errors.Is(err, brr.ErrNotFound) {
		t.Errorf("latest before all: %v", err)
	}
	missing := "0000"
	for _, id := range []repo.ID{a.ID, b.ID, c.ID} {
		if strings.HasPrefix(id.String(), missing) {
			missing = "ffff"
		}
	}
	if _, err := find(missing, "", nil); !errors.Is(err, brr.ErrNotFound) {
		t.Errorf("unknown prefix: %v", err)
	}
	if _, err := find("abc", "", nil); err == nil {
		t.Error("3-character prefix accepted")
	}
	if _, err := find("zzzz", "", nil); err == nil {
		t.Error("non-hex prefix accepted")
	}
	// Ambiguity: save copies under ids sharing a prefix with a.
	for _, last := range []byte{0x01, 0x02} {
		dup := *a
		dup.ID[31] = last
		if err := r2.SaveSnapshot(ctx, &dup); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := find(a.ID.String()[:10], "", nil); err == nil || !strings.Contains(err.Error(), "ambiguous") {
		t.Errorf("ambiguous prefix: %v", err)
	}
	if _, err := r2.LoadSnapshot(ctx, repo.ID{9}); !errors.Is(err, brr.ErrNotFound) {
		t.Errorf("LoadSnapshot of unknown id: %v", err)
	}
}

func TestCheck(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	sn1, content := backup(t, r, "job-1", "/srv", t0, randomBytes(21, 40000))
	sn2, _ := backup(t, r, "job-2", "/srv", t0.Add(time.Hour), randomBytes(21, 40000)) // same report.txt
	var progressed int64
	rep, err := r.Check(ctx, repo.CheckOptions{ReadData: true, Progress: func(done, total int64) { progressed = done }})
	if err != nil || !rep.OK() {
		t.Fatalf("clean repository: %+v, %v", rep, err)
	}
	if rep.Snapshots != 2 || rep.Blobs == 0 || rep.Packs == 0 || rep.BytesRead == 0 || progressed == 0 {
		t.Fatalf("report %+v, progress %d", rep, progressed)
	}

	// Flip a byte inside report.txt's blob.
	pb, ok := r.LookupBlob(repo.DataBlob, content[0])
	if !ok {
		t.Fatal("report.txt blob not in index")
	}
	packPath := filepath.Join(be.Dir(), "data", pb.Pack.String()[:2], pb.Pack.String())
	testkit.FlipByte(t, packPath, int64(pb.Offset)+50)
	rep, err = reopen(t, be).Check(ctx, repo.CheckOptions{})
	if err != nil || !rep.OK() {
		t.Fatalf("structure check sees a flipped byte (it reads no data): %+v, %v", rep.Damage, err)
	}
	rep, err = reopen(t, be).Check(ctx, repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatal(err)
	}
	var found *brr.Damage
	for i, d := range rep.Damage {
		if d.Blob == content[0].String() {
			found = &rep.Damage[i]
		}
	}
	if found == nil {
		t.Fatalf("flipped byte not reported by blob: %+v", rep.Damage)
	}
	if found.Pack != pb.Pack.String() || !slices.Contains(found.Paths, "/docs/report.txt") ||
		!slices.Contains(found.Snapshots, sn1.ID.String()) || !slices.Contains(found.Snapshots, sn2.ID.String()) {
		t.Errorf("damage %+v: want pack %s, path /docs/report.txt, both snapshots", found, pb.Pack.Short())
	}

	// A missing pack is found without reading data.
	if err := be.Remove(ctx, repo.Handle{Type: repo.PackFile, Name: pb.Pack.String()}); err != nil {
		t.Fatal(err)
	}
	rep, err = reopen(t, be).Check(ctx, repo.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	found = nil
	for i, d := range rep.Damage {
		if d.Pack == pb.Pack.String() && strings.Contains(d.Problem, "missing") {
			found = &rep.Damage[i]
		}
	}
	if found == nil || !slices.Contains(found.Paths, "/docs/report.txt") || len(found.Snapshots) != 2 {
		t.Fatalf("missing pack: %+v", rep.Damage)
	}
}
