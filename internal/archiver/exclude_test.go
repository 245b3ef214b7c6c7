package archiver_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/brr-dev/brr/internal/archiver"
	"github.com/brr-dev/brr/internal/excludes"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/testkit"
)

// run archives src into r with opts and flushes.
func run(t *testing.T, r *repo.Repository, src string, opts archiver.Options) *archiver.Result {
	t.Helper()
	ctx := context.Background()
	res, err := archiver.New(testkit.StartWriter(t, r), src, opts).Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	return res
}

// dryRun walks src with opts as a dry run, and returns the result and the files it
// would read, sorted.
func dryRun(t *testing.T, src string, opts archiver.Options) (*archiver.Result, []string) {
	t.Helper()
	var mu sync.Mutex
	var files []string
	opts.DryRun = true
	opts.WouldRead = func(rel string, _ int64) {
		mu.Lock()
		files = append(files, rel)
		mu.Unlock()
	}
	res, err := archiver.New(nil, src, opts).Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(files)
	return res, files
}

// treePaths lists the snapshot tree id: files by path, directories with a trailing "/".
func treePaths(t *testing.T, r *repo.Repository, id repo.ID, prefix string) []string {
	t.Helper()
	tree, err := r.LoadTree(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range tree.Nodes {
		p := prefix + n.Name
		if n.Type == repo.NodeDir {
			out = append(out, p+"/")
			out = append(out, treePaths(t, r, n.Subtree, p+"/")...)
			continue
		}
		out = append(out, p)
	}
	return out
}

func files(paths []string) []string {
	var out []string
	for _, p := range paths {
		if !strings.HasSuffix(p, "/") {
			out = append(out, p)
		}
	}
	return out
}

func mkfifo(t *testing.T, path string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(path, 0o644); err != nil {
		t.Fatal(err)
	}
}

// opens watches directories with inotify and tells which of them, or of the files in
// them, were opened: the kernel's own account, whoever opened them.
type opens struct {
	fd  int
	wds map[int32]string
}

func watchOpens(t *testing.T, dirs ...string) *opens {
	t.Helper()
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Skipf("inotify: %v (it tells whether the archiver opened a path)", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	o := &opens{fd: fd, wds: map[int32]string{}}
	for _, d := range dirs {
		wd, err := unix.InotifyAddWatch(fd, d, unix.IN_OPEN)
		if err != nil {
			t.Fatalf("watch %s: %v", d, err)
		}
		o.wds[int32(wd)] = d
	}
	return o
}

// opened returns the paths opened since the watch began: a directory (listed) or a file
// in a watched directory.
func (o *opens) opened(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Read(o.fd, buf)
		if errors.Is(err, unix.EAGAIN) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		for off := 0; off+unix.SizeofInotifyEvent <= n; {
			ev := (*unix.InotifyEvent)(unsafe.Pointer(&buf[off]))
			name := string(bytes.TrimRight(buf[off+unix.SizeofInotifyEvent:off+unix.SizeofInotifyEvent+int(ev.Len)], "\x00"))
			out[filepath.Join(o.wds[ev.Wd], name)] = true
			off += unix.SizeofInotifyEvent + int(ev.Len)
		}
	}
}

// An excluded entry is decided from its lstat and never opened: an excluded directory is
// not listed, a file in it is not read, a FIFO in it or excluded by name does not block
// the walk, a file over the size limit is not read. The kernel (inotify) says what was
// opened, and that the files kept were, so the watch does see opens. Running as root
// (as here), a mode-000 file is readable, so it would prove nothing; as another user
// the test also leaves one in the excluded directory, which must not cause a warning.
func TestExcludedEntriesAreNeverOpened(t *testing.T) {
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	src := t.TempDir()
	testkit.WriteFile(t, filepath.Join(src, "keep.txt"), []byte("kept"), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "big.bin"), make([]byte, 2<<20), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "skip", "file"), []byte("excluded"), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "skip", excludes.DefaultIgnoreFile), []byte("!file\n"), 0o644)
	mkfifo(t, filepath.Join(src, "skip", "fifo"))
	mkfifo(t, filepath.Join(src, "pipe"))
	if os.Geteuid() != 0 {
		testkit.WriteFile(t, filepath.Join(src, "skip", "secret"), []byte("unreadable"), 0o000)
	}
	// Should the walk open a FIFO, it would block until a writer comes: this one comes
	// after a while, so that the test fails instead of hanging.
	done := make(chan struct{})
	defer close(done)
	go func() {
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			for _, f := range []string{"pipe", "skip/fifo"} {
				if fd, err := unix.Open(filepath.Join(src, f), unix.O_WRONLY|unix.O_NONBLOCK, 0); err == nil {
					t.Errorf("the archiver opened the excluded FIFO %s", f)
					unix.Close(fd)
				}
			}
		}
	}()

	w := watchOpens(t, src, filepath.Join(src, "skip"))
	res := run(t, r, src, archiver.Options{Excludes: []string{"skip/", "pipe"}, IgnoreFile: excludes.DefaultIgnoreFile, ExcludeLargerThan: 1 << 20})
	opened := w.opened(t)

	for _, p := range []string{"skip", "skip/file", "skip/fifo", "skip/" + excludes.DefaultIgnoreFile, "skip/secret", "pipe", "big.bin"} {
		if opened[filepath.Join(src, p)] {
			t.Errorf("%s was opened; it is excluded", p)
		}
	}
	if !opened[filepath.Join(src, "keep.txt")] || !opened[src] {
		t.Fatalf("opened %v; want the root and keep.txt among them (else the watch sees nothing)", opened)
	}
	if len(res.Warnings) != 0 {
		t.Errorf("warnings %q, want none: nothing excluded is looked at", res.Warnings)
	}
	if got, want := treePaths(t, r, res.Tree, ""), []string{"keep.txt"}; !slices.Equal(got, want) {
		t.Errorf("snapshot holds %q, want %q", got, want)
	}
	if res.Files != 1 || res.FilesExcluded != 2 || res.DirsExcluded != 1 || res.BytesExcluded != 2<<20 {
		t.Errorf("result %+v; want 1 file, 2 files (pipe, big.bin) and 1 dir excluded, %d bytes excluded", res, 2<<20)
	}
}

// A directory with a valid CACHEDIR.TAG is kept with its tag alone; a tag with another
// signature, or one that is not a regular file (a FIFO, which must not block), does not
// count.
func TestExcludeCaches(t *testing.T) {
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	src := t.TempDir()
	sig := "Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag.\n"
	testkit.WriteFile(t, filepath.Join(src, "cache", "CACHEDIR.TAG"), []byte(sig), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "cache", "blob"), []byte("12345"), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "cache", "sub", "x"), []byte("x"), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "cache", excludes.DefaultIgnoreFile), []byte("!blob\n"), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "wrongsig", "CACHEDIR.TAG"), []byte("Signature: 0000"), 0o644)
	testkit.WriteFile(t, filepath.Join(src, "wrongsig", "y"), []byte("y"), 0o644)
	mkfifo(t, filepath.Join(src, "fifotag", "CACHEDIR.TAG"))
	testkit.WriteFile(t, filepath.Join(src, "fifotag", "z"), []byte("z"), 0o644)

	opts := archiver.Options{ExcludeCaches: true, IgnoreFile: excludes.DefaultIgnoreFile}
	res := run(t, r, src, opts)
	want := []string{"cache/", "cache/CACHEDIR.TAG", "fifotag/", "fifotag/z", "wrongsig/", "wrongsig/CACHEDIR.TAG", "wrongsig/y"}
	if got := treePaths(t, r, res.Tree, ""); !slices.Equal(got, want) {
		t.Errorf("snapshot holds %q, want %q", got, want)
	}
	// blob and the ignore file are files, sub a directory; the FIFO tag is warned about.
	if res.FilesExcluded != 2 || res.DirsExcluded != 1 || res.BytesExcluded != int64(5+len("!blob\n")) {
		t.Errorf("result %+v; want 2 files (%d bytes) and 1 dir excluded", res, 5+len("!blob\n"))
	}
	if len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "fifotag") {
		t.Errorf("warnings %q, want one about the FIFO fifotag/CACHEDIR.TAG", res.Warnings)
	}

	// Without the option the cache is backed up.
	res = run(t, r, src, archiver.Options{})
	if got := treePaths(t, r, res.Tree, ""); !slices.Contains(got, "cache/sub/x") || res.FilesExcluded != 0 {
		t.Errorf("without ExcludeCaches: snapshot holds %q, %d files excluded; want cache/sub/x, none", got, res.FilesExcluded)
	}
}

// Files larger than the limit are left out and counted; a file of exactly the limit is
// kept.
func TestExcludeLargerThan(t *testing.T) {
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	src := t.TempDir()
	for name, size := range map[string]int{"small": 10, "limit": 100, "over": 101, "d/huge": 1000} {
		testkit.WriteFile(t, filepath.Join(src, name), make([]byte, size), 0o644)
	}
	res := run(t, r, src, archiver.Options{ExcludeLargerThan: 100})
	if got, want := treePaths(t, r, res.Tree, ""), []string{"d/", "limit", "small"}; !slices.Equal(got, want) {
		t.Errorf("snapshot holds %q, want %q", got, want)
	}
	if res.Files != 2 || res.Bytes != 110 || res.FilesExcluded != 2 || res.BytesExcluded != 1101 || res.DirsExcluded != 0 {
		t.Errorf("result %+v; want 2 files of 110 bytes kept, 2 of 1101 bytes excluded", res)
	}
}

// OneFileSystem keeps a mount point, empty, and does not list what is mounted there. The
// test mounts a tmpfs in the source when it may (as root); otherwise it walks /dev, on
// which /dev/shm is usually another file system; else it cannot test and skips.
func TestOneFileSystem(t *testing.T) {
	src := t.TempDir()
	mnt := filepath.Join(src, "mnt")
	testkit.WriteFile(t, filepath.Join(src, "here"), []byte("on the root's file system"), 0o644)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	inside := "mnt/there"
	if err := unix.Mount("brr-test", mnt, "tmpfs", 0, "size=1m"); err == nil {
		t.Cleanup(func() { _ = unix.Unmount(mnt, unix.MNT_DETACH) })
		testkit.WriteFile(t, filepath.Join(mnt, "there"), []byte("on another file system"), 0o644)
	} else {
		var dev, shm unix.Stat_t
		if unix.Stat("/dev", &dev) != nil || unix.Stat("/dev/shm", &shm) != nil || dev.Dev == shm.Dev {
			t.Skipf("cannot mount a tmpfs (%v), and /dev/shm is not another file system under /dev: no mount point to test with", err)
		}
		f, err := os.CreateTemp("/dev/shm", "brr-one-file-system-")
		if err != nil {
			t.Skipf("cannot mount a tmpfs, nor write to /dev/shm: %v", err)
		}
		f.Close()
		t.Cleanup(func() { os.Remove(f.Name()) })
		src, inside = "/dev", "shm/"+filepath.Base(f.Name())
	}

	all, read := dryRun(t, src, archiver.Options{})
	if !slices.Contains(read, inside) || all.DirsExcluded != 0 {
		t.Fatalf("without OneFileSystem: %d dirs excluded, would read %q; want %s among them", all.DirsExcluded, read, inside)
	}
	one, read := dryRun(t, src, archiver.Options{OneFileSystem: true})
	if slices.Contains(read, inside) || one.DirsExcluded < 1 {
		t.Errorf("with OneFileSystem: %d dirs excluded, would read %q; want %s left out, its mount point counted", one.DirsExcluded, read, inside)
	}
	if src == "/dev" {
		return
	}
	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	res := run(t, r, src, archiver.Options{OneFileSystem: true})
	if got, want := treePaths(t, r, res.Tree, ""), []string{"here", "mnt/"}; !slices.Equal(got, want) {
		t.Errorf("snapshot holds %q, want %q: the mount point kept, empty", got, want)
	}
	if res.DirsExcluded != 1 || res.Dirs != 1 {
		t.Errorf("result %+v; want 1 dir (the mount point), counted as excluded too", res)
	}
}

// A dry run reads nothing and saves nothing (it has no repository to save to), and
// lists exactly the files that a backup with the same options then stores, with the
// same counts.
func TestDryRunListsWhatBackupStores(t *testing.T) {
	src := t.TempDir()
	for _, p := range []string{"a.txt", "a.o", "src/main.go", "src/main.o", "src/node_modules/x.js", "build/out", "keep.tmp", "x.tmp", "d/e/f.tmp", "cache/CACHEDIR.TAG", "cache/data", "big"} {
		data := []byte(p)
		switch p {
		case "cache/CACHEDIR.TAG":
			data = []byte("Signature: 8a477f597d28d172789f06886806bc55")
		case "big":
			data = make([]byte, 5000)
		}
		testkit.WriteFile(t, filepath.Join(src, p), data, 0o644)
	}
	testkit.WriteFile(t, filepath.Join(src, "src", excludes.DefaultIgnoreFile), []byte("*.o\n"), 0o644)
	if err := os.Symlink("a.txt", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	opts := archiver.Options{
		Excludes:          []string{"node_modules/", "/build", "**/*.tmp", "!keep.tmp"},
		IgnoreFile:        excludes.DefaultIgnoreFile,
		ExcludeCaches:     true,
		ExcludeLargerThan: 4096,
	}
	dry, wouldRead := dryRun(t, src, opts)
	want := []string{"a.o", "a.txt", "cache/CACHEDIR.TAG", "keep.tmp", "src/" + excludes.DefaultIgnoreFile, "src/main.go"}
	if !slices.Equal(wouldRead, want) {
		t.Errorf("dry run would read %q, want %q", wouldRead, want)
	}
	if !dry.Tree.IsZero() || len(dry.CachePut) != 0 || dry.BytesRead != 0 || dry.BlobsAdded != 0 {
		t.Errorf("dry run result %+v: it read or saved something", dry)
	}

	r, _ := testkit.InitRepo(t, t.TempDir(), testkit.RepoOptions())
	res := run(t, r, src, opts)
	stored := append(slices.Clone(wouldRead), "link")
	slices.Sort(stored)
	if got := files(treePaths(t, r, res.Tree, "")); !slices.Equal(got, stored) {
		t.Errorf("backup stored %q; want the dry run's files and the symlink", got)
	}
	if dry.Files != res.Files || dry.Dirs != res.Dirs || dry.Bytes != res.Bytes ||
		dry.FilesExcluded != res.FilesExcluded || dry.DirsExcluded != res.DirsExcluded || dry.BytesExcluded != res.BytesExcluded {
		t.Errorf("dry run counts %+v differ from the backup's %+v", dry, res)
	}
	// node_modules, build; cache/data, src/main.o, x.tmp, d/e/f.tmp, big.
	if res.DirsExcluded != 2 || res.FilesExcluded != 5 {
		t.Errorf("backup result %+v; want 2 dirs and 5 files excluded", res)
	}
}

// The walk, with its ignore files and root patterns, leaves out what git leaves out: the
// files a dry run would read are those `git ls-files --others` lists, given the same
// patterns as --exclude and the ignore files as --exclude-per-directory (the matcher
// itself is checked pattern by pattern in internal/excludes).
func TestWalkMatchesGit(t *testing.T) {
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not installed; it is the oracle of this test")
	}
	src := t.TempDir()
	for _, p := range []string{"README.md", "a.o", "x.log", "keep.log", "src/main.go", "src/main.o", "src/gen/a.go",
		"src/gen/b.go", "src/deep/er/x.log", "src/deep/er/keep.log", "build/out", "build/keep", "docs/a.md", "docs/sub/b.md",
		"docs/sub/c.txt", "logs/2024/a.log", "logs/keep/b.log", "node_modules/p/i.js", "lib/node_modules/q/j.js"} {
		testkit.WriteFile(t, filepath.Join(src, p), []byte(p), 0o644)
	}
	ignore := map[string]string{
		"":         "*.log\n!keep.log\nbuild/\n!build/keep\n",
		"src":      "/gen/*\n!/gen/b.go\n*.o\n",
		"src/deep": "!*.log\n",
		"docs":     "*\n!*/\n!*.md\n",
		"build":    "!*\n",
	}
	for d, content := range ignore {
		testkit.WriteFile(t, filepath.Join(src, d, excludes.DefaultIgnoreFile), []byte(content), 0o644)
	}
	patterns := []string{"node_modules/", "logs/**", "!logs/keep/", "*.md", "!README.md"}

	_, wouldRead := dryRun(t, src, archiver.Options{Excludes: patterns, IgnoreFile: excludes.DefaultIgnoreFile})

	gitDir := t.TempDir()
	home := t.TempDir()
	env := append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "HOME="+home, "XDG_CONFIG_HOME="+home)
	cmd := exec.Command("git", "init", "-q", "--template=", gitDir)
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	args := []string{"--git-dir=" + filepath.Join(gitDir, ".git"), "--work-tree=" + src, "ls-files", "--others", "-z", "--exclude-per-directory=" + excludes.DefaultIgnoreFile}
	for _, p := range patterns {
		args = append(args, "--exclude="+p)
	}
	cmd = exec.Command("git", args...)
	cmd.Dir = src
	cmd.Env = env
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("git ls-files: %v", err)
	}
	theirs := strings.Split(strings.TrimSuffix(string(out), "\x00"), "\x00")
	slices.Sort(theirs)
	if !slices.Equal(wouldRead, theirs) {
		t.Errorf("a dry run would read\n%q\ngit ls-files --others lists\n%q", wouldRead, theirs)
	}
	if len(theirs) < 10 {
		t.Errorf("git lists %d files: the tree is too small to test much", len(theirs))
	}
}
