package testkit_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"
)

func TestWriteTreeSameSeedSameBytes(t *testing.T) {
	tree := testkit.Tree{Seed: 5, Sizes: []int{100, 13, 0}, Small: 2}
	a, b := t.TempDir(), t.TempDir()
	n := testkit.WriteTree(t, a, tree)
	if got := testkit.WriteTree(t, b, tree); got != n {
		t.Fatalf("bytes written = %d and %d for the same tree", n, got)
	}
	if want := int64(100 + 13 + 2*4096 + 13000); n != want {
		t.Fatalf("bytes written = %d, want %d", n, want)
	}
	for _, rel := range []string{"file-0.bin", "nested/file-1.bin", "file-2.bin", "nested/small-001", "nested/deeper/notes.txt", "empty"} {
		da, err := os.ReadFile(filepath.Join(a, rel))
		if err != nil {
			t.Fatal(err)
		}
		db, err := os.ReadFile(filepath.Join(b, rel))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(da, db) {
			t.Errorf("%s differs between two trees of one seed", rel)
		}
	}
	if target, err := os.Readlink(filepath.Join(a, "link")); err != nil || target != "nested/deeper/notes.txt" {
		t.Errorf("link -> %q, %v", target, err)
	}
}

func TestWriteTreeAgain(t *testing.T) {
	dir := t.TempDir()
	testkit.WriteTree(t, dir, testkit.Tree{Seed: 1, Sizes: []int{64}})
	first, err := os.ReadFile(filepath.Join(dir, "file-0.bin"))
	if err != nil {
		t.Fatal(err)
	}
	testkit.WriteTree(t, dir, testkit.Tree{Seed: 2, Sizes: []int{64}})
	second, err := os.ReadFile(filepath.Join(dir, "file-0.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Equal(first, second) {
		t.Fatal("a tree written again with another seed kept its content")
	}
}

func TestWriteFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "a", "b", "f")
	old := syscall.Umask(0o077)
	testkit.WriteFile(t, p, []byte("data"), 0o644)
	syscall.Umask(old)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := fi.Mode().Perm(), os.FileMode(0o644); got != want {
		t.Errorf("mode = %v, want %v", got, want)
	}
	if data, _ := os.ReadFile(p); string(data) != "data" {
		t.Errorf("content = %q, want %q", data, "data")
	}
}

func TestWaitFor(t *testing.T) {
	var calls atomic.Int32
	if !testkit.WaitFor(time.Second, func() bool { return calls.Add(1) == 3 }) {
		t.Fatal("WaitFor gave up on a condition that held on the third call")
	}
	start := time.Now()
	if testkit.WaitFor(50*time.Millisecond, func() bool { return false }) {
		t.Fatal("WaitFor reported a condition that never held")
	}
	if waited := time.Since(start); waited < 50*time.Millisecond {
		t.Fatalf("WaitFor gave up after %s, before its 50ms", waited)
	}
}

func TestGo(t *testing.T) {
	stopped := make(chan struct{})
	t.Run("component", func(t *testing.T) {
		testkit.Go(t, "loop", func(ctx context.Context) error {
			<-ctx.Done()
			close(stopped)
			return nil
		})
		select {
		case <-stopped:
			t.Fatal("the component stopped before the test ended")
		case <-time.After(10 * time.Millisecond):
		}
	})
	select {
	case <-stopped:
	default:
		t.Fatal("the component still ran after its test ended")
	}
}

func TestSyncBuffer(t *testing.T) {
	var b testkit.SyncBuffer
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 100 {
			_, _ = b.Write([]byte("x"))
		}
	}()
	_ = b.String() // read while written: the race detector checks this
	<-done
	if got := len(b.String()); got != 100 {
		t.Fatalf("len = %d, want 100", got)
	}
}
