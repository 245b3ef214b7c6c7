package testkit

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/brr-dev/brr/internal/natstest"
)

// Postgres is a private PostgreSQL cluster on a loopback port, for tests of database
// sources: its own data directory in a temporary directory, its socket there too, and
// trust authentication for the superuser postgres over TCP from 127.0.0.1. It touches no
// system cluster, no port but its own and no file outside its directory.
type Postgres struct {
	// Host and Port are where it listens: 127.0.0.1 and a port that was free.
	Host string
	Port int
	// User is the superuser clients log in as, without a password.
	User string
	// Dir holds the data directory (data/), the server's log (log) and its socket.
	Dir string

	bin   string   // the directory of initdb, pg_ctl and postgres
	runAs []string // the prefix that runs a server command as the postgres user, when root
}

// The client programs a test of database sources runs; the server's are looked for
// beside initdb.
var postgresClients = []string{"psql", "pg_dump", "pg_restore", "createdb"}

// StartPostgres initializes a cluster in a new temporary directory and starts it on a
// free loopback port; it is stopped and removed when the test ends. Run as root, the
// server runs as the user postgres (initdb refuses root), which must exist. Without the
// PostgreSQL programs (Debian: apt-get install postgresql) the test is skipped, except
// in CI (CI=true), where a missing server must not pass as a skip.
func StartPostgres(t testing.TB) *Postgres {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		how := fmt.Sprintf(format, args...) + "; install PostgreSQL with: apt-get install postgresql"
		if os.Getenv("CI") == "true" {
			t.Fatal(how)
		}
		t.Skip(how)
	}
	bin := postgresBinDir()
	if bin == "" {
		missing("initdb and pg_ctl not found (looked on PATH and in /usr/lib/postgresql/*/bin)")
	}
	for _, c := range postgresClients {
		if _, err := exec.LookPath(c); err != nil {
			missing("%s not found on PATH", c)
		}
	}
	p := &Postgres{Host: "127.0.0.1", Port: natstest.FreePort(t), User: "postgres", bin: bin}

	// Not t.TempDir: its parent is 0700 and root's, which the postgres user cannot enter.
	dir, err := os.MkdirTemp("", "brr-postgres-")
	if err != nil {
		t.Fatal(err)
	}
	p.Dir = dir
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			missing("running as root, and there is no user postgres to run the server as (initdb refuses root): %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatalf("give %s to postgres: %v", dir, err)
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			missing("running as root, and runuser (util-linux) is not found to run the server as postgres")
		}
		p.runAs = []string{runuser, "-u", "postgres", "--"}
	}

	p.server(t, "initdb", "-D", p.dataDir(), "-A", "trust", "-U", p.User, "-E", "UTF8", "--locale=C", "--no-sync")
	t.Cleanup(p.Stop)
	p.server(t, "pg_ctl", "-D", p.dataDir(), "-l", filepath.Join(dir, "log"), "-w", "-t", "60", "-o",
		fmt.Sprintf("-p %d -k %s -c listen_addresses=%s -c fsync=off -c full_page_writes=off", p.Port, dir, p.Host), "start")
	return p
}

// postgresBinDir is the directory of initdb and pg_ctl: on PATH, else the newest
// version's under /usr/lib/postgresql (Debian keeps them off PATH).
func postgresBinDir() string {
	if initdb, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(initdb); err == nil {
			initdb = real
		}
		dir := filepath.Dir(initdb)
		if _, err := os.Stat(filepath.Join(dir, "pg_ctl")); err == nil {
			return dir
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int {
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d
		}
	}
	return ""
}

func (p *Postgres) dataDir() string { return filepath.Join(p.Dir, "data") }

// server runs a server program (initdb, pg_ctl) as the server's user, and fails the test
// with its output and the server's log when it fails.
func (p *Postgres) server(t testing.TB, prog string, args ...string) {
	t.Helper()
	if err := p.runServer(prog, args...); err != nil {
		log, _ := os.ReadFile(filepath.Join(p.Dir, "log"))
		t.Fatalf("%v\nserver log:\n%s", err, log)
	}
}

func (p *Postgres) runServer(prog string, args ...string) error {
	argv := append(append(slices.Clone(p.runAs), filepath.Join(p.bin, prog)), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = p.Dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return nil
}

// Stop stops the server (fast shutdown: it rolls back open transactions) if it runs.
// StartPostgres has it called when the test ends.
func (p *Postgres) Stop() {
	if _, err := os.Stat(filepath.Join(p.dataDir(), "postmaster.pid")); err != nil {
		return
	}
	if err := p.runServer("pg_ctl", "-D", p.dataDir(), "-m", "fast", "-w", "-t", "30", "stop"); err != nil {
		_ = p.runServer("pg_ctl", "-D", p.dataDir(), "-m", "immediate", "-w", "stop")
	}
}

// Env is what a client program (psql, pg_dump, pg_restore, a brr-worker that runs them)
// needs in its environment to reach the server: PGHOST, PGPORT and PGUSER.
func (p *Postgres) Env() []string {
	return []string{"PGHOST=" + p.Host, "PGPORT=" + strconv.Itoa(p.Port), "PGUSER=" + p.User}
}

// DSN is the connection string of database db.
func (p *Postgres) DSN(db string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable", p.Host, p.Port, p.User, db)
}

// PsqlCommand returns a psql that runs in database db, stopping at the first error, with
// unaligned, tuples-only output: give it SQL with -c, or on its standard input.
func (p *Postgres) PsqlCommand(db string, args ...string) *exec.Cmd {
	cmd := exec.Command("psql", append([]string{"-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", db}, args...)...)
	cmd.Env = append(os.Environ(), p.Env()...)
	return cmd
}

// Psql runs sql in database db and returns its output, trimmed; it fails the test when
// psql fails.
func (p *Postgres) Psql(t testing.TB, db, sql string) string {
	t.Helper()
	cmd := p.PsqlCommand(db, "-c", sql)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("psql -d %s -c %q: %v\n%s", db, sql, err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}
