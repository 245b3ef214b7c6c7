package jobs_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

// damageFileBlob flips a byte in the middle of the first blob of file name (at the top of
// the snapshot), in its pack file on disk.
func damageFileBlob(t *testing.T, b *bundle, snapshot, name string) {
	t.Helper()
	ctx := context.Background()
	id, err := repo.ParseID(snapshot)
	if err != nil {
		t.Fatal(err)
	}
	sn, err := b.repo.LoadSnapshot(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := b.repo.LoadTree(ctx, sn.Tree)
	if err != nil {
		t.Fatal(err)
	}
	n := tree.Find(name)
	if n == nil || len(n.Content) == 0 {
		t.Fatalf("%s: node %+v, want a file with content", name, n)
	}
	damageBlob(t, b.repo, b.dir, n.Content[0])
}

// damageBlob flips a byte in the middle of the data blob id, in its pack file below dir.
func damageBlob(t *testing.T, r *repo.Repository, dir string, id repo.ID) {
	t.Helper()
	pb, ok := r.LookupBlob(repo.DataBlob, id)
	if !ok {
		t.Fatalf("blob %s is not in the index", id.Short())
	}
	var packPath string
	_ = filepath.WalkDir(filepath.Join(dir, "data"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Name() == pb.Pack.String() {
			packPath = p
		}
		return nil
	})
	if packPath == "" {
		t.Fatalf("pack %s not found under %s", pb.Pack, dir)
	}
	testkit.FlipByte(t, packPath, int64(pb.Offset)+int64(pb.Length)/2)
}

// emptyDir fails the test unless dir exists and is empty.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatalf("read scratch dir: %v", err)
	}
	for _, e := range ents {
		t.Errorf("left in the scratch dir: %s", e.Name())
	}
}

func TestDrill(t *testing.T) {
	b := setup(t)
	scratch := filepath.Join(t.TempDir(), "scratch")
	b.engine.ScratchDir = scratch
	src := t.TempDir()
	makeEveryKind(t, src)
	// A directory its owner may not write and a file nobody may read: the drill still
	// reads the copy and removes it.
	testkit.WriteFile(t, filepath.Join(src, "ro", "secret"), []byte("locked away"), 0o000)
	if err := os.Chmod(filepath.Join(src, "ro"), 0o500); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Chmod(filepath.Join(src, "ro"), 0o700) })
	res := backup(t, b.engine, "drill-src-1", src)
	ctx := context.Background()

	var calls int
	dr, err := b.engine.Drill(ctx, "drill-1", brr.DrillJob{Snapshot: "latest", Source: src}, func(p brr.Progress) { calls++ })
	if err != nil {
		t.Fatalf("drill of a good repo: %v", err)
	}
	if !dr.Passed || dr.ProblemCount != 0 || len(dr.Problems) != 0 {
		t.Fatalf("drill = %+v, want passed", dr)
	}
	if dr.Snapshot != res.Snapshot || dr.Repo != "local" || dr.Source != src {
		t.Errorf("drill names snapshot %s of %s in %s, want %s of %s in local", dr.Snapshot, dr.Source, dr.Repo, res.Snapshot, src)
	}
	// Every file of the backup (the hard links included), every symlink; the bytes of
	// every file read once.
	if dr.Files != res.Files || dr.Symlinks != 4 || dr.Dirs != res.Dirs || dr.Bytes == 0 {
		t.Errorf("drill checked %d files, %d symlinks, %d dirs, %d bytes; the backup has %d files, 4 symlinks, %d dirs",
			dr.Files, dr.Symlinks, dr.Dirs, dr.Bytes, res.Files, res.Dirs)
	}
	t.Logf("drill: %+v, %d progress calls", dr, calls)
	emptyDir(t, scratch)

	// The same through Handle, by snapshot id prefix.
	out, err := b.engine.Handle(ctx, &brr.Job{ID: "drill-2", Kind: brr.KindDrill, Args: &brr.DrillJob{Snapshot: res.Snapshot[:8]}}, nil)
	if err != nil || out.Result.Drill == nil || !out.Result.Drill.Passed {
		t.Fatalf("Handle(drill) = %+v, %v", out, err)
	}
	if _, err := b.engine.Drill(ctx, "drill-3", brr.DrillJob{Snapshot: "latest", Source: "/nowhere"}, nil); !brr.IsPermanent(err) {
		t.Fatalf("drill of a source with no snapshot: err = %v, want permanent", err)
	}
	emptyDir(t, scratch)
}

func TestDrillFindsDamage(t *testing.T) {
	b := setup(t)
	scratch := t.TempDir()
	b.engine.ScratchDir = scratch
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "good.bin"), randomBytes(41, 200<<10), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "victim.bin"), randomBytes(42, 300<<10), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "sub", "other.txt"), []byte("other"), 0o644)
	res := backup(t, b.engine, "drill-damage-1", src)
	damageFileBlob(t, b, res.Snapshot, "victim.bin")
	ctx := context.Background()

	dr, err := b.engine.Drill(ctx, "drill-damaged", brr.DrillJob{Snapshot: res.Snapshot}, nil)
	if err == nil || !brr.IsPermanent(err) {
		t.Fatalf("drill of a damaged repo: err = %v, want a permanent error", err)
	}
	if dr == nil || dr.Passed || dr.ProblemCount == 0 {
		t.Fatalf("drill result %+v, want failed with problems", dr)
	}
	named := false
	for _, p := range dr.Problems {
		named = named || strings.Contains(p, "/victim.bin")
		if strings.Contains(p, "good.bin") || strings.Contains(p, "other.txt") {
			t.Errorf("problem %q names a good file", p)
		}
	}
	if !named || !strings.Contains(err.Error(), "/victim.bin") {
		t.Errorf("problems %q / error %q do not name /victim.bin", dr.Problems, err)
	}
	if dr.Files != 2 {
		t.Errorf("drill checked %d files, want the 2 good ones", dr.Files)
	}
	t.Logf("drill error: %v", err)
	emptyDir(t, scratch)

	// A verify with --drill fails through the drill even when the structure is sound.
	vr, err := b.engine.Verify(ctx, "verify-drill", brr.VerifyJob{Drill: true}, nil)
	if err == nil || !brr.IsPermanent(err) {
		t.Fatalf("verify --drill of a damaged repo: err = %v, want permanent", err)
	}
	if vr == nil || !vr.OK() || vr.Drill == nil || vr.Drill.Passed {
		t.Fatalf("verify --drill = %+v, want no structural damage and a failed drill", vr)
	}
	emptyDir(t, scratch)
}

func TestVerifyDrill(t *testing.T) {
	b := setup(t)
	b.engine.ScratchDir = t.TempDir()
	ctx := context.Background()
	// Nothing to drill is a failure that says so.
	if _, err := b.engine.Verify(ctx, "verify-empty", brr.VerifyJob{Drill: true}, nil); !brr.IsPermanent(err) || !strings.Contains(err.Error(), "no snapshot to drill") {
		t.Fatalf("verify --drill of an empty repo: err = %v", err)
	}
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "old.txt"), []byte("old"), 0o644)
	backup(t, b.engine, "vd-1", src)
	testkit.WriteFile(t, filepath.Join(src, "new.txt"), []byte("new"), 0o644)
	newest := backup(t, b.engine, "vd-2", src)

	res, err := b.engine.Handle(ctx, &brr.Job{ID: "verify-drill-1", Kind: brr.KindVerify, Args: &brr.VerifyJob{Drill: true, ReadData: true}}, nil)
	if err != nil {
		t.Fatalf("verify --drill: %v", err)
	}
	v := res.Result.Verify
	if !v.OK() || v.Drill == nil || !v.Drill.Passed || v.Drill.Snapshot != newest.Snapshot || v.Drill.Files != 2 {
		t.Fatalf("verify --drill = %+v, drill %+v; want a passed drill of the newest snapshot (2 files)", v, v.Drill)
	}
	emptyDir(t, b.engine.ScratchDir)
}
