package jobs_test

import (
	"context"
	"database/sql"
	"errors"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	_ "modernc.org/sqlite"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/testkit"
)

// openSQLite opens the database file p with the pragmas given (name(value), as the
// modernc driver takes them).
func openSQLite(t *testing.T, p string, pragmas ...string) *sql.DB {
	t.Helper()
	u := url.URL{Scheme: "file", Path: p, OmitHost: true, RawQuery: url.Values{"_pragma": pragmas}.Encode()}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// rowWriter inserts rows with ids 1, 2, 3, … into table t of a database, each in its own
// transaction, until stopped; committed is the highest id committed.
type rowWriter struct {
	db        *sql.DB
	committed atomic.Int64
	stop      chan struct{}
	done      chan struct{}
	err       error
}

func (w *rowWriter) insert(id int64) error {
	payload := randomBytes(uint64(id), 1500)
	for {
		_, err := w.db.Exec("INSERT INTO t(id, payload) VALUES(?, ?)", id, payload)
		if err == nil {
			w.committed.Store(id)
			return nil
		}
		// A busy database (rollback journal, while the copy reads) is tried again: the
		// same id, so that the ids stay without a gap.
		if !strings.Contains(err.Error(), "SQLITE_BUSY") && !strings.Contains(err.Error(), "database is locked") {
			return err
		}
		time.Sleep(time.Millisecond)
	}
}

func (w *rowWriter) run() {
	defer close(w.done)
	for id := w.committed.Load() + 1; ; id++ {
		select {
		case <-w.stop:
			return
		default:
		}
		if w.err = w.insert(id); w.err != nil {
			return
		}
	}
}

// fill inserts the rows 1..n in one transaction.
func fill(t *testing.T, w *rowWriter, n int64) {
	t.Helper()
	tx, err := w.db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= n; id++ {
		if _, err := tx.Exec("INSERT INTO t(id, payload) VALUES(?, ?)", id, randomBytes(uint64(id), 1500)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	w.committed.Store(n)
}

// waitFor waits until the writer committed more than n rows.
func (w *rowWriter) waitFor(t *testing.T, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for w.committed.Load() <= n {
		if time.Now().After(deadline) {
			t.Fatalf("the writer committed %d rows in 30s, want more than %d (%v)", w.committed.Load(), n, w.err)
		}
		time.Sleep(time.Millisecond)
	}
}

// A SQLite source is backed up while a writer keeps inserting rows, in WAL and in
// rollback-journal mode: the restored file passes integrity_check and holds the rows
// 1..N without a gap, N at least the rows there before the backup started. In WAL mode
// the writer goes on committing while the copy reads, and what it commits then is not
// in the copy: the copy is one state of the database.
func TestSQLiteSourceWhileWriting(t *testing.T) {
	for _, mode := range []string{"wal", "delete"} {
		t.Run(mode, func(t *testing.T) {
			b := setup(t)
			b.engine.ScratchDir = t.TempDir()
			dbPath := filepath.Join(t.TempDir(), "app.db")
			// No fsync per commit: what is tested is what readers see, not durability.
			db := openSQLite(t, dbPath, "journal_mode("+mode+")", "busy_timeout(30000)", "synchronous(off)")
			db.SetMaxOpenConns(1)
			if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)"); err != nil {
				t.Fatal(err)
			}
			var journal string
			if err := db.QueryRow("PRAGMA journal_mode").Scan(&journal); err != nil || journal != mode {
				t.Fatalf("journal_mode = %q (%v), want %q", journal, err, mode)
			}
			w := &rowWriter{db: db, stop: make(chan struct{}), done: make(chan struct{})}
			// About 6 MiB: the copy takes several steps of 1024 pages.
			fill(t, w, 3000)
			go w.run()
			var stopOnce sync.Once
			stop := func() {
				stopOnce.Do(func() { close(w.stop); <-w.done })
			}
			t.Cleanup(stop)
			w.waitFor(t, 3100)

			b.engine.Sources = map[string]jobs.Source{"appdb": {SQLite: dbPath, Tags: []string{"db"}}}
			before := w.committed.Load()
			var midCopy atomic.Int64 // rows committed while the copy was half done; 0: not seen
			progress := func(p brr.Progress) {
				if p.Phase != "copy" || p.Bytes >= p.TotalBytes || midCopy.Load() != 0 {
					return
				}
				if mode == "wal" {
					// The copy holds its read transaction: a WAL writer is not held up.
					w.waitFor(t, w.committed.Load()+20)
				}
				midCopy.Store(w.committed.Load())
			}
			res, err := b.engine.Backup(context.Background(), "sqlite-"+mode, brr.BackupJob{SourceName: "appdb"}, progress)
			if err != nil {
				t.Fatalf("backup: %v", err)
			}
			w.waitFor(t, w.committed.Load()+10)
			stop()
			if w.err != nil {
				t.Fatalf("writer: %v", w.err)
			}
			if midCopy.Load() == 0 {
				t.Fatal("no progress report in the middle of the copy")
			}
			if got, want := res.Source, jobs.SourceKey("appdb"); got != want {
				t.Fatalf("Source = %q, want %q", got, want)
			}
			if res.SourceName != "appdb" || res.Files != 1 || res.BytesRead == 0 || len(res.Warnings) != 0 {
				t.Fatalf("result %+v: want one file read, named source appdb, no warning", res)
			}
			if entries, _ := os.ReadDir(b.engine.ScratchDir); len(entries) != 0 {
				t.Fatalf("the copy was left in the scratch dir: %v", entries)
			}

			target := t.TempDir()
			restore(t, b.engine, res.Snapshot, target)
			if got := regularFiles(t, target); len(got) != 1 || got[0] != "app.db" {
				t.Fatalf("restored %q, want app.db alone", got)
			}
			restored := openSQLite(t, filepath.Join(target, "app.db"))
			var check string
			if err := restored.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
				t.Fatalf("integrity_check of the restored file = %q, %v", check, err)
			}
			var count, lo, hi int64
			if err := restored.QueryRow("SELECT count(*), min(id), max(id) FROM t").Scan(&count, &lo, &hi); err != nil {
				t.Fatal(err)
			}
			if lo != 1 || hi != count {
				t.Fatalf("restored rows: %d with ids %d..%d, want 1..N without a gap", count, lo, hi)
			}
			if count < before {
				t.Fatalf("restored %d rows, but %d were committed before the backup started", count, before)
			}
			if mode == "wal" && count > midCopy.Load() {
				t.Fatalf("restored %d rows, but only %d were committed when the copy was half done: the copy is not one state", count, midCopy.Load())
			}
			if final := w.committed.Load(); count >= final {
				t.Fatalf("restored %d rows of %d: the writer wrote nothing after the copy", count, final)
			}
			t.Logf("%s: %d rows before the backup, %d restored, %d written in all", mode, before, count, w.committed.Load())
		})
	}
}

// A second backup of an unchanged database adds next to nothing: the online backup API
// copies the database page by page, so the copy's chunks are those stored before. The
// database's path has characters that SQLite's URIs give a meaning to.
func TestSQLiteUnchangedAddsLittle(t *testing.T) {
	b := setup(t)
	b.engine.ScratchDir = filepath.Join(t.TempDir(), "scratch ?#%41")
	dbPath := filepath.Join(t.TempDir(), "a ?b#c%41", "app.db")
	if err := os.Mkdir(filepath.Dir(dbPath), 0o755); err != nil {
		t.Fatal(err)
	}
	db := openSQLite(t, dbPath, "journal_mode(wal)")
	if _, err := db.Exec("CREATE TABLE t(id INTEGER PRIMARY KEY, payload BLOB NOT NULL)"); err != nil {
		t.Fatal(err)
	}
	fill(t, &rowWriter{db: db}, 2000)
	b.engine.Sources = map[string]jobs.Source{"appdb": {SQLite: dbPath}}
	first, err := b.engine.Backup(context.Background(), "sqlite-1", brr.BackupJob{SourceName: "appdb"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	second, err := b.engine.Backup(context.Background(), "sqlite-2", brr.BackupJob{SourceName: "appdb"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if first.Bytes < 2000*1500 {
		t.Fatalf("first backup stored %d bytes, want the whole database", first.Bytes)
	}
	if second.Parent != first.Snapshot || second.BytesAdded > first.BytesAdded/50 {
		t.Fatalf("second backup: parent %s (want %s), added %d bytes (the first added %d)", second.Parent, first.Snapshot, second.BytesAdded, first.BytesAdded)
	}
	again, err := b.engine.Backup(context.Background(), "sqlite-2", brr.BackupJob{SourceName: "appdb"}, nil)
	if err != nil || again.Snapshot != second.Snapshot {
		t.Fatalf("the same job again: %+v, %v; want snapshot %s, not another", again, err, second.Snapshot)
	}
}

// A source whose file is not a SQLite database, or is missing, fails the job for good
// with an error that says so, and commits no snapshot; its copy does not stay behind.
func TestSQLiteSourceNotADatabase(t *testing.T) {
	b := setup(t)
	b.engine.ScratchDir = t.TempDir()
	dir := t.TempDir()
	notDB := filepath.Join(dir, "notes.db")
	testkit.WriteFile(t, notDB, []byte(strings.Repeat("this is not a database\n", 500)), 0o644)
	b.engine.Sources = map[string]jobs.Source{
		"notes":   {SQLite: notDB},
		"missing": {SQLite: filepath.Join(dir, "missing.db")},
		"dir":     {SQLite: dir},
	}
	for _, c := range []struct{ source, want string }{
		{"notes", notDB + " is not a SQLite database"},
		{"missing", "missing.db does not exist on host testhost"},
		{"dir", "is not a regular file"},
	} {
		_, err := b.engine.Backup(context.Background(), "sqlite-bad-"+c.source, brr.BackupJob{SourceName: c.source}, nil)
		if err == nil || !brr.IsPermanent(err) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("backup of source %s: %v; want a permanent error saying %q", c.source, err, c.want)
		}
	}
	if snaps, err := b.engine.Snapshots(context.Background(), "", ""); err != nil || len(snaps) != 0 {
		t.Fatalf("snapshots %+v, %v: want none", snaps, err)
	}
	if entries, _ := os.ReadDir(b.engine.ScratchDir); len(entries) != 0 {
		t.Fatalf("a copy was left in the scratch dir: %v", entries)
	}
	if _, err := os.Stat(filepath.Join(dir, "missing.db")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the backup created the missing database: %v", err)
	}
}

// The snapshots of a SQLite source are of what brr.SourceInfo says they are.
func TestSQLiteSourceKey(t *testing.T) {
	info := brr.SourceInfo{Name: "appdb", Kind: brr.SourceSQLite, Path: "/srv/app.db"}
	if got, want := info.Key(), jobs.SourceKey("appdb"); got != want {
		t.Fatalf("SourceInfo.Key() = %q, want %q", got, want)
	}
}
