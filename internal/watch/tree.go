package watch

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr/internal/excludes"
)

// tree is what a Watcher watches of its source with inotify (through fsnotify): a
// directory tree, every directory of it (a path source), or a few files of one directory
// (a SQLite database and its journals), watched through their directory so that a file
// replaced by a rename is still seen. It belongs to one goroutine.
type tree struct {
	fsw *fsnotify.Watcher
	// root is the tree, or the directory of the files.
	root string
	// files are the names of the files watched in root, db the database's among them;
	// nil: the whole tree.
	files map[string]bool
	db    string
	// ignore are the paths under root whose changes are the worker's own.
	ignore []string
	// match is the source's own patterns: a directory they exclude is not watched, and
	// a change they exclude is not one.
	match *excludes.Matcher
	// dirs are the directories watched.
	dirs map[string]bool
	// full is set once a watch could not be added for want of inotify watches.
	full bool
	log  zerolog.Logger
}

// openTree starts watching src. An error means that not even the root could be watched
// (it does not exist, or inotify is out of instances).
func openTree(src Source, log zerolog.Logger) (*tree, error) {
	t := &tree{root: src.Path, dirs: make(map[string]bool), log: log}
	if src.SQLite != "" {
		t.root = filepath.Dir(src.SQLite)
		base := filepath.Base(src.SQLite)
		t.db = base
		t.files = map[string]bool{base: true, base + "-wal": true, base + "-journal": true}
	}
	for _, p := range src.Ignore {
		if p = filepath.Clean(p); strings.HasPrefix(p, t.root+"/") {
			t.ignore = append(t.ignore, p)
		}
	}
	match, err := excludes.New(src.Excludes)
	if err != nil {
		return nil, fmt.Errorf("excludes of source %s: %w", src.Name, err)
	}
	t.match = match
	if t.fsw, err = fsnotify.NewWatcher(); err != nil {
		return nil, fmt.Errorf("start inotify: %w (raise fs.inotify.max_user_instances)", err)
	}
	if err := t.fsw.Add(t.root); err != nil {
		_ = t.fsw.Close()
		return nil, fmt.Errorf("watch %s: %w", t.root, err)
	}
	t.dirs[t.root] = true
	if t.files == nil {
		if _, err := t.scan(time.Time{}); err != nil {
			_ = t.fsw.Close()
			return nil, err
		}
	}
	return t, nil
}

func (t *tree) close() error { return t.fsw.Close() }

// keep reports whether path, under root, is part of the source: not the worker's own,
// not excluded by the source's patterns.
func (t *tree) keep(path string, isDir bool) bool {
	if path == t.root {
		return true
	}
	if t.files != nil {
		return filepath.Dir(path) == t.root && t.files[filepath.Base(path)]
	}
	rel, ok := strings.CutPrefix(path, t.root+"/")
	if !ok {
		return false
	}
	for _, p := range t.ignore {
		if path == p || strings.HasPrefix(path, p+"/") {
			return false
		}
	}
	return !t.match.Excluded(rel, isDir)
}

// event takes in ev: it watches a directory that appeared, forgets one that went, and
// reports whether ev is a change to back up.
func (t *tree) event(ev fsnotify.Event) bool {
	if t.files != nil {
		return t.fileEvent(ev)
	}
	fi, statErr := os.Lstat(ev.Name)
	isDir := t.dirs[ev.Name] || statErr == nil && fi.IsDir()
	if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
		t.forget(ev.Name)
	}
	if !t.keep(ev.Name, isDir) {
		return false
	}
	if ev.Has(fsnotify.Create) && statErr == nil && fi.IsDir() {
		// What was made in it before its watch was added is not reported: the scan
		// watches its directories too. The change is pending anyway, and the backup
		// will read all of it.
		if _, err := t.scanFrom(ev.Name, time.Time{}); err != nil {
			t.log.Debug().Err(err).Str("path", ev.Name).Msg("watch new directory")
		}
	}
	return true
}

// fileEvent is event for a database: a write to it or to its journals, or the database
// file made, replaced or removed. A journal made or removed empty is not a change: a
// SQLite reader (the backup itself) makes the -wal file and removes it when it closes.
func (t *tree) fileEvent(ev fsnotify.Event) bool {
	if ev.Name == t.root {
		if ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename) {
			t.forget(t.root)
			return true
		}
		return false
	}
	if !t.keep(ev.Name, false) {
		return false
	}
	if ev.Has(fsnotify.Write) {
		return true
	}
	return filepath.Base(ev.Name) == t.db && (ev.Has(fsnotify.Create) || ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename))
}

// forget drops the watches of the directory path, gone or renamed, and of those below
// it: inotify keeps the watch of a directory renamed under its old name.
func (t *tree) forget(path string) {
	if !t.dirs[path] {
		return
	}
	for d := range t.dirs {
		if d == path || strings.HasPrefix(d, path+"/") {
			delete(t.dirs, d)
			_ = t.fsw.Remove(d)
		}
	}
}

// scan checks the whole source: it watches what lacks a watch (a directory whose
// creation was lost, the root that came back) and counts the entries that changed
// (ctime, which no tool can set back) after since.
func (t *tree) scan(since time.Time) (int, error) {
	if !t.dirs[t.root] {
		if err := t.fsw.Add(t.root); err != nil {
			return 0, fmt.Errorf("watch %s: %w", t.root, err)
		}
		t.dirs[t.root] = true
	}
	if t.files != nil {
		n := 0
		for name := range t.files {
			if fi, err := os.Lstat(filepath.Join(t.root, name)); err == nil && changedAfter(fi, since) {
				n++
			}
		}
		return n, nil
	}
	return t.scanFrom(t.root, since)
}

// scanFrom is scan of the directory dir of the tree.
func (t *tree) scanFrom(dir string, since time.Time) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if path == dir {
				return err
			}
			return nil // gone meanwhile, or unreadable: the backup will say
		}
		if !t.keep(path, d.IsDir()) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if fi, err := d.Info(); err == nil && changedAfter(fi, since) {
			n++
		}
		if d.IsDir() && !t.dirs[path] {
			t.add(path)
		}
		return nil
	})
	return n, err
}

// add watches the directory path; what it cannot watch is left to the rescan.
func (t *tree) add(path string) {
	err := t.fsw.Add(path)
	switch {
	case err == nil:
		t.dirs[path] = true
	case errors.Is(err, syscall.ENOSPC):
		if !t.full {
			t.full = true
			t.log.Warn().Err(err).Str("path", path).Int("watched_dirs", len(t.dirs)).
				Msg("out of inotify watches: changes below directories not watched are found by the periodic rescan only; raise fs.inotify.max_user_watches")
		}
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ENOTDIR):
		// gone meanwhile
	default:
		t.log.Debug().Err(err).Str("path", path).Msg("cannot watch directory")
	}
}

// changedAfter reports whether the inode of fi changed after since: its ctime, which
// every write, chmod, rename and link count change sets, and no tool can set back.
func changedAfter(fi fs.FileInfo, since time.Time) bool {
	if since.IsZero() {
		return false
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return time.Unix(st.Ctim.Unix()).After(since)
	}
	return fi.ModTime().After(since)
}
