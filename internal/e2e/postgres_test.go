package e2e_test

import (
	"bufio"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// The rows of the table, in a form whose md5 a check compares: everything but ids above
// the given one.
const rowsChecksum = `SELECT count(*) || ' ' || coalesce(md5(string_agg(id || ':' || n || ':' || payload, ',' ORDER BY id)), '') FROM items WHERE id <= %d`

// TestPostgresDumpAndRestore backs up a PostgreSQL database that a writer keeps inserting
// into, with a pg_dump -Fc command source on a real worker, restores it through the
// source's restore_command (pg_restore) into a new database, and checks that the copy is
// the table as it was when pg_dump began: a consistent prefix of the inserts, between the
// rows there before the backup and those there after it, row for row. A second dump adds
// little to the repository. A pg_dump that fails leaves no snapshot and a job error with
// the end of its stderr.
func TestPostgresDumpAndRestore(t *testing.T) {
	pg := testkit.StartPostgres(t)
	pg.Psql(t, "postgres", "CREATE DATABASE appdb")
	pg.Psql(t, "appdb", `CREATE TABLE items (id bigserial PRIMARY KEY, n int NOT NULL, payload text NOT NULL);
		INSERT INTO items (n, payload) SELECT g, repeat(md5(g::text), 4) FROM generate_series(1, 200000) g`)

	w := bins.StartWorker(t, testkit.WorkerOptions{
		Config: `sources:
  appdb:
    command: pg_dump --format=custom --compress=0 --no-owner appdb
    restore_command: createdb appdb_restored && pg_restore --exit-on-error --no-owner --dbname=appdb_restored
    filename: appdb.dump
    timeout: 5m
    tags: [db]
  baddb: {command: pg_dump --format=custom nope}
`,
		Env: pg.Env(),
	})
	_, c := testkit.Connect(t, w.NATSURL)
	ctx := testkit.Context(t, 3*time.Minute)

	// The writer: one session inserting a row at a time, each its own transaction, so
	// that ids are committed in order and what a snapshot holds is every id up to one.
	writer := pg.PsqlCommand("appdb")
	stdin, err := writer.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := writer.Start(); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	var writerErr error
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		bw := bufio.NewWriter(stdin)
		var err error
		for i := 0; !stop.Load() && err == nil; i++ {
			_, err = fmt.Fprintf(bw, "INSERT INTO items (n, payload) VALUES (%d, md5('w%d'));\n", -i, i)
			if err == nil {
				err = bw.Flush()
			}
			time.Sleep(time.Millisecond)
		}
		stdin.Close()
		if err == nil {
			err = writer.Wait()
		}
		writerErr = err
	}()
	stopWriter := func() error {
		stop.Store(true)
		<-writerDone
		return writerErr
	}
	t.Cleanup(func() { _ = stopWriter() })
	maxID := func() int64 {
		n, err := strconv.ParseInt(pg.Psql(t, "appdb", "SELECT max(id) FROM items"), 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	testkit.Eventually(t, 30*time.Second, "the writer's first rows", func() bool { return maxID() > 200000 })

	before := maxID()
	ev, err := publishWait(t, ctx, c, brr.BackupJob{SourceName: "appdb"})
	if err != nil {
		t.Fatalf("backup of appdb: %v", err)
	}
	after := maxID()
	if err := stopWriter(); err != nil {
		t.Fatalf("writer: %v", err)
	}
	res := ev.Result.Backup
	if res.Source != "source:appdb" || res.SourceName != "appdb" || res.Files != 1 || res.Bytes < 1<<20 {
		t.Fatalf("backup result %+v: want one dump of a few MiB of source:appdb", res)
	}
	if c := res.Command; c == nil || c.ExitCode != 0 || c.Bytes != res.Bytes {
		t.Fatalf("pg_dump's run %+v", res.Command)
	}

	// Through the CLI, as an operator would.
	stdout, stderr, code := bins.RunCLI(t, nil, "--nats", w.NATSURL, "restore", res.Snapshot, "--source-name", "appdb", "--wait")
	if code != 0 || !strings.Contains(stdout, "through the restore_command of source appdb") || !strings.Contains(stdout, "command: exited 0") {
		t.Fatalf("brr restore --source-name appdb: exit %d\n%s\n%s", code, stdout, stderr)
	}

	dumped, err := strconv.ParseInt(pg.Psql(t, "appdb_restored", "SELECT max(id) FROM items"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("max id: %d before the backup, %d in the dump, %d after it; dump %s", before, dumped, after, brr.FormatBytes(res.Bytes))
	if dumped < before || dumped >= after {
		t.Fatalf("the dump holds ids up to %d; want at least the %d there before the backup, and not the rows written during it (up to %d)", dumped, before, after)
	}
	query := fmt.Sprintf(rowsChecksum, dumped)
	restored, source := pg.Psql(t, "appdb_restored", query), pg.Psql(t, "appdb", query)
	if restored != source {
		t.Fatalf("restored rows (count md5) %q, the source's up to id %d %q", restored, dumped, source)
	}
	if n := pg.Psql(t, "appdb_restored", "SELECT count(*) FROM items"); n != strings.Fields(source)[0] {
		t.Fatalf("restored %s rows, want %s", n, strings.Fields(source)[0])
	}

	// A dump taken again, with a few thousand rows more, adds little: the uncompressed
	// dump chunks like any file, and what did not change is stored once.
	ev, err = publishWait(t, ctx, c, brr.BackupJob{SourceName: "appdb"})
	if err != nil {
		t.Fatalf("second backup of appdb: %v", err)
	}
	again := ev.Result.Backup
	t.Logf("second dump: %s, of which %s added in %d blobs", brr.FormatBytes(again.Bytes), brr.FormatBytes(again.BytesAdded), again.BlobsAdded)
	if again.Parent != res.Snapshot || again.BytesAdded > again.Bytes/2 {
		t.Errorf("second backup %+v: want parent %s and less than half of the dump added", again, res.Snapshot)
	}

	// pg_dump of a database that does not exist: the job fails with pg_dump's words, and
	// no snapshot is committed.
	ev, err = publishWait(t, ctx, c, brr.BackupJob{SourceName: "baddb"})
	if err == nil || ev.Status != brr.StatusFailed {
		t.Fatalf("backup of baddb: %+v, %v; want it failed", ev, err)
	}
	for _, want := range []string{"command of source baddb exited 1; nothing was committed", `database "nope" does not exist`} {
		if !strings.Contains(ev.Error, want) {
			t.Errorf("job error %q lacks %q", ev.Error, want)
		}
	}
	// The failed job's result says how the command ended: its exit code and the end of
	// its stderr, and no snapshot.
	if ev.Result == nil || ev.Result.Backup == nil || ev.Result.Backup.Command == nil {
		t.Fatalf("failed job's result %+v: want result.backup.command", ev.Result)
	}
	if run := ev.Result.Backup.Command; run.ExitCode != 1 || !strings.Contains(run.Stderr, `database "nope" does not exist`) || ev.Result.Backup.Snapshot != "" {
		t.Errorf("failed job's result.backup = %+v, command %+v: want exit code 1, pg_dump's stderr, no snapshot", ev.Result.Backup, run)
	}
	snaps, err := c.Snapshots(ctx, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 2 || snaps[0].Source != "source:appdb" || snaps[1].Source != "source:appdb" {
		t.Fatalf("snapshots %+v: want only the two of appdb", snaps)
	}
}
