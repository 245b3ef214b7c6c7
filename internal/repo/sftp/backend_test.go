package sftp_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/sftp"
	"github.com/brr-dev/brr/internal/testkit"
)

// config returns the settings of a repository in a fresh directory on s.
func config(t *testing.T, s *testkit.SSHD) sftp.Config {
	t.Helper()
	return sftp.Config{
		User:           s.User,
		Host:           s.Host,
		Port:           s.Port,
		Path:           filepath.Join(t.TempDir(), "repo"),
		KeyFile:        s.UserKeyFile,
		KnownHostsFile: s.KnownHosts(t),
		Timeout:        10 * time.Second,
	}
}

// open opens the repository of cfg; it is closed when the test ends.
func open(t *testing.T, cfg sftp.Config) *sftp.Backend {
	t.Helper()
	be, err := sftp.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

func TestConformance(t *testing.T) {
	s := testkit.StartSSHD(t)
	backendtest.Run(t, func(t *testing.T) repo.Backend { return open(t, config(t, s)) })
}

func TestLocation(t *testing.T) {
	s := testkit.StartSSHD(t)
	cfg := config(t, s)
	be := open(t, cfg)
	want := "sftp://" + s.User + "@" + s.Addr + cfg.Path
	if got := be.Location(); got != want {
		t.Fatalf("Location() = %q, want %q", got, want)
	}
}

// The sshd serves this machine's files, so the test looks at what Save left on disk.
func TestLayout(t *testing.T) {
	s := testkit.StartSSHD(t)
	cfg := config(t, s)
	be := open(t, cfg)
	ctx := context.Background()
	name := "ab" + backendtest.RandomID(t)[2:]
	if err := be.Save(ctx, repo.Handle{Type: repo.PackFile, Name: name}, repo.NewByteReader([]byte("pack"))); err != nil {
		t.Fatal(err)
	}
	if err := be.Save(ctx, repo.Handle{Type: repo.ConfigFile, Name: "config"}, repo.NewByteReader([]byte("cfg"))); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"data/ab/" + name, "config"} {
		fi, err := os.Stat(filepath.Join(cfg.Path, p))
		if err != nil {
			t.Fatal(err)
		}
		if got, want := fi.Mode().Perm(), os.FileMode(0o600); got != want {
			t.Errorf("%s mode = %v, want %v", p, got, want)
		}
	}
	for _, p := range []string{"keys", "data", "data/00", "data/ff", "index", "snapshots", "pins", "plans", "locks"} {
		if fi, err := os.Stat(filepath.Join(cfg.Path, p)); err != nil || !fi.IsDir() {
			t.Errorf("%s: %v, want a directory", p, err)
		}
	}
	entries, err := os.ReadDir(filepath.Join(cfg.Path, "data", "ab"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("data/ab holds %d files, want only the pack (no temporary file left)", len(entries))
	}

	// A pack directory removed by hand is made again; opening again keeps what is there.
	if err := os.Remove(filepath.Join(cfg.Path, "data", "cd")); err != nil {
		t.Fatal(err)
	}
	be2 := open(t, cfg)
	other := "cd" + backendtest.RandomID(t)[2:]
	if err := be2.Save(ctx, repo.Handle{Type: repo.PackFile, Name: other}, repo.NewByteReader([]byte("other"))); err != nil {
		t.Fatalf("Save into a removed pack directory: %v", err)
	}
	if got, err := be2.Load(ctx, repo.Handle{Type: repo.PackFile, Name: name}, 0, 0); err != nil || string(got) != "pack" {
		t.Fatalf("Load after reopen = %q, %v", got, err)
	}
}

func TestRelativePath(t *testing.T) {
	s := testkit.StartSSHD(t)
	cfg := config(t, s)
	home, err := os.UserHomeDir()
	if err != nil {
		t.Skip(err)
	}
	// Relative to the login directory: a directory of its own under the temporary one.
	rel, err := filepath.Rel(home, cfg.Path)
	if err != nil || filepath.IsAbs(rel) {
		t.Skipf("%s is not reachable from %s", cfg.Path, home)
	}
	abs := cfg.Path
	cfg.Path = rel
	be := open(t, cfg)
	if got, want := be.Location(), "sftp://"+s.User+"@"+s.Addr+abs; got != want {
		t.Errorf("Location() = %q, want %q", got, want)
	}
	if err := be.Save(context.Background(), repo.Handle{Type: repo.ConfigFile, Name: "config"}, repo.NewByteReader([]byte("cfg"))); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(home, rel, "config")); err != nil {
		t.Fatalf("config not saved under the login directory: %v", err)
	}
}

func TestListSkipsTempFiles(t *testing.T) {
	s := testkit.StartSSHD(t)
	cfg := config(t, s)
	be := open(t, cfg)
	// What a crash, or a connection lost, in the middle of Save leaves behind.
	if err := os.WriteFile(filepath.Join(cfg.Path, "data", "12", ".tmp-123"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.Path, "snapshots", ".tmp-456"), []byte("partial"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, ft := range []repo.FileType{repo.PackFile, repo.SnapshotFile} {
		n := 0
		if err := be.List(context.Background(), ft, func(fi repo.FileInfo) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if n != 0 {
			t.Errorf("List(%s) returned %d objects, want the temporary file skipped", ft, n)
		}
	}
}

func TestBadNames(t *testing.T) {
	s := testkit.StartSSHD(t)
	backendtest.BadNames(t, open(t, config(t, s)))
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []sftp.Config{
		{Path: "/srv/repo", KeyFile: "k", KnownHostsFile: "kh"},
		{Host: "example.org", KeyFile: "k", KnownHostsFile: "kh"},
	} {
		if _, err := sftp.Open(context.Background(), cfg); err == nil {
			t.Errorf("Open(%+v) succeeded, want an error", cfg)
		}
	}
}

// A save cancelled while it writes stores nothing and leaves no temporary file.
func TestSaveCancelledMidway(t *testing.T) {
	s := testkit.StartSSHD(t)
	cfg := config(t, s)
	be := open(t, cfg)
	h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
	dir := filepath.Join(cfg.Path, "data", h.Name[:2])
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	saved := make(chan error, 1)
	go func() { saved <- be.Save(ctx, h, repo.NewByteReader(backendtest.RandomData(t, 32<<20))) }()
	testkit.Eventually(t, 10*time.Second, "a temporary file being written", func() bool {
		entries, _ := os.ReadDir(dir)
		return len(entries) > 0
	})
	cancel()
	if err := <-saved; !errors.Is(err, context.Canceled) {
		t.Fatalf("Save cancelled midway: %v, want context.Canceled", err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Fatalf("%s holds %d files after a cancelled save, want none", dir, len(entries))
	}
	if _, err := be.Stat(context.Background(), h); !errors.Is(err, repo.ErrNotExist) {
		t.Fatalf("Stat after a cancelled save: %v, want ErrNotExist", err)
	}
}
