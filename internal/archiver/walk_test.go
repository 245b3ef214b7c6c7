package archiver

import (
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The archiver stats entries with fstatat; the nodes it makes must say what os.Lstat says,
// as those of snapshots made before did (fsio's tests cover every kind of mode).
func TestNodeFromStatMatchesLstat(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, []byte("some bytes"), 0o640); err != nil {
		t.Fatal(err)
	}
	mtime := time.Date(2021, 2, 3, 4, 5, 6, 789, time.UTC)
	if err := os.Chtimes(file, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink("file", link); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o640); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{file, dir, link, fifo, "/dev/null"} {
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
		if !fi.Mode().IsRegular() && n.Size != 0 {
			t.Errorf("%s: node of a %v has size %d, want 0", p, fi.Mode().Type(), n.Size)
		}
		if st := fi.Sys().(*syscall.Stat_t); n.Inode != st.Ino || n.Links != uint64(st.Nlink) || n.UID != st.Uid {
			t.Errorf("%s: node %+v does not match %+v", p, n, st)
		}
	}
}
