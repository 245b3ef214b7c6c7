package testkit

import (
	"context"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
)

// Password is the password of the repositories InitRepo creates.
const Password = "correct horse battery staple"

// CheapKDF derives a repository's key in about a millisecond instead of a second
// (repo.DefaultKDF): tests create and open repositories by the hundred.
var CheapKDF = repo.KDFParams{Time: 1, MemoryKiB: 1024, Threads: 1}

// RepoOptions returns repository options for tests: CheapKDF, and 4 MiB packs rather
// than 16, so that an open repository holds less in memory and a test's backup of a few
// MiB fills more than one pack.
func RepoOptions() repo.Options {
	return repo.Options{PackSize: 4 << 20, KDF: CheapKDF}
}

// InitRepo creates a repository with Password and opts on a file backend in dir (which
// may or may not exist yet); it is closed when the test ends.
func InitRepo(t testing.TB, dir string, opts repo.Options) (*repo.Repository, *file.Backend) {
	t.Helper()
	be, err := file.Open(dir)
	if err != nil {
		t.Fatalf("open backend: %v", err)
	}
	r, err := repo.Init(context.Background(), be, []byte(Password), opts)
	if err != nil {
		t.Fatalf("init repo: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	return r, be
}

// StartWriter begins a writer into r, as a job does (see repo.Writer); it is released
// when the test ends.
func StartWriter(t testing.TB, r *repo.Repository) *repo.Writer {
	t.Helper()
	w, err := r.StartWriter(context.Background(), t.Name())
	if err != nil {
		t.Fatalf("start writer: %v", err)
	}
	t.Cleanup(w.Release)
	return w
}

// CheckClean checks r, reading and hashing every blob, and fails the test when the check
// fails or finds damage; it returns the report, for its counts.
func CheckClean(t testing.TB, r *repo.Repository) *repo.CheckReport {
	t.Helper()
	rep, err := r.Check(context.Background(), repo.CheckOptions{ReadData: true})
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	if !rep.OK() {
		t.Fatalf("check found damage: %+v", rep.Damage)
	}
	return rep
}
