package sftp_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/sftp"
	"github.com/brr-dev/brr/internal/testkit"
)

func snapshotHandle(t *testing.T) repo.Handle {
	return repo.Handle{Type: repo.SnapshotFile, Name: backendtest.RandomID(t)}
}

func TestReconnect(t *testing.T) {
	s := testkit.StartSSHD(t)
	be := open(t, config(t, s))
	ctx := context.Background()
	h := snapshotHandle(t)
	if err := be.Save(ctx, h, repo.NewByteReader([]byte("one"))); err != nil {
		t.Fatal(err)
	}

	// A restart kills the connection: the next request dials again and succeeds.
	s.Restart(t)
	if got, err := be.Load(ctx, h, 0, 0); err != nil || string(got) != "one" {
		t.Fatalf("Load after sshd restarted = %q, %v", got, err)
	}
	if got, want := be.Dials(), 2; got != want {
		t.Fatalf("%d dials after one restart, want %d", got, want)
	}

	// Callers that find the connection gone at the same time share one new one.
	s.DropConnections(t)
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := be.Save(ctx, snapshotHandle(t), repo.NewByteReader([]byte("two"))); err != nil {
				t.Errorf("Save after the connection dropped: %v", err)
			}
			if _, err := be.Stat(ctx, h); err != nil {
				t.Errorf("Stat after the connection dropped: %v", err)
			}
		}()
	}
	wg.Wait()
	if got, want := be.Dials(), 3; got != want {
		t.Errorf("%d dials after the connection dropped under 8 callers, want %d (one shared)", got, want)
	}

	// With the server down, requests fail at once; when it is back, the next one dials.
	s.Stop()
	h3 := snapshotHandle(t)
	if err := be.Save(ctx, h3, repo.NewByteReader([]byte("three"))); err == nil {
		t.Fatal("Save with sshd stopped succeeded")
	} else {
		t.Logf("Save with sshd stopped: %v", err)
	}
	s.Start(t)
	if err := be.Save(ctx, h3, repo.NewByteReader([]byte("three"))); err != nil {
		t.Fatalf("Save after sshd came back: %v", err)
	}
	n := 0
	if err := be.List(ctx, repo.SnapshotFile, func(repo.FileInfo) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 10 {
		t.Fatalf("List found %d snapshots, want 10", n)
	}
}

// A connection dropped in the middle of large saves: each is tried again on a new
// connection, from the start of its file again (RewindReader), and no temporary file is
// left behind.
func TestReconnectDuringTransfer(t *testing.T) {
	s := testkit.StartSSHD(t)
	cfg := config(t, s)
	be := open(t, cfg)
	ctx := context.Background()
	data := backendtest.RandomData(t, 8<<20)
	f, err := os.CreateTemp(t.TempDir(), "pack-")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	const rounds = 3
	for i := 0; i < rounds; i++ {
		h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
		saved := make(chan error, 1)
		start := time.Now()
		go func() { saved <- be.Save(ctx, h, repo.NewFileReader(f, int64(len(data)))) }()
		// Drop the connection once the temporary file has some bytes in it.
		dir := filepath.Join(cfg.Path, "data", h.Name[:2])
		testkit.Eventually(t, 10*time.Second, "a temporary file being written", func() bool {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if fi, err := e.Info(); err == nil && strings.HasPrefix(e.Name(), ".tmp-") && fi.Size() > 0 {
					return true
				}
			}
			return false
		})
		s.DropConnections(t)
		if err := <-saved; err != nil {
			t.Fatalf("Save #%d, its connection dropped: %v", i, err)
		}
		t.Logf("Save #%d took %s with its connection dropped", i, time.Since(start).Round(time.Millisecond))
		if got, err := be.Load(ctx, h, 0, 0); err != nil || !bytes.Equal(got, data) {
			t.Fatalf("Load #%d = %d bytes, %v; want the %d saved", i, len(got), err, len(data))
		}
	}
	if got, want := be.Dials(), 1+rounds; got != want {
		t.Errorf("%d dials for %d dropped connections, want %d", got, rounds, want)
	}
	err = filepath.WalkDir(filepath.Join(cfg.Path, "data"), func(p string, d os.DirEntry, err error) error {
		if err == nil && strings.HasPrefix(d.Name(), ".tmp-") {
			t.Errorf("temporary file %s left behind", p)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A server that stops answering without closing anything is found out by keepalives:
// the request waiting on it is tried again on a new connection.
func TestReconnectFrozen(t *testing.T) {
	sftp.SetKeepalive(t, 200*time.Millisecond)
	s := testkit.StartSSHD(t)
	cfg := config(t, s)
	cfg.Timeout = time.Second
	be := open(t, cfg)
	ctx := context.Background()
	h := snapshotHandle(t)
	if err := be.Save(ctx, h, repo.NewByteReader([]byte("one"))); err != nil {
		t.Fatal(err)
	}
	s.FreezeConnections(t)
	start := time.Now()
	if got, err := be.Load(ctx, h, 0, 0); err != nil || string(got) != "one" {
		t.Fatalf("Load from a frozen connection = %q, %v", got, err)
	}
	t.Logf("Load took %s on a frozen connection", time.Since(start).Round(time.Millisecond))
	if got, want := be.Dials(), 2; got != want {
		t.Errorf("%d dials, want %d", got, want)
	}
}

func TestClosed(t *testing.T) {
	s := testkit.StartSSHD(t)
	be := open(t, config(t, s))
	if err := be.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := be.Stat(context.Background(), snapshotHandle(t)); !errors.Is(err, sftp.ErrClosed) {
		t.Fatalf("Stat after Close: %v, want ErrClosed", err)
	}
}
