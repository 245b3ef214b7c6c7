package jobs_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/testkit"
)

// makeExcludesTree writes a tree with what a backup typically leaves out, and returns
// the files that the job of excludesJob keeps.
func makeExcludesTree(t *testing.T, src string) []string {
	t.Helper()
	write := func(rel string, data []byte) { testkit.WriteFile(t, filepath.Join(src, rel), data, 0o644) }
	for _, rel := range []string{
		"app/main.go", "app/main.o", "app/node_modules/left-pad/index.js", "app/.cache/x",
		"app/tmp/a.tmp", "app/tmp/keep.tmp", "app/build/out.bin", "app/build/keep.me",
		"docs/a.md", "docs/draft.md", "cache/entry", "README",
	} {
		write(rel, []byte(rel))
	}
	write("app/.brrignore", []byte("# build output\nbuild/*\n!build/keep.me\n"))
	write("docs/.brrignore", []byte("draft.md\n"))
	write("cache/CACHEDIR.TAG", []byte("Signature: 8a477f597d28d172789f06886806bc55\n"))
	write("app/huge.bin", make([]byte, 3<<20))
	return []string{
		"README", "app/.brrignore", "app/build/keep.me", "app/main.go", "app/tmp/keep.tmp",
		"cache/CACHEDIR.TAG", "docs/.brrignore", "docs/a.md",
	}
}

func excludesJob(src string) brr.BackupJob {
	return brr.BackupJob{
		Path:              src,
		Excludes:          []string{"node_modules/", "*.o", ".cache/", "**/*.tmp", "!keep.tmp"},
		ExcludeCaches:     true,
		ExcludeLargerThan: 1 << 20,
	}
}

// regularFiles lists the regular files under dir, relative to it, sorted.
func regularFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// A backup job's excludes, the .brrignore files of its tree, its cache tags and its size
// limit leave out what they name: the restore holds the rest, unchanged, and the result
// counts what was left out.
func TestBackupJobWithExcludes(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	want := makeExcludesTree(t, src)

	res, err := b.engine.Backup(context.Background(), "excludes-1", excludesJob(src), nil)
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "restore")
	restore(t, b.engine, res.Snapshot, target)
	if got := regularFiles(t, target); !slices.Equal(got, want) {
		t.Fatalf("restored %q, want %q", got, want)
	}
	for _, rel := range want {
		orig, _ := os.ReadFile(filepath.Join(src, rel))
		got, _ := os.ReadFile(filepath.Join(target, rel))
		if string(orig) != string(got) {
			t.Errorf("%s restored with other content", rel)
		}
	}
	// The cache directory is kept, with its tag only; the excluded directories are gone.
	if _, err := os.Stat(filepath.Join(target, "app", "node_modules")); !os.IsNotExist(err) {
		t.Errorf("app/node_modules restored (err %v); it is excluded", err)
	}
	// Files: main.o, a.tmp, build/out.bin (by .brrignore), draft.md, cache/entry, huge.bin.
	// Dirs: node_modules, .cache.
	if res.Files != int64(len(want)) || res.FilesExcluded != 6 || res.DirsExcluded != 2 {
		t.Errorf("result %+v: want %d files, 6 files and 2 dirs excluded", res, len(want))
	}
	if min := int64(3 << 20); res.BytesExcluded < min {
		t.Errorf("BytesExcluded = %d, want at least %d (huge.bin)", res.BytesExcluded, min)
	}
}

// A dry run commits nothing and leaves the repository as it was (not a file added or
// touched), takes no lease (it runs while another worker holds the source's), and lists
// the files that the same job then stores.
func TestBackupJobDryRun(t *testing.T) {
	b := setup(t)
	l := newKVLeaser(t)
	b.engine.Leases = l
	b.engine.ReplicateTo = map[string][]string{"local": {"offsite"}}
	src := t.TempDir()
	want := makeExcludesTree(t, src)
	key := jobs.SourceLeaseKey("testhost", src)
	if _, err := l.kv.Create(context.Background(), key, []byte("other-worker")); err != nil {
		t.Fatalf("take the source's lease as another worker: %v", err)
	}
	before := repoFiles(t, b.dir)

	job := excludesJob(src)
	job.DryRun = true
	out, err := b.engine.Handle(context.Background(), &brr.Job{ID: "dry-1", Kind: brr.KindBackup, Pool: "default", Args: job}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res := out.Result.Backup
	if !res.DryRun || res.Snapshot != "" || out.Snapshot != "" || len(out.Events) != 0 || len(out.Jobs) != 0 {
		t.Fatalf("dry run outcome %+v, result %+v: want a dry run result, no snapshot, no events, no jobs", out, res)
	}
	if !slices.Equal(res.WouldRead, want) || res.WouldReadMore != 0 || res.Files != int64(len(want)) {
		t.Errorf("dry run would read %q (%d more, %d files), want %q", res.WouldRead, res.WouldReadMore, res.Files, want)
	}
	if after := repoFiles(t, b.dir); !slices.Equal(after, before) {
		t.Errorf("the dry run changed the repository:\nbefore %q\nafter  %q", before, after)
	}
	if len(l.taken) != 0 {
		t.Errorf("the dry run asked for leases %q, want none", l.taken)
	}
	if err := l.kv.Delete(context.Background(), key); err != nil {
		t.Fatal(err)
	}

	job.DryRun = false
	real, err := b.engine.Backup(context.Background(), "dry-2", job, nil)
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(t.TempDir(), "restore")
	restore(t, b.engine, real.Snapshot, target)
	if got := regularFiles(t, target); !slices.Equal(got, res.WouldRead) {
		t.Errorf("the backup stored %q; the dry run said %q", got, res.WouldRead)
	}
	if real.Files != res.Files || real.Dirs != res.Dirs || real.Bytes != res.Bytes || real.FilesExcluded != res.FilesExcluded ||
		real.DirsExcluded != res.DirsExcluded || real.BytesExcluded != res.BytesExcluded {
		t.Errorf("backup counts %+v differ from the dry run's %+v", real, res)
	}
}

// A dry run lists the first brr.MaxWouldRead files in path order, and counts the others.
func TestDryRunListIsBounded(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	n := brr.MaxWouldRead + 234
	var all []string
	for i := range n {
		rel := fmt.Sprintf("d%d/f%05d", i%7, i)
		testkit.WriteFile(t, filepath.Join(src, rel), nil, 0o644)
		all = append(all, rel)
	}
	slices.Sort(all)
	res, err := b.engine.Backup(context.Background(), "dry-bounded", brr.BackupJob{Path: src, DryRun: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.WouldRead, all[:brr.MaxWouldRead]) || res.WouldReadMore != 234 || res.Files != int64(n) {
		t.Errorf("would read %d paths (first %q), %d more, %d files; want the first %d in path order, 234 more",
			len(res.WouldRead), res.WouldRead[:min(3, len(res.WouldRead))], res.WouldReadMore, res.Files, brr.MaxWouldRead)
	}
}

// A bad pattern fails the job at once, permanently, saying which pattern and why.
func TestBackupJobBadExclude(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	_, err := b.engine.Backup(context.Background(), "bad-exclude", brr.BackupJob{Path: src, Excludes: []string{"*.o", "[abc"}}, nil)
	if !brr.IsPermanent(err) || !strings.Contains(err.Error(), `"[abc"`) || !strings.Contains(err.Error(), "not closed") {
		t.Fatalf("err = %v, want a permanent error about [abc", err)
	}
}

// repoFiles lists every file of the repository directory with its size and mtime.
func repoFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, fmt.Sprintf("%s %d %d", p, fi.Size(), fi.ModTime().UnixNano()))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
