package jobs

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/archiver"
	"github.com/brr-dev/brr/internal/repo"
)

// copyPages is how many pages of a SQLite database one step of its copy reads: the job
// checks for cancellation and reports progress between steps.
const copyPages = 1024

// busyTimeout is how long the copy waits for a writer of the database to let it read
// (rollback-journal databases only: in WAL mode readers do not wait for writers).
const busyTimeout = 10 * time.Second

// backupSQLite backs up a consistent copy of the SQLite database src.SQLite, taken with
// SQLite's online backup API while the database's writers keep writing. The copy goes to
// a file in scratch space, never whole into memory; the snapshot, of SourceKey(src.Name),
// holds that one file under the database's base name, and the copy is then removed. A
// restore writes the file back; see docs/sources.md for how to put it in place.
func (e *Engine) backupSQLite(ctx context.Context, jobID string, a brr.BackupJob, src *Source, r *repo.Repository, repoName string, pr *reporter, start time.Time) (_ *brr.BackupResult, _ *repo.Snapshot, err error) {
	key := SourceKey(src.Name)
	db, fi, err := e.checkSQLite(src)
	if err != nil {
		return nil, nil, err
	}
	name := filepath.Base(src.SQLite)
	if a.DryRun {
		return &brr.BackupResult{Repo: repoName, Source: key, Files: 1, Bytes: fi.Size(), DryRun: true,
			WouldRead: []string{name}, DurationMS: time.Since(start).Milliseconds()}, nil, nil
	}

	ctx, st, err := e.startBackup(ctx, jobID, r, repoName, key, key)
	if err != nil {
		return nil, nil, err
	}
	defer st.release()
	if st.committed != nil {
		return committedResult(repoName, st.committed, time.Since(start)), st.committed, nil
	}
	w := st.w

	dir, err := e.sqliteScratch()
	if err != nil {
		return nil, nil, err
	}
	defer os.RemoveAll(dir)
	copyPath := filepath.Join(dir, name)
	copied, err := copySQLite(ctx, db, copyPath, func(done, total int64) {
		p := brr.Progress{Phase: "copy", Bytes: done, TotalBytes: total}
		fillRate(&p, start, true)
		pr.report(p)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite source %s: copy %s: %w", src.Name, src.SQLite, err)
	}
	var warnings []string
	if problem := checkSQLiteCopy(ctx, copyPath); problem != "" {
		warnings = append(warnings, fmt.Sprintf("the copy of %s fails PRAGMA quick_check (%s): the database itself may be damaged; check it with PRAGMA integrity_check", src.SQLite, problem))
	}
	// The copy is restored with the database's permissions.
	if err := os.Chmod(copyPath, fi.Mode().Perm()); err != nil {
		return nil, nil, fmt.Errorf("set the mode of the copy of %s: %w", src.SQLite, err)
	}
	// Only the copy: SQLite leaves no journal once the copy is closed, but a snapshot must
	// never hold a stale one beside it.
	if err := keepOnly(dir, name); err != nil {
		return nil, nil, err
	}

	arch := archiver.New(w, dir, archiver.Options{Workers: e.parallelism(), Limits: e.backupLimits()})
	stopProgress := e.reportBackupProgress(ctx, dir, arch, pr, start)
	ar, err := arch.Run(ctx)
	stopProgress()
	if err != nil {
		return nil, nil, fmt.Errorf("back up the copy of %s: %w", src.SQLite, err)
	}
	sn := &repo.Snapshot{
		Time:       e.now().UTC(),
		Source:     key,
		Tags:       a.Tags,
		Tree:       ar.Tree,
		Files:      ar.Files,
		Dirs:       ar.Dirs,
		Bytes:      ar.Bytes,
		BlobsAdded: ar.BlobsAdded,
		BytesAdded: ar.BytesAdded,
	}
	if err := st.commit(ctx, sn); err != nil {
		return nil, nil, err
	}
	res := committedResult(repoName, sn, time.Since(start))
	res.FilesNew = ar.FilesNew
	res.BytesRead = copied
	res.Warnings = append(warnings, ar.Warnings...)
	return res, sn, nil
}

// checkSQLite checks that the source's database is a regular file inside the allowed
// roots, and returns its path with symlinks resolved and its file info.
func (e *Engine) checkSQLite(src *Source) (string, os.FileInfo, error) {
	what := "sqlite database of source " + src.Name
	db, err := e.resolveAllowed(what, src.SQLite)
	if err != nil {
		return "", nil, err
	}
	fi, err := os.Stat(db)
	switch {
	case err != nil && os.IsNotExist(err):
		return "", nil, brr.Permanent(fmt.Errorf("%s: %s does not exist on host %s; check sqlite: of the source in the worker's config", what, src.SQLite, e.Host))
	case err != nil:
		return "", nil, fmt.Errorf("stat %s %s: %w", what, src.SQLite, err)
	case !fi.Mode().IsRegular():
		return "", nil, brr.Permanent(fmt.Errorf("%s: %s is not a regular file; sqlite: names the database file itself", what, src.SQLite))
	}
	return db, fi, nil
}

// sqliteScratch makes a directory for the copy of a database in the engine's scratch
// space (the system's temporary directory when it has none).
func (e *Engine) sqliteScratch() (string, error) {
	scratch := e.ScratchDir
	if scratch == "" {
		scratch = os.TempDir()
	}
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return "", fmt.Errorf("create scratch dir %s for the copy of a database: %w", scratch, err)
	}
	dir, err := os.MkdirTemp(scratch, "sqlite-")
	if err != nil {
		return "", fmt.Errorf("create a directory for the copy of a database in %s: %w", scratch, err)
	}
	return dir, nil
}

// copySQLite copies the SQLite database at db to the new file dst with the online backup
// API, page by page, and returns the size of the copy. It holds one read transaction for
// the whole copy, so every step reads the same state of the database: the copy is that
// state, whatever writers commit meanwhile. In WAL mode they go on committing; in
// rollback-journal mode a writer's commit waits (for its busy timeout) until the copy is
// done. progress hears the bytes copied and the size of the database after each step.
//
// A file that is not a SQLite database fails with a permanent error.
func copySQLite(ctx context.Context, db, dst string, progress func(done, total int64)) (int64, error) {
	// mode=rw: never create the database (a missing one is an error, not an empty copy);
	// read-write since a reader of a WAL database writes its -shm. query_only keeps this
	// connection from changing anything.
	q := url.Values{"mode": {"rw"}, "_pragma": {fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()), "query_only(1)"}}
	pool, err := sql.Open("sqlite", sqliteURI(db, q))
	if err != nil {
		return 0, fmt.Errorf("open database: %w", err)
	}
	defer pool.Close()
	conn, err := pool.Conn(ctx)
	if err != nil {
		return 0, sqliteError("open database", db, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
		return 0, sqliteError("begin a read transaction", db, err)
	}
	// Ended whatever happens, even when the job was cancelled.
	defer conn.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
	// The first read takes the transaction's snapshot, and tells a database from any
	// other file.
	var tables int64
	if err := conn.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
		return 0, sqliteError("read the schema", db, err)
	}
	var pageSize int64
	if err := conn.QueryRowContext(ctx, "PRAGMA page_size").Scan(&pageSize); err != nil {
		return 0, sqliteError("read the page size", db, err)
	}

	err = conn.Raw(func(dc any) error {
		src, ok := dc.(interface {
			NewBackup(string) (*sqlite.Backup, error)
		})
		if !ok {
			return fmt.Errorf("the SQLite driver's connection (%T) has no online backup", dc)
		}
		b, err := src.NewBackup(sqliteURI(dst, nil))
		if err != nil {
			return fmt.Errorf("start the copy to %s: %w", dst, err)
		}
		for {
			more, err := b.Step(copyPages)
			if err != nil {
				_ = b.Finish()
				return err
			}
			if progress != nil {
				total := int64(b.PageCount())
				progress((total-int64(b.Remaining()))*pageSize, total*pageSize)
			}
			if !more {
				break
			}
			if err := ctx.Err(); err != nil {
				_ = b.Finish()
				return err
			}
		}
		return b.Finish()
	})
	if err != nil {
		return 0, sqliteError("copy pages", db, err)
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return 0, fmt.Errorf("stat the copy: %w", err)
	}
	return fi.Size(), nil
}

// checkSQLiteCopy runs PRAGMA quick_check on the copy at p and returns what it found
// wrong, "" when nothing. The copy is opened immutable: no lock, no journal, no -shm.
func checkSQLiteCopy(ctx context.Context, p string) string {
	pool, err := sql.Open("sqlite", sqliteURI(p, url.Values{"mode": {"ro"}, "immutable": {"1"}}))
	if err != nil {
		return err.Error()
	}
	defer pool.Close()
	rows, err := pool.QueryContext(ctx, "PRAGMA quick_check(10)")
	if err != nil {
		return err.Error()
	}
	defer rows.Close()
	var found []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return err.Error()
		}
		found = append(found, s)
	}
	if err := rows.Err(); err != nil {
		return err.Error()
	}
	if len(found) == 1 && found[0] == "ok" {
		return ""
	}
	return strings.Join(found, "; ")
}

// keepOnly removes every entry of dir but name.
func keepOnly(dir, name string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read scratch dir %s: %w", dir, err)
	}
	for _, ent := range ents {
		if ent.Name() != name {
			if err := os.RemoveAll(filepath.Join(dir, ent.Name())); err != nil {
				return fmt.Errorf("remove %s from scratch dir %s: %w", ent.Name(), dir, err)
			}
		}
	}
	return nil
}

// sqliteURI is the SQLite URI filename of the absolute path p with the query q: the
// path escaped, so that a '?', '#' or '%' in it is part of the name.
func sqliteURI(p string, q url.Values) string {
	u := url.URL{Scheme: "file", Path: p, OmitHost: true, RawQuery: q.Encode()}
	return u.String()
}

// sqliteError wraps err of step on the database db, marked permanent where retrying
// cannot help: the file is not a database, or a damaged one.
func sqliteError(step, db string, err error) error {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_NOTADB:
			return brr.Permanent(fmt.Errorf("%s is not a SQLite database (%s: %v); sqlite: must name a database file", db, step, err))
		case sqlite3.SQLITE_CORRUPT:
			return brr.Permanent(fmt.Errorf("%s is a damaged SQLite database (%s: %v); repair it, then check it with PRAGMA integrity_check", db, step, err))
		}
	}
	return fmt.Errorf("%s: %w", step, err)
}
