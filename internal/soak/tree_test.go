package soak_test

import (
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"
)

// source is a tree the driver backs up again and again, changing it before each backup:
// hot/ gets new content every time (and is sometimes removed first, so that files
// disappear), cold/ every fourth time, so that a backup shares most of its data with
// the one before and some with older ones.
type source struct {
	dir  string
	seed uint64
	gen  int
}

// change rewrites the tree for its next backup and returns the bytes written.
func (s *source) change(t testing.TB) int64 {
	s.gen++
	seed := s.seed*1000 + uint64(s.gen)
	hot := filepath.Join(s.dir, "hot")
	if s.gen%5 == 0 {
		if err := os.RemoveAll(hot); err != nil {
			t.Errorf("remove %s: %v", hot, err)
		}
	}
	n := testkit.WriteTree(t, hot, testkit.Tree{Seed: seed, Sizes: []int{640 << 10, 192 << 10}, Small: 8 + s.gen%7})
	if s.gen%4 == 1 {
		n += testkit.WriteTree(t, filepath.Join(s.dir, "cold"), testkit.Tree{Seed: seed + 500, Sizes: []int{1 << 20, 384 << 10}, Small: 16})
	}
	return n
}

// entry is what a manifest keeps of one entry of a tree.
type entry struct {
	mode  fs.FileMode
	size  int64
	mtime time.Time // regular files only: directories' change as a restore fills them
	sum   [sha256.Size]byte
	link  string
}

// manifest describes a tree by relative path: what a restore of its snapshot must give
// back, byte for byte. The driver keeps one per snapshot instead of a copy of the tree.
type manifest map[string]entry

// manifestOf reads the tree at dir.
func manifestOf(dir string) (manifest, error) {
	m := manifest{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		e := entry{mode: fi.Mode()}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			if e.link, err = os.Readlink(p); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			e.size, e.mtime = fi.Size(), fi.ModTime()
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			_, err = io.Copy(h, f)
			f.Close()
			if err != nil {
				return err
			}
			copy(e.sum[:], h.Sum(nil))
		}
		m[rel] = e
		return nil
	})
	return m, err
}

// diff returns what differs between m (what was backed up) and got (what was
// restored), at most max lines.
func (m manifest) diff(got manifest, max int) []string {
	var out []string
	add := func(f string, a ...any) {
		if len(out) < max {
			out = append(out, fmt.Sprintf(f, a...))
		}
	}
	paths := make([]string, 0, len(m))
	for p := range m {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		w := m[p]
		g, ok := got[p]
		switch {
		case !ok:
			add("%s: missing", p)
		case g.mode != w.mode:
			add("%s: mode %v, want %v", p, g.mode, w.mode)
		case g.link != w.link:
			add("%s: link %q, want %q", p, g.link, w.link)
		case g.size != w.size || g.sum != w.sum:
			add("%s: content differs (%d bytes, want %d)", p, g.size, w.size)
		case !g.mtime.Equal(w.mtime):
			add("%s: mtime %v, want %v", p, g.mtime, w.mtime)
		}
	}
	for p := range got {
		if _, ok := m[p]; !ok {
			add("%s: not in the snapshot", p)
		}
	}
	return out
}

// files returns the number of regular files in m and their bytes.
func (m manifest) files() (n int, bytes int64) {
	for _, e := range m {
		if e.mode.IsRegular() {
			n++
			bytes += e.size
		}
	}
	return n, bytes
}
