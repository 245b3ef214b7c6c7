package testkit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// goTB is the part of a testing.TB that Go uses, recorded: the cleanups it registers
// and the failures it reports.
type goTB struct {
	testing.TB
	cleanups []func()
	errs     []string
}

func (r *goTB) Helper()                   {}
func (r *goTB) Cleanup(f func())          { r.cleanups = append(r.cleanups, f) }
func (r *goTB) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }

func TestGo(t *testing.T) {
	errOther := errors.New("disk on fire")
	for _, tt := range []struct {
		name string
		run  func(ctx context.Context) error
		fail bool
	}{
		{"stops cleanly", func(ctx context.Context) error { <-ctx.Done(); return nil }, false},
		{"stopped while starting", func(ctx context.Context) error { <-ctx.Done(); return fmt.Errorf("start: %w", ctx.Err()) }, false},
		{"fails as it stops", func(ctx context.Context) error { <-ctx.Done(); return errOther }, true},
		{"fails while running", func(ctx context.Context) error { return errOther }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &goTB{TB: t}
			var stopped atomic.Bool
			testkit.Go(r, "loop", func(ctx context.Context) error {
				defer stopped.Store(true)
				return tt.run(ctx)
			})
			if len(r.cleanups) != 1 {
				t.Fatalf("Go registered %d cleanups, want 1", len(r.cleanups))
			}
			if !tt.fail && stopped.Load() {
				t.Fatal("the component stopped before the test ended")
			}
			r.cleanups[0]()
			if !stopped.Load() {
				t.Fatal("the component still ran after the cleanup")
			}
			if got := len(r.errs) > 0; got != tt.fail {
				t.Fatalf("failures %q, want a failure = %v", r.errs, tt.fail)
			}
		})
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
