package jobs_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

// Files with the same content are restored from one load of each blob, each with its
// own metadata; one that cannot be written fails alone.
func TestRestoreOfCopies(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	big := randomBytes(11, 9<<20) // several tasks
	small := []byte("the same few bytes")
	mtime := time.Date(2020, 1, 2, 3, 4, 5, 600, time.UTC)
	for i := range 4 {
		for name, data := range map[string][]byte{"big": big, "small": small} {
			p := filepath.Join(src, fmt.Sprintf("copy%d", i), name)
			writeFile(t, p, data, os.FileMode(0o600+0o40*i))
			if err := os.Chtimes(p, mtime, mtime.Add(time.Duration(i)*time.Hour)); err != nil {
				t.Fatal(err)
			}
		}
	}
	writeFile(t, filepath.Join(src, "sparse"), make([]byte, 5<<20), 0o644)
	writeFile(t, filepath.Join(src, "sparse-copy"), make([]byte, 5<<20), 0o644)
	res := backup(t, b.engine, "copies-1", src)

	target := filepath.Join(t.TempDir(), "out")
	restore(t, b.engine, res.Snapshot, target)
	compareTrees(t, src, target)
	noTempFiles(t, target)

	// In an existing target, one copy is in the way: it fails, the others are restored.
	target2 := t.TempDir()
	writeFile(t, filepath.Join(target2, "copy2", "big"), []byte("local"), 0o644)
	_, err := b.engine.Restore(context.Background(), "copies-r2", brr.RestoreJob{Snapshot: res.Snapshot, Target: target2}, nil)
	if err == nil || !strings.Contains(err.Error(), "/copy2/big") || !strings.Contains(err.Error(), "1 of") {
		t.Fatalf("restore with one copy in the way: %v, want only /copy2/big to fail", err)
	}
	if got, _ := os.ReadFile(filepath.Join(target2, "copy2", "big")); string(got) != "local" {
		t.Fatalf("copy2/big = %d bytes, want the local file kept", len(got))
	}
	for _, c := range []string{"copy0", "copy1", "copy3"} {
		if got, _ := os.ReadFile(filepath.Join(target2, c, "big")); !bytes.Equal(got, big) {
			t.Errorf("%s/big: %d bytes, want the snapshot's", c, len(got))
		}
	}
	noTempFiles(t, target2)
}

// A restore cancelled at any point leaves no temporary file behind.
func TestCancelledRestoreLeavesNoTempFiles(t *testing.T) {
	b := setup(t)
	src := t.TempDir()
	for i := range 6 {
		writeFile(t, filepath.Join(src, fmt.Sprintf("big%d", i), "data"), randomBytes(uint64(40+i), 6<<20), 0o644)
		for j := range 50 {
			writeFile(t, filepath.Join(src, fmt.Sprintf("small%d", i), fmt.Sprintf("f%d", j)), randomBytes(uint64(1000*i+j), 3000), 0o644)
		}
	}
	res := backup(t, b.engine, "cancel-1", src)
	for _, after := range []time.Duration{0, 5 * time.Millisecond, 20 * time.Millisecond, 60 * time.Millisecond} {
		target := filepath.Join(t.TempDir(), "out")
		ctx, cancel := context.WithCancel(context.Background())
		timer := time.AfterFunc(after, cancel)
		_, err := b.engine.Restore(ctx, "cancel-r", brr.RestoreJob{Snapshot: res.Snapshot, Target: target}, nil)
		timer.Stop()
		cancel()
		t.Logf("cancelled after %v: %v", after, err)
		noTempFiles(t, target)
	}
}
