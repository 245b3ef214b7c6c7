package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/brr-dev/brr"
)

// --source-name puts the source's name in the job instead of a path; a PATH with it, or
// neither, is a usage error, and nothing is published.
func TestBackupSourceName(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	r := brrCmd(t, url, "backup", "--source-name", "app-db", "--tag", "nightly", "--id", "s1")
	if r.code != 0 {
		t.Fatalf("backup --source-name: %v", r)
	}
	w.waitFor(t, "s1", 1)
	args := w.deliveries("s1")[0].Args.(*brr.BackupJob)
	if args.SourceName != "app-db" || args.Path != "" || len(args.Tags) != 1 {
		t.Fatalf("job args %+v, want source app-db and no path", args)
	}
	for _, c := range []struct {
		args    []string
		mention string
	}{
		{[]string{"backup", "data/app", "--source-name", "app-db"}, "not both"},
		{[]string{"backup"}, "backup takes 1 argument, got 0"},
		{[]string{"backup", "--source-name", "a/b"}, "source name"},
	} {
		r := brrCmd(t, url, append(c.args, "--id", "bad")...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.mention) {
			t.Errorf("brr %q: %v\nwant a usage error mentioning %q", c.args, r, c.mention)
		}
	}
	if n := len(w.deliveries("bad")); n != 0 {
		t.Errorf("%d bad jobs were published", n)
	}
}

// restore --source-name without a TARGET asks for the source's restore_command; with one,
// the file is written there; without either it is a usage error.
func TestRestoreSourceName(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	if r := brrCmd(t, url, "restore", "latest", "--source-name", "app-db", "--id", "r1"); r.code != 0 {
		t.Fatalf("restore --source-name: %v", r)
	}
	if r := brrCmd(t, url, "restore", "latest", "dump", "--source-name", "app-db", "--id", "r2"); r.code != 0 {
		t.Fatalf("restore --source-name TARGET: %v", r)
	}
	if r := brrCmd(t, url, "restore", "latest", "out", "--source", "source:app-db", "--id", "r3"); r.code != 0 {
		t.Fatalf("restore --source source:NAME: %v", r)
	}
	w.waitFor(t, "r1", 1)
	w.waitFor(t, "r2", 1)
	w.waitFor(t, "r3", 1)
	if a := w.deliveries("r1")[0].Args.(*brr.RestoreJob); a.SourceName != "app-db" || a.Target != "" {
		t.Errorf("r1 args %+v, want source app-db and no target", a)
	}
	if a := w.deliveries("r2")[0].Args.(*brr.RestoreJob); a.SourceName != "app-db" || a.Target != "/home/u/dump" {
		t.Errorf("r2 args %+v, want source app-db into /home/u/dump", a)
	}
	if a := w.deliveries("r3")[0].Args.(*brr.RestoreJob); a.Source != "source:app-db" || a.Target != "/home/u/out" {
		t.Errorf("r3 args %+v, want the snapshots of source:app-db", a)
	}
	for _, c := range []struct {
		args    []string
		mention string
	}{
		{[]string{"restore", "latest"}, "give a TARGET"},
		{[]string{"restore", "latest", "--source-name", "db", "--source", "/srv"}, "give one"},
		{[]string{"restore", "latest", "--source-name", "db", "--path", "x"}, "go with a TARGET"},
	} {
		r := brrCmd(t, url, append(c.args, "--id", "bad")...)
		if r.code != exitUsage || !strings.Contains(r.stderr, c.mention) {
			t.Errorf("brr %q: %v\nwant a usage error mentioning %q", c.args, r, c.mention)
		}
	}
	if n := len(w.deliveries("bad")); n != 0 {
		t.Errorf("%d bad jobs were published", n)
	}
	r := brrCmd(t, url, "restore", "--help")
	if !strings.Contains(r.stdout, "only from the workers' config") {
		t.Errorf("restore --help does not say where commands come from:\n%s", r.stdout)
	}
	r = brrCmd(t, url, "backup", "--help")
	if !strings.Contains(r.stdout, "only from the workers'") {
		t.Errorf("backup --help does not say where commands come from:\n%s", r.stdout)
	}
}

func TestPrintCommandResults(t *testing.T) {
	var b bytes.Buffer
	m := &Main{Stdout: &b}
	m.printResult(&brr.Event{Result: &brr.Result{Backup: &brr.BackupResult{
		Snapshot: "abcd", Repo: "local", Source: "source:app-db", SourceName: "app-db", Files: 1, Bytes: 2 << 20, BytesRead: 2 << 20, DurationMS: 1500,
		Command: &brr.CommandRun{ExitCode: 0, Stderr: "pg_dump: dumping\n", Bytes: 2 << 20, DurationMS: 1400},
		Hooks:   []brr.HookRun{{Hook: "after", DurationMS: 3}},
	}}})
	m.printResult(&brr.Event{Result: &brr.Result{Restore: &brr.RestoreResult{
		Snapshot: "abcd", Repo: "local", SourceName: "app-db", Files: 1, Bytes: 2 << 20,
		Command: &brr.CommandRun{ExitCode: 0, Bytes: 2 << 20, DurationMS: 900},
	}}})
	for _, want := range []string{
		"snapshot abcd of source:app-db in repo local\nfile:    the command's output, 2.0 MiB\n",
		"command: exited 0, 2.0 MiB in 1.4s\n  stderr: pg_dump: dumping\n",
		"hook:    after exited 0 in 3ms\n",
		"restored snapshot abcd from repo local through the restore_command of source app-db\ncommand: exited 0, 2.0 MiB in 900ms\n",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("printed\n%s\nlacks %q", b.String(), want)
		}
	}
}
