package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/brr-dev/brr"
)

// The exclude flags go into the job message: --exclude-file's patterns (comments and
// blank lines dropped) first, then --exclude's, and the size in bytes.
func TestBackupExcludeFlags(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	file := filepath.Join(t.TempDir(), "excludes")
	if err := os.WriteFile(file, []byte("# build output\r\nbuild/\r\n\r\n*.log\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r := brrCmd(t, url, "backup", "data/app", "--id", "x1", "--exclude", "node_modules/", "--exclude", "!keep.log",
		"--exclude-file", file, "--exclude-caches", "--one-file-system", "--exclude-larger-than", "1.5G")
	if r.code != 0 {
		t.Fatalf("backup with excludes: %v", r)
	}
	w.waitFor(t, "x1", 1)
	args := w.deliveries("x1")[0].Args.(*brr.BackupJob)
	if want := []string{"build/", "*.log", "node_modules/", "!keep.log"}; !slices.Equal(args.Excludes, want) {
		t.Errorf("excludes = %q, want %q", args.Excludes, want)
	}
	if !args.ExcludeCaches || !args.OneFileSystem || args.ExcludeLargerThan != 3<<29 || args.DryRun {
		t.Errorf("job args %+v, want caches, one file system, 1.5 GiB, no dry run", args)
	}
}

// A bad pattern, from a flag or a file, or a bad size, is a usage error that names it,
// and nothing is published.
func TestBackupBadExclude(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	file := filepath.Join(t.TempDir(), "excludes")
	if err := os.WriteFile(file, []byte("ok\nbad[\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args    []string
		mention string
	}{
		{[]string{"--exclude", "a[b"}, `"a[b"`},
		{[]string{"--exclude", "#x"}, `\#`},
		{[]string{"--exclude-file", file}, file},
		{[]string{"--exclude-file", file + ".missing"}, "no such file"},
		{[]string{"--exclude-larger-than", "10X"}, "100M"},
		{[]string{"--exclude", "/home/u/data/app/tmp"}, `write "/tmp"`},
	} {
		r := brrCmd(t, url, append([]string{"backup", "data/app", "--id", "bad"}, c.args...)...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.mention) {
			t.Errorf("backup %q: %v\nwant a usage error mentioning %q", c.args, r, c.mention)
		}
	}
	if n := len(w.deliveries("bad")); n != 0 {
		t.Errorf("%d bad jobs were published", n)
	}
}

// --dry-run waits for the result, which is what it is for, and cannot be scheduled.
func TestBackupDryRunWaits(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	r := brrCmd(t, url, "backup", "data/app", "--id", "d1", "--dry-run")
	if r.code != 0 || !strings.Contains(r.stderr, "backup job d1 published") {
		t.Fatalf("backup --dry-run: %v; want it to wait", r)
	}
	if args := w.deliveries("d1")[0].Args.(*brr.BackupJob); !args.DryRun {
		t.Errorf("job args %+v, want a dry run", args)
	}
	r = brrCmd(t, url, "schedule", "add", "s1", "--cron", "0 0 * * * *", "--", "backup", "data/app", "--dry-run")
	if r.code != exitUsage || !strings.Contains(r.stderr, "dry run") {
		t.Errorf("schedule add of a dry run: %v; want a usage error", r)
	}
}

func TestPrintDryRun(t *testing.T) {
	var b bytes.Buffer
	m := &Main{Stdout: &b}
	m.printResult(&brr.Event{Result: &brr.Result{Backup: &brr.BackupResult{
		DryRun: true, Repo: "local", Source: "/srv/app", Files: 1002, Dirs: 4, Bytes: 3 << 20,
		FilesExcluded: 7, DirsExcluded: 2, BytesExcluded: 5 << 10,
		WouldRead: []string{"a.txt", "new\nline"}, WouldReadMore: 1000, DurationMS: 12,
	}}})
	want := `a.txt
"new\nline"
... and 1000 more files (the result lists the first 2)
dry run of /srv/app for repo local: nothing stored
would store: 1002 files, 4 dirs, 3.0 MiB, in 12ms
excluded: 7 files (5.0 KiB), 2 dirs (not counted inside)
`
	if b.String() != want {
		t.Errorf("printed\n%s\nwant\n%s", b.String(), want)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "100": 100, "100B": 100, "1K": 1024, "1k": 1024, "1KiB": 1024, "1KB": 1024,
		"100M": 100 << 20, "1.5G": 3 << 29, "2T": 2 << 40, " 7M ": 7 << 20,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "M", "-1", "1X", "1..5M", "1 MB extra", "99999999T"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q): no error", in)
		}
	}
}
