package repo_test

import (
	"context"
	"runtime"
	"testing"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/testkit"
)

// Opening a repository derives its key with argon2id, which takes KDF.MemoryKiB of
// memory (64 MiB by default). Once the repository is open, that memory is returned to
// the system, not left resident in the process's heap for its first jobs to carry.
// (Not parallel: it reads the process's heap statistics.)
func TestOpenReleasesKDFMemory(t *testing.T) {
	const kdfMiB = 64
	dir := t.TempDir()
	be, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	kdf := repo.KDFParams{Time: 1, MemoryKiB: kdfMiB << 10, Threads: 1}
	r, err := repo.Init(context.Background(), be, []byte(testkit.Password), repo.Options{KDF: kdf})
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	r, err = repo.Open(context.Background(), be, []byte(testkit.Password), repo.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	// Resident heap that holds nothing: idle spans not yet returned to the system.
	if idle := m.HeapIdle - m.HeapReleased; idle >= kdfMiB<<20/2 {
		t.Errorf("after Open, %d MiB of the heap are idle and still resident, %d MiB in use: the key derivation's %d MiB were not returned",
			idle>>20, m.HeapInuse>>20, kdfMiB)
	}
	if m.HeapInuse >= kdfMiB<<20 {
		t.Errorf("after Open, %d MiB of the heap are in use: the key derivation's %d MiB are still held", m.HeapInuse>>20, kdfMiB)
	}
}
