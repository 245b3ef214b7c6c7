package e2e_test

import (
	"archive/tar"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// manifestEntry is what the test itself knows of one path of a source tree.
type manifestEntry struct {
	typ      string
	mode     fs.FileMode
	size     int64
	mtime    time.Time
	uid, gid uint32
	sum      string // a file's content
	target   string // a symlink's
}

// manifest walks dir as it is now: path from dir (with a leading "/") → entry; dir itself
// is not in it.
func manifest(t *testing.T, dir string) map[string]manifestEntry {
	t.Helper()
	out := map[string]manifestEntry{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := manifestEntry{mode: fi.Mode(), size: fi.Size(), mtime: fi.ModTime(), uid: st.Uid, gid: st.Gid}
		switch {
		case fi.IsDir():
			e.typ = "dir"
		case fi.Mode()&fs.ModeSymlink != 0:
			e.typ = "symlink"
			if e.target, err = os.Readlink(p); err != nil {
				return err
			}
		default:
			e.typ = "file"
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(data)
			e.sum = hex.EncodeToString(s[:])
		}
		out["/"+filepath.ToSlash(strings.TrimPrefix(p, dir+"/"))] = e
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// expectedDiff is the diff of two manifests, as brr diff should say it: one line per
// path, "change path old-size new-size fields" (sizes of files only).
func expectedDiff(a, b map[string]manifestEntry) []string {
	paths := map[string]bool{}
	for p := range a {
		paths[p] = true
	}
	for p := range b {
		paths[p] = true
	}
	var out []string
	size := func(e manifestEntry) int64 {
		if e.typ == "file" {
			return e.size
		}
		return 0
	}
	for p := range paths {
		ea, ina := a[p]
		eb, inb := b[p]
		switch {
		case !ina:
			out = append(out, fmt.Sprintf("added %s 0 %d ", p, size(eb)))
		case !inb:
			out = append(out, fmt.Sprintf("removed %s %d 0 ", p, size(ea)))
		default:
			var fields []string
			if ea.typ != eb.typ {
				fields = []string{"type"}
			} else {
				if ea.typ == "file" && ea.sum != eb.sum {
					fields = append(fields, "content")
				}
				if ea.target != eb.target {
					fields = append(fields, "target")
				}
				if ea.mode != eb.mode {
					fields = append(fields, "mode")
				}
				if !ea.mtime.Equal(eb.mtime) {
					fields = append(fields, "mtime")
				}
				if ea.uid != eb.uid || ea.gid != eb.gid {
					fields = append(fields, "owner")
				}
			}
			if len(fields) == 0 {
				continue
			}
			kind := brr.ChangeMetadata
			if slices.Contains(fields, "content") || slices.Contains(fields, "type") || slices.Contains(fields, "target") {
				kind = brr.ChangeModified
			}
			out = append(out, fmt.Sprintf("%s %s %d %d %s", kind, p, size(ea), size(eb), strings.Join(fields, ",")))
		}
	}
	sort.Strings(out)
	return out
}

// jsonLines decodes the lines of out into a []T.
func jsonLines[T any](t *testing.T, out string) []T {
	t.Helper()
	var list []T
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var v T
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		list = append(list, v)
	}
	return list
}

// TestBrowse backs a tree up with a real worker, changes it (adds, removes, rewrites,
// chmods, touches, retargets a symlink), backs it up again, and browses both snapshots
// through the CLI by id prefixes: ls (one directory, recursive, long), find (newest
// first, by name, by path, in one snapshot), diff (checked against the test's own diff
// of the two trees as they were), dump (a file of each snapshot, a directory as tar),
// and paths that try to escape, which are refused with a clear error, also when sent to
// the worker directly, past the client's own check.
func TestBrowse(t *testing.T) {
	w := bins.StartWorker(t, testkit.WorkerOptions{})
	cli := func(args ...string) (string, string, int) {
		t.Helper()
		return bins.RunCLI(t, nil, append([]string{"--nats", w.NATSURL}, args...)...)
	}
	mustCLI := func(args ...string) string {
		t.Helper()
		out, errOut, code := cli(args...)
		if code != 0 {
			t.Fatalf("brr %s: exit %d\n%s\n%s", strings.Join(args, " "), code, out, errOut)
		}
		return out
	}

	src := t.TempDir()
	old := time.Date(2024, 5, 1, 12, 0, 0, 123456789, time.UTC)
	rng := rand.New(rand.NewPCG(7, 7))
	random := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		return b
	}
	files := map[string][]byte{
		"a.txt": []byte("alpha\n"), "b.bin": random(300 << 10),
		"keep/k1.txt": []byte("k1\n"), "keep/k2.txt": []byte("k2\n"),
		"gone/g1.txt": []byte("g1\n"), "gone/sub/g2.txt": []byte("g2\n"),
		"mod/m1.txt": []byte("one\n"), "mod/m2.txt": []byte("two\n"), "mod/m3.txt": []byte("three\n"),
	}
	for rel, data := range files {
		testkit.WriteFile(t, filepath.Join(src, rel), data, 0o644)
	}
	if err := os.Symlink("a.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	_ = filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type()&fs.ModeSymlink == 0 {
			err = os.Chtimes(p, old, old)
		}
		return err
	})
	before := manifest(t, src)
	snap1 := backupWait(t, w, src)

	// The changes.
	testkit.WriteFile(t, filepath.Join(src, "added.txt"), []byte("new\n"), 0o600)
	testkit.WriteFile(t, filepath.Join(src, "new/n1.txt"), random(70<<10), 0o644)
	if err := os.RemoveAll(filepath.Join(src, "gone")); err != nil {
		t.Fatal(err)
	}
	testkit.WriteFile(t, filepath.Join(src, "a.txt"), []byte("alpha, longer now\n"), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "mod/m1.txt"), []byte("ONE\n"), 0o644) // same size, new content
	if err := os.Chmod(filepath.Join(src, "mod/m2.txt"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(filepath.Join(src, "mod/m3.txt"), old.Add(time.Hour), old.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("b.bin", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	after := manifest(t, src)
	snap2 := backupWait(t, w, src)
	p1, p2 := snap1[:6], snap2[:6]
	if p1 == p2 {
		t.Fatalf("snapshots %s and %s share a 6-character prefix; run again", snap1, snap2)
	}

	t.Run("ls", func(t *testing.T) {
		got := jsonLines[brr.TreeEntry](t, mustCLI("--json", "ls", p2, "/mod"))
		var names []string
		for _, e := range got {
			names = append(names, e.Name)
			want := after["/mod/"+e.Name]
			if e.Path != "/mod/"+e.Name || e.Size != want.size || e.Type != want.typ || fs.FileMode(e.Mode) != want.mode || !e.ModTime.Equal(want.mtime) {
				t.Errorf("ls entry %+v, the tree had %+v", e, want)
			}
		}
		if want := []string{"m1.txt", "m2.txt", "m3.txt"}; !slices.Equal(names, want) {
			t.Errorf("ls /mod = %v, want %v", names, want)
		}
		// Recursive, from the root, is every path of the tree.
		var paths []string
		for _, e := range jsonLines[brr.TreeEntry](t, mustCLI("--json", "ls", p1, "--recursive")) {
			paths = append(paths, e.Path)
		}
		var want []string
		for p := range before {
			want = append(want, p)
		}
		sort.Strings(want)
		if !slices.Equal(paths, want) {
			t.Errorf("ls --recursive of the first snapshot:\n got %v\nwant %v", paths, want)
		}
		// A file lists as itself; the long form shows modes and the symlink's target.
		if got := jsonLines[brr.TreeEntry](t, mustCLI("--json", "ls", p2, "b.bin")); len(got) != 1 || got[0].Size != 300<<10 {
			t.Errorf("ls of a file = %+v", got)
		}
		long := mustCLI("ls", p2, "--long")
		if !strings.Contains(long, "link -> b.bin") || !strings.Contains(long, "-rw-------") || !strings.Contains(long, "mod/") {
			t.Errorf("ls --long:\n%s", long)
		}
		if _, errOut, code := cli("ls", p2, "/nope"); code == 0 || !strings.Contains(errOut, "no /nope in the snapshot") {
			t.Errorf("ls of a missing path: exit %d, %s", code, errOut)
		}
	})

	t.Run("find", func(t *testing.T) {
		got := jsonLines[brr.FindMatch](t, mustCLI("--json", "find", "k1.txt"))
		if len(got) != 2 || got[0].Snapshot != snap2 || got[1].Snapshot != snap1 || got[0].Path != "/keep/k1.txt" {
			t.Errorf("find k1.txt = %+v, want it in %s then %s", got, snap2, snap1)
		}
		got = jsonLines[brr.FindMatch](t, mustCLI("--json", "find", "/gone/*"))
		var paths []string
		for _, m := range got {
			if m.Snapshot != snap1 {
				t.Errorf("find /gone/* found %s in %s, which has no /gone", m.Path, m.Snapshot)
			}
			paths = append(paths, m.Path)
		}
		if want := []string{"/gone/g1.txt", "/gone/sub"}; !slices.Equal(paths, want) {
			t.Errorf("find /gone/* = %v, want %v", paths, want)
		}
		got = jsonLines[brr.FindMatch](t, mustCLI("--json", "find", "*.txt", "--snapshot", p1))
		if len(got) != 8 {
			t.Errorf("find *.txt --snapshot %s: %d matches, want 8: %+v", p1, len(got), got)
		}
		if out := mustCLI("find", "no-such-*"); strings.Contains(out, "/") {
			t.Errorf("find of nothing printed %q", out)
		}
	})

	t.Run("diff", func(t *testing.T) {
		var got []string
		for _, c := range jsonLines[brr.Change](t, mustCLI("--json", "diff", p1, p2)) {
			if c.Type != "file" {
				c.OldSize, c.NewSize = 0, 0
			}
			got = append(got, fmt.Sprintf("%s %s %d %d %s", c.Change, c.Path, c.OldSize, c.NewSize, strings.Join(c.Fields, ",")))
		}
		sort.Strings(got)
		want := expectedDiff(before, after)
		if !slices.Equal(got, want) {
			t.Errorf("brr diff:\n  %s\nthe trees' diff:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
		}
		// The same snapshot twice: nothing. The text form marks each kind.
		if out := mustCLI("--json", "diff", p2, snap2); strings.TrimSpace(out) != "" {
			t.Errorf("diff of a snapshot with itself = %q", out)
		}
		text := mustCLI("diff", p1, p2)
		for _, line := range []string{"+  /added.txt", "-  /gone/", "M  /mod/m1.txt", "U  /mod/m2.txt  (mode)", "U  /mod/m3.txt  (mtime)", "M  /link"} {
			if !strings.Contains(text, line) {
				t.Errorf("diff does not say %q:\n%s", line, text)
			}
		}
	})

	t.Run("dump", func(t *testing.T) {
		if got := mustCLI("dump", p2, "/a.txt"); got != "alpha, longer now\n" {
			t.Errorf("dump of a.txt in the second snapshot = %q", got)
		}
		if got := mustCLI("dump", p1, "a.txt"); got != "alpha\n" {
			t.Errorf("dump of a.txt in the first snapshot = %q", got)
		}
		if got := mustCLI("dump", p1, "/b.bin"); got != string(files["b.bin"]) {
			t.Errorf("dump of b.bin: %d bytes, not the file's", len(got))
		}
		tr := tar.NewReader(strings.NewReader(mustCLI("dump", p1, "/gone")))
		got := map[string]string{}
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("dump of a directory is not a tar stream: %v", err)
			}
			data, _ := io.ReadAll(tr)
			got[h.Name] = string(data)
			if h.Typeflag == tar.TypeReg && !h.ModTime.Equal(old.Truncate(time.Second)) && !h.ModTime.Equal(old) {
				t.Errorf("tar entry %s has mtime %s, want %s", h.Name, h.ModTime, old)
			}
		}
		want := map[string]string{"gone/": "", "gone/g1.txt": "g1\n", "gone/sub/": "", "gone/sub/g2.txt": "g2\n"}
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("tar of /gone = %v, want %v", got, want)
		}
		if _, errOut, code := cli("dump", p2, "/link"); code == 0 || !strings.Contains(errOut, "symlink") {
			t.Errorf("dump of a symlink: exit %d, %s", code, errOut)
		}
	})

	t.Run("escape", func(t *testing.T) {
		for _, p := range []string{"..", "../etc/passwd", "/mod/../../etc/passwd", "/../a.txt", "keep/../../../etc"} {
			for _, cmd := range [][]string{{"ls", p2, p}, {"dump", p2, p}} {
				out, errOut, code := cli(cmd...)
				if code == 0 || !strings.Contains(errOut, `".."`) || out != "" {
					t.Errorf("brr %s: exit %d, stdout %q, stderr %q; want a refusal naming \"..\"", strings.Join(cmd, " "), code, out, errOut)
				}
			}
		}
		// An absolute trick stays inside the snapshot: //etc/passwd is /etc/passwd of the
		// snapshot, which has none.
		if _, errOut, code := cli("dump", p2, "//etc/passwd"); code == 0 || !strings.Contains(errOut, "no /etc in the snapshot") {
			t.Errorf("dump //etc/passwd: exit %d, %s", code, errOut)
		}
		// Past the client: the worker refuses too.
		nc, _ := testkit.Connect(t, w.NATSURL)
		for _, q := range []string{"ls", "dump"} {
			req, _ := json.Marshal(map[string]any{"v": 1, "snapshot": snap2, "path": "/mod/../../../etc/passwd"})
			msg, err := nc.Request(brr.Subjects{}.API("default", q), req, 30*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var reply brr.StreamOpened
			if err := json.Unmarshal(msg.Data, &reply); err != nil {
				t.Fatal(err)
			}
			if reply.Subject != "" || reply.Code != brr.CodeInvalid || !strings.Contains(reply.Error, `".."`) {
				t.Errorf("%s of an escaping path, sent to the worker directly: %+v", q, reply)
			}
		}
	})
}

// TestDumpLargeFile dumps a 200 MiB file from a snapshot of a real worker to a file and
// compares it by hash with the source: it came in hundreds of chunks, each asked for.
func TestDumpLargeFile(t *testing.T) {
	if testing.Short() {
		t.Skip("200 MiB")
	}
	w := bins.StartWorker(t, testkit.WorkerOptions{})
	src := t.TempDir()
	f, err := os.Create(filepath.Join(src, "big.bin"))
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.New()
	rng := rand.New(rand.NewPCG(42, 42))
	buf := make([]byte, 1<<20)
	for range 200 {
		for i := 0; i < len(buf); i += 8 {
			v := rng.Uint64()
			for j := range 8 {
				buf[i+j] = byte(v >> (8 * j))
			}
		}
		want.Write(buf)
		if _, err := f.Write(buf); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	snap := backupWait(t, w, src)

	out, err := os.Create(filepath.Join(t.TempDir(), "dumped"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	var errOut bytes.Buffer
	cmd := exec.Command(bins.CLI, "--nats", w.NATSURL, "dump", snap[:8], "/big.bin")
	cmd.Env = testkit.Environ()
	cmd.Stdout, cmd.Stderr = out, &errOut
	start := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("brr dump: %v\n%s", err, errOut.String())
	}
	elapsed := time.Since(start)
	if _, err := out.Seek(0, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	got := sha256.New()
	n, err := io.Copy(got, out)
	if err != nil {
		t.Fatal(err)
	}
	if n != 200<<20 || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		t.Fatalf("dumped %d bytes with SHA-256 %x, the file has %d bytes, %x", n, got.Sum(nil), 200<<20, want.Sum(nil))
	}
	t.Logf("dumped 200 MiB in %s (%.0f MiB/s)", elapsed.Round(time.Millisecond), 200/elapsed.Seconds())
}
