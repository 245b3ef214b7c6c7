package jobs

import (
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The archiver stats entries with fstatat; the nodes it makes must say what os.Lstat says,
// as those of snapshots made before did.
func TestNodeFromStatMatchesLstat(t *testing.T) {
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
		n := nodeFromStat(fi.Name(), &st)
		if fs.FileMode(n.Mode) != fi.Mode() || !n.ModTime.Equal(fi.ModTime()) || (fi.Mode().IsRegular() && n.Size != fi.Size()) {
			t.Errorf("%s: node %+v does not match %v", p, n, fi)
		}
	}
}

func TestSmallBufferClasses(t *testing.T) {
	for _, n := range []int{0, 1, 1024, 1025, 4096, 100 << 10, 256 << 10, 256<<10 + 1} {
		bp := getSmall(n)
		if c := cap(*bp); c < n || (n > 1024 && c >= 2*n) {
			t.Errorf("getSmall(%d): cap %d", n, c)
		}
		putSmall(bp)
	}
}
