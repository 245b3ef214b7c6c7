package jobs_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

func TestCorruptPackFoundByVerifyAndRestoreFailsOnlyThatFile(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "good1.bin"), randomBytes(31, 300<<10), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "victim.bin"), randomBytes(32, 200<<10), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "sub", "good2.bin"), randomBytes(33, 2<<20), 0o644)
	res := backup(t, b.engine, "corrupt-1", src)

	// Flip a byte in the middle of victim.bin's blob, in the pack file on disk.
	damageFileBlob(t, b, res.Snapshot, "victim.bin")

	ctx := context.Background()
	vr, err := b.engine.Verify(ctx, "verify-corrupt", brr.VerifyJob{ReadData: true}, nil)
	verr := err
	if err == nil || !brr.IsPermanent(err) {
		t.Fatalf("verify of a damaged repo: err = %v, want a permanent error", err)
	}
	if vr == nil || vr.OK() {
		t.Fatalf("verify result %+v, want damage", vr)
	}
	if !strings.Contains(err.Error(), "/victim.bin") {
		t.Errorf("verify error %q does not name /victim.bin", err)
	}
	named := false
	for _, d := range vr.Damaged {
		for _, p := range d.Paths {
			named = named || p == "/victim.bin"
		}
	}
	if !named {
		t.Errorf("verify damage %+v does not name /victim.bin", vr.Damaged)
	}

	target := filepath.Join(t.TempDir(), "out")
	rr, err := b.engine.Restore(ctx, "restore-corrupt", brr.RestoreJob{Snapshot: res.Snapshot, Target: target}, nil)
	if err == nil || !strings.Contains(err.Error(), "/victim.bin") {
		t.Fatalf("restore with a damaged blob: err = %v, want one naming /victim.bin", err)
	}
	t.Logf("verify: %v", verr)
	t.Logf("restore: %v", err)
	if !strings.Contains(err.Error(), "damaged") {
		t.Errorf("restore error %q does not say the data is damaged", err)
	}
	if !brr.IsPermanent(err) || !strings.Contains(err.Error(), "1 of 4 entries failed, the others were restored") {
		t.Errorf("restore error %q, want a permanent one that counts 1 failed entry of 4", err)
	}
	if rr == nil || rr.Files != 2 {
		t.Errorf("restore result %+v, want the 2 good files restored", rr)
	}
	if _, err := os.Lstat(filepath.Join(target, "victim.bin")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("victim.bin exists in the target after a failed restore (err %v)", err)
	}
	noTempFiles(t, target)
	for _, name := range []string{"good1.bin", "sub/good2.bin"} {
		want, _ := os.ReadFile(filepath.Join(src, name))
		got, err := os.ReadFile(filepath.Join(target, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: restored %d bytes (err %v), want the %d bytes of the source", name, len(got), err, len(want))
		}
	}
}

func TestWrongPassword(t *testing.T) {
	dir := t.TempDir()
	testkit.InitRepo(t, dir, testkit.RepoOptions())
	_, err := openRepo(t, dir, []byte("not the password"))
	if !errors.Is(err, repo.ErrWrongPassword) {
		t.Fatalf("open with a wrong password: err = %v, want repo.ErrWrongPassword", err)
	}
	if _, err := openRepo(t, dir, []byte(testkit.Password)); err != nil {
		t.Fatalf("open with the right password: %v", err)
	}
}

func TestRestoreRefusesToOverwrite(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("from the snapshot"), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "b.txt"), []byte("also from the snapshot"), 0o644)
	res := backup(t, b.engine, "ow-1", src)

	target := t.TempDir()
	testkit.WriteFile(t, filepath.Join(target, "a.txt"), []byte("precious local edit"), 0o644)
	_, err := b.engine.Restore(context.Background(), "r1", brr.RestoreJob{Snapshot: res.Snapshot, Target: target}, nil)
	if err == nil || !strings.Contains(err.Error(), "/a.txt") || !strings.Contains(err.Error(), "overwrite") {
		t.Fatalf("restore over an existing file: err = %v, want one naming /a.txt and overwrite", err)
	}
	if got, _ := os.ReadFile(filepath.Join(target, "a.txt")); string(got) != "precious local edit" {
		t.Fatalf("a.txt = %q after a refused restore", got)
	}
	if got, _ := os.ReadFile(filepath.Join(target, "b.txt")); string(got) != "also from the snapshot" {
		t.Fatalf("b.txt = %q, want it restored", got)
	}
	noTempFiles(t, target)
	// The failed restore leaves its marker, for a retry of job r1 to resume it, and says so.
	if _, serr := os.Lstat(filepath.Join(target, ".brr-restore-r1")); serr != nil || !strings.Contains(err.Error(), ".brr-restore-r1") {
		t.Fatalf("after a failed restore: marker %v, error %q; want the marker there and named", serr, err)
	}
	if err := os.Remove(filepath.Join(target, ".brr-restore-r1")); err != nil {
		t.Fatal(err)
	}

	_, err = b.engine.Restore(context.Background(), "r2", brr.RestoreJob{Snapshot: res.Snapshot, Target: target, Overwrite: true}, nil)
	if err != nil {
		t.Fatalf("restore with overwrite: %v", err)
	}
	compareTrees(t, src, target)
}

// TestRestoreIntoNonEmptyDirSummarizes: a restore into a directory that holds the
// snapshot's files already says so in one line, with the count, the first few paths and
// the real flag (--overwrite), not one warning per file.
func TestRestoreIntoNonEmptyDirSummarizes(t *testing.T) {
	b := setup(t)
	src, target := t.TempDir(), t.TempDir()
	for i := range 40 {
		name := fmt.Sprintf("f%02d.txt", i)
		testkit.WriteFile(t, filepath.Join(src, name), []byte("from the snapshot "+name), 0o644)
		testkit.WriteFile(t, filepath.Join(target, name), []byte("local"), 0o644)
	}
	res := backup(t, b.engine, "ne-1", src)
	out, err := b.engine.Restore(context.Background(), "ne-r1", brr.RestoreJob{Snapshot: res.Snapshot, Target: target}, nil)
	if err == nil || !brr.IsPermanent(err) {
		t.Fatalf("restore into a full directory: %v, want a permanent failure", err)
	}
	if out == nil || len(out.Warnings) != 1 {
		t.Fatalf("warnings = %+v, want one summary line", out)
	}
	w := out.Warnings[0]
	for _, want := range []string{"40 entries exist in the target", "/f00.txt", "and 35 more", "--overwrite"} {
		if !strings.Contains(w, want) || !strings.Contains(err.Error(), want) {
			t.Errorf("warning %q / error %q lacks %q", w, err, want)
		}
	}
	if strings.Contains(w, "/f39.txt") {
		t.Errorf("warning lists every path: %q", w)
	}
}

// saveRawTree stores data as a tree blob as it is, bypassing EncodeTree's checks, the way
// a hostile writer of the repository could.
func saveRawTree(t *testing.T, r *repo.Repository, data []byte) repo.ID {
	t.Helper()
	id := r.BlobID(data)
	if _, _, err := r.SaveBlob(context.Background(), repo.TreeBlob, id, data); err != nil {
		t.Fatal(err)
	}
	return id
}

func commitTree(t *testing.T, r *repo.Repository, jobID string, tree repo.ID) string {
	t.Helper()
	ctx := context.Background()
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	sn := &repo.Snapshot{ID: r.SnapshotIDFor(jobID), Time: time.Now(), Host: "evil", Source: "/evil", Tree: tree, JobID: jobID}
	if err := r.SaveSnapshot(ctx, sn); err != nil {
		t.Fatal(err)
	}
	return sn.ID.String()
}

func TestRestoreRefusesEscapingSnapshots(t *testing.T) {
	b := setup(t)
	r := b.repo
	ctx := context.Background()
	content := []byte("written by a malicious snapshot")
	blob := r.BlobID(content)
	if _, _, err := r.SaveBlob(ctx, repo.DataBlob, blob, content); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	fileNode := func(name string) *repo.Node {
		return &repo.Node{Name: name, Type: repo.NodeFile, Mode: 0o644, ModTime: now, Size: int64(len(content)), Content: []repo.ID{blob}}
	}
	inner, err := r.SaveTree(ctx, &repo.Tree{Nodes: []*repo.Node{fileNode("pwned")}})
	if err != nil {
		t.Fatal(err)
	}

	// The repository refuses to write such trees at all.
	for _, name := range []string{"..", ".", "a/b", "/abs", ""} {
		if _, err := r.SaveTree(ctx, &repo.Tree{Nodes: []*repo.Node{fileNode(name)}}); err == nil {
			t.Errorf("SaveTree accepted a node named %q", name)
		}
	}
	dup := &repo.Tree{Nodes: []*repo.Node{
		{Name: "a", Type: repo.NodeSymlink, Mode: uint32(os.ModeSymlink | 0o777), ModTime: now, LinkTarget: "/tmp"},
		{Name: "a", Type: repo.NodeDir, Mode: uint32(os.ModeDir | 0o755), ModTime: now, Subtree: inner},
	}}
	if _, err := r.SaveTree(ctx, dup); err == nil {
		t.Errorf("SaveTree accepted two nodes named %q", "a")
	}

	// A hostile writer can still store raw bytes: encode good trees, then rename nodes.
	outside := t.TempDir()
	raw := func(tree *repo.Tree, from, to string) []byte {
		data, err := repo.EncodeTree(tree)
		if err != nil {
			t.Fatal(err)
		}
		if len(from) != len(to) || bytes.Count(data, []byte(from)) != 1 {
			t.Fatalf("cannot rewrite %q to %q", from, to)
		}
		return bytes.Replace(data, []byte(from), []byte(to), 1)
	}
	cases := []struct {
		name string
		tree []byte
	}{
		{"dotdot dir", raw(&repo.Tree{Nodes: []*repo.Node{{Name: "QQ", Type: repo.NodeDir, Mode: uint32(os.ModeDir | 0o755), ModTime: now, Subtree: inner}}}, "QQ", "..")},
		{"slash name", raw(&repo.Tree{Nodes: []*repo.Node{fileNode("QQQQQ")}}, "QQQQQ", "../zz")},
		{"absolute name", raw(&repo.Tree{Nodes: []*repo.Node{fileNode(strings.Repeat("Q", len(outside)+6))}}, strings.Repeat("Q", len(outside)+6), outside+"/pwned")},
		{"symlink then dir of the same name", raw(&repo.Tree{Nodes: []*repo.Node{
			{Name: "a", Type: repo.NodeSymlink, Mode: uint32(os.ModeSymlink | 0o777), ModTime: now, LinkTarget: outside},
			{Name: "b", Type: repo.NodeDir, Mode: uint32(os.ModeDir | 0o755), ModTime: now, Subtree: inner},
		}}, "\x01b", "\x01a")},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			snap := commitTree(t, r, "evil-"+string(rune('a'+i)), saveRawTree(t, r, c.tree))
			target := filepath.Join(t.TempDir(), "target")
			_, err := b.engine.Restore(ctx, "r", brr.RestoreJob{Snapshot: snap, Target: target}, nil)
			if err == nil {
				t.Fatalf("restore of a snapshot with %s succeeded", c.name)
			}
			if !brr.IsPermanent(err) {
				t.Errorf("err = %v, want permanent", err)
			}
			t.Logf("refused: %v", err)
			assertNothingOutside(t, outside, target)
		})
	}

	// A symlink already in the target is never followed into: a snapshot directory of the
	// same name fails (or, with Overwrite, replaces the link).
	t.Run("existing symlink in target", func(t *testing.T) {
		root, err := r.SaveTree(ctx, &repo.Tree{Nodes: []*repo.Node{{Name: "a", Type: repo.NodeDir, Mode: uint32(os.ModeDir | 0o755), ModTime: now, Subtree: inner}}})
		if err != nil {
			t.Fatal(err)
		}
		snap := commitTree(t, r, "evil-link", root)
		target := t.TempDir()
		if err := os.Symlink(outside, filepath.Join(target, "a")); err != nil {
			t.Fatal(err)
		}
		_, err = b.engine.Restore(ctx, "r", brr.RestoreJob{Snapshot: snap, Target: target}, nil)
		if err == nil || !strings.Contains(err.Error(), "/a") {
			t.Fatalf("restore through an existing symlink: err = %v, want one naming /a", err)
		}
		assertNothingOutside(t, outside, target)
		if _, err := b.engine.Restore(ctx, "r", brr.RestoreJob{Snapshot: snap, Target: target, Overwrite: true}, nil); err != nil {
			t.Fatalf("restore with overwrite: %v", err)
		}
		assertNothingOutside(t, outside, target)
		if got, err := os.ReadFile(filepath.Join(target, "a", "pwned")); err != nil || !bytes.Equal(got, content) {
			t.Fatalf("a/pwned = %q, %v; want it restored inside the target", got, err)
		}
	})
}

func assertNothingOutside(t *testing.T, outside, target string) {
	t.Helper()
	entries, err := os.ReadDir(outside)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("restore into %s wrote %d entries into %s", target, len(entries), outside)
	}
	if _, err := os.Lstat(filepath.Join(filepath.Dir(target), "pwned")); err == nil {
		t.Errorf("restore wrote pwned next to the target")
	}
}

func TestRestoreFallsBackToAReplica(t *testing.T) {
	ctx := context.Background()
	b := setupReplica(t)
	src := sourceOfDirs(t, 3, 3, 40<<10)
	if err := os.Symlink("d0/f0", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	snap := backup(t, b.engine, "fb-1", src).Snapshot
	replicate(t, b.engine, "fb-repl", brr.ReplicateJob{Snapshot: snap, To: "offsite"})

	t.Run("primary unreadable", func(t *testing.T) {
		b.loads.FailLoad(repo.SnapshotFile, 0, errors.New("disk on fire"))
		defer b.loads.Reset()
		target := filepath.Join(t.TempDir(), "out")
		res, err := b.engine.Restore(ctx, "fb-unreadable", brr.RestoreJob{Snapshot: "latest", Target: target}, nil)
		if err != nil {
			t.Fatalf("restore with the primary unreadable: %v", err)
		}
		if res.Repo != "offsite" || res.FellBackFrom != "local" || !strings.Contains(res.FallbackReason, "disk on fire") {
			t.Errorf("result %+v, want it restored from offsite, falling back from local, saying why", res)
		}
		if len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "replica offsite") {
			t.Errorf("warnings %q, want one that names the replica", res.Warnings)
		}
		compareTrees(t, src, target)
	})

	t.Run("damaged blob", func(t *testing.T) {
		// Damage the blob of d1/f1 in the primary: the primary restores the rest, the
		// replica what the primary could not, without tripping over what the first
		// attempt wrote.
		id, _ := repo.ParseID(snap)
		sn, _ := b.local.LoadSnapshot(ctx, id)
		root, _ := b.local.LoadTree(ctx, sn.Tree)
		d1, _ := b.local.LoadTree(ctx, root.Find("d1").Subtree)
		damageBlob(t, b.local, b.dir, d1.Find("f1").Content[0])

		target := filepath.Join(t.TempDir(), "out")
		res, err := b.engine.Restore(ctx, "fb-damaged", brr.RestoreJob{Snapshot: snap[:10], Target: target}, nil)
		if err != nil {
			t.Fatalf("restore with a damaged blob: %v", err)
		}
		if res.Repo != "offsite" || res.FellBackFrom != "local" || !strings.Contains(res.FallbackReason, "/d1/f1") {
			t.Errorf("result %+v, want a fallback that names /d1/f1", res)
		}
		if res.Files != 9 || res.Symlinks != 1 {
			t.Errorf("result counts %d files, %d symlinks; want 9 and 1 over both attempts", res.Files, res.Symlinks)
		}
		compareTrees(t, src, target)
		noTempFiles(t, target)

		// Without a replica that has it, the error says what was tried.
		other := t.TempDir()
		testkit.WriteFile(t, filepath.Join(other, "f"), []byte("only in local"), 0o644)
		lonely := backup(t, b.engine, "fb-lonely", other).Snapshot
		lid, _ := repo.ParseID(lonely)
		lsn, _ := b.local.LoadSnapshot(ctx, lid)
		ltree, _ := b.local.LoadTree(ctx, lsn.Tree)
		damageBlob(t, b.local, b.dir, ltree.Find("f").Content[0])
		_, err = b.engine.Restore(ctx, "fb-lonely", brr.RestoreJob{Snapshot: lonely, Target: filepath.Join(t.TempDir(), "x")}, nil)
		if err == nil || !brr.IsPermanent(err) || !strings.Contains(err.Error(), "no replica could give it instead: replica offsite") {
			t.Errorf("restore of a damaged snapshot no replica has: err = %v, want a permanent error naming offsite", err)
		}

		// With no replicas configured, the error is the restore's own.
		b.engine.ReplicateTo = nil
		defer func() { b.engine.ReplicateTo = map[string][]string{"local": {"offsite"}} }()
		_, err = b.engine.Restore(ctx, "fb-none", brr.RestoreJob{Snapshot: lonely, Target: filepath.Join(t.TempDir(), "y")}, nil)
		if err == nil || strings.Contains(err.Error(), "replica") || !strings.Contains(err.Error(), "/f") {
			t.Errorf("restore without replicas: err = %v, want the failed file and no word of replicas", err)
		}
	})

	t.Run("ambiguous prefix", func(t *testing.T) {
		// Two snapshots of local start with abcd; offsite has one that does. The prefix
		// means no single snapshot, so no replica is asked to resolve it.
		id, _ := repo.ParseID(snap)
		sn, _ := b.local.LoadSnapshot(ctx, id)
		copied, err := b.offsite.LoadSnapshot(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range []*repo.Repository{b.local, b.local, b.offsite} {
			cp := *sn
			if r == b.offsite {
				cp = *copied
			}
			cp.ID, _ = repo.ParseID(fmt.Sprintf("abcd%060d", i))
			if err := r.SaveSnapshot(ctx, &cp); err != nil {
				t.Fatal(err)
			}
		}
		target := filepath.Join(t.TempDir(), "out")
		_, err = b.engine.Restore(ctx, "fb-ambiguous", brr.RestoreJob{Snapshot: "abcd", Target: target}, nil)
		if !brr.IsPermanent(err) || !strings.Contains(err.Error(), "ambiguous") || strings.Contains(err.Error(), "replica") {
			t.Errorf("restore of an ambiguous prefix: err = %v, want a permanent error that does not try replicas", err)
		}
		if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("restore of an ambiguous prefix made the target: %v", err)
		}
	})
}

// stallOnceWritten is a backend that gives a restore its loads of file data (pack loads
// larger than a tree) until a file is in target, then holds every later one until its
// context is done and fails it as cancelled: the restore has written some files and
// waits for the rest, until a drain (SIGTERM cancels the job's context) stops it midway.
// (Holding all but the first load instead would race: the loader's reads ahead may
// reach the backend before the writer's own read, and no file would be written.)
type stallOnceWritten struct {
	repo.Backend
	target string
}

func (b *stallOnceWritten) Load(ctx context.Context, h repo.Handle, offset, length int64) ([]byte, error) {
	if h.Type == repo.PackFile && length > 64<<10 {
		if names, _ := filepath.Glob(filepath.Join(b.target, "d*", "f*")); len(names) > 0 {
			<-ctx.Done()
			return nil, ctx.Err()
		}
	}
	return b.Backend.Load(ctx, h, offset, length)
}

// A restore stopped midway, as a drain stops it, is run again under the same job id (the
// job redelivered): it keeps what the first attempt wrote, restores the rest, and the
// target is then the source, byte for byte, with its modes and mtimes. A file in the way
// that the first attempt did not write still fails without overwrite.
func TestInterruptedRestoreResumes(t *testing.T) {
	b := setup(t)
	src := sourceOfDirs(t, 6, 10, 400<<10) // 24 MiB: many ranges of a pack
	if err := os.Symlink("d0/f0", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "d1", "f1"), filepath.Join(src, "hard")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(src, "d2", "f2"), time.Now(), time.Date(2020, 2, 2, 2, 2, 2, 2, time.UTC)); err != nil {
		t.Fatal(err)
	}
	snap := backup(t, b.engine, "ir-backup", src).Snapshot
	target := filepath.Join(t.TempDir(), "out")
	job := brr.RestoreJob{Snapshot: snap, Target: target}

	// First attempt, on a worker whose repository handle gives the restore file data
	// until a file is written, and no more: the worker drains then.
	fb, err := file.Open(b.dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, err := repo.Open(ctx, &stallOnceWritten{Backend: fb, target: target}, []byte(testkit.Password), testkit.RepoOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	draining := &jobs.Engine{Repos: map[string]*repo.Repository{"local": r}, Host: "testhost", Worker: "worker-1"}
	go func() {
		testkit.WaitFor(60*time.Second, func() bool {
			names, _ := filepath.Glob(filepath.Join(target, "d*", "f*"))
			return len(names) > 0
		})
		cancel()
	}()
	_, err = draining.Restore(ctx, "ir-1", job, nil)
	if !errors.Is(err, context.Canceled) || brr.IsPermanent(err) {
		t.Fatalf("restore stopped midway: err = %v, want context.Canceled, not permanent", err)
	}
	var written []string
	for d := range 6 {
		for f := range 10 {
			rel := fmt.Sprintf("d%d/f%d", d, f)
			if _, err := os.Lstat(filepath.Join(target, rel)); err == nil {
				written = append(written, rel)
			}
		}
	}
	if len(written) == 0 || len(written) == 60 {
		t.Fatalf("the first attempt wrote %d of 60 files, want some", len(written))
	}
	noTempFiles(t, target)

	// A foreign file where the first attempt wrote nothing is still refused.
	var foreign string
	for d := range 6 {
		for f := range 10 {
			if rel := fmt.Sprintf("d%d/f%d", d, f); foreign == "" && !slices.Contains(written, rel) {
				foreign = rel
			}
		}
	}
	testkit.WriteFile(t, filepath.Join(target, foreign), []byte("foreign"), 0o644)
	_, err = b.engine.Restore(context.Background(), "ir-1", job, nil)
	if err == nil || !brr.IsPermanent(err) || !strings.Contains(err.Error(), "1 entries exist in the target and were left as they are (/"+foreign+")") {
		t.Fatalf("resumed restore with a foreign file at /%s: err = %v, want it refused", foreign, err)
	}
	if got, _ := os.ReadFile(filepath.Join(target, foreign)); string(got) != "foreign" {
		t.Fatalf("the foreign file was replaced")
	}

	// The same job again, once the foreign file is gone: done.
	if err := os.Remove(filepath.Join(target, foreign)); err != nil {
		t.Fatal(err)
	}
	res, err := b.engine.Restore(context.Background(), "ir-1", job, nil)
	if err != nil {
		t.Fatalf("restore run again: %v", err)
	}
	if res.Files != 61 || res.Symlinks != 1 {
		t.Errorf("result counts %d files, %d symlinks; want 61 and 1", res.Files, res.Symlinks)
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "resumed an earlier attempt") {
		t.Errorf("warnings %q, want one that says the restore resumed", res.Warnings)
	}
	compareTrees(t, src, target) // the marker is gone too
	noTempFiles(t, target)
}
