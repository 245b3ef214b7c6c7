package fsio

import (
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The archiver stats entries with fstatat; the modes it records must be those of os.Lstat,
// which snapshots made before recorded. What chmod is given back must be what stat said.
func TestModeOfMatchesLstat(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, perm os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, perm); err != nil {
			t.Fatal(err)
		}
		return p
	}
	paths := []string{
		mk("plain", 0o644),
		mk("exec", 0o755),
		mk("setuid", 0o755|os.ModeSetuid),
		mk("setgid", 0o750|os.ModeSetgid),
		mk("none", 0),
		dir,
	}
	sticky := filepath.Join(dir, "sticky")
	if err := os.Mkdir(sticky, 0o777); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(sticky, 0o777|os.ModeSticky); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("plain", link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o640); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	if l, err := net.Listen("unix", sock); err == nil {
		defer l.Close()
		paths = append(paths, sock)
	}
	paths = append(paths, sticky, link, fifo, "/dev/null")
	for _, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			t.Fatal(err)
		}
		if got, want := ModeOf(st.Mode), fi.Mode(); got != want {
			t.Errorf("%s: ModeOf = %v, want %v (os.Lstat)", p, got, want)
		}
		if got, want := UnixPerm(uint32(ModeOf(st.Mode))), st.Mode&0o7777; got != want {
			t.Errorf("%s: UnixPerm = %#o, want %#o (stat)", p, got, want)
		}
	}
}

func TestKind(t *testing.T) {
	for _, tt := range []struct {
		mode os.FileMode
		want string
	}{
		{0o644, "file"},
		{os.ModeDir | 0o755, "directory"},
		{os.ModeSymlink | 0o777, "symlink"},
		{os.ModeNamedPipe, "fifo"},
		{os.ModeSocket, "socket"},
		{os.ModeDevice | os.ModeCharDevice, "character device"},
		{os.ModeDevice, "device"},
		{os.ModeIrregular, "special file (?---------)"},
	} {
		if got := Kind(tt.mode); got != tt.want {
			t.Errorf("Kind(%v) = %q, want %q", tt.mode, got, tt.want)
		}
	}
}
