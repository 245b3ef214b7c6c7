package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
)

// Restore writes a snapshot, or the parts of it named in a.Paths, into a.Target. It
// checks every name in the snapshot before writing anything, so a snapshot with an entry
// that would land outside the target is refused as a whole. Files are written in
// parallel, each to a temporary name in its directory and renamed when complete; a file
// that cannot be restored (a damaged blob, an existing file without Overwrite) leaves
// nothing at its name, the others are restored, and the error names every failed file.
func (e *Engine) Restore(ctx context.Context, jobID string, a brr.RestoreJob, progress func(brr.Progress)) (*brr.RestoreResult, error) {
	start := time.Now()
	r, repoName, err := e.Repo(a.Repo)
	if err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, brr.Permanent(err)
	}
	target, err := e.resolveAllowed("restore target", a.Target)
	if err != nil {
		return nil, err
	}
	sn, err := r.FindSnapshot(ctx, a.Snapshot, a.Source, a.AsOf)
	if err != nil {
		if errors.Is(err, brr.ErrNotFound) {
			return nil, brr.Permanent(fmt.Errorf("find snapshot %q in repo %s: %w; list the snapshots with `brr snapshots --repo %s`", a.Snapshot, repoName, err, repoName))
		}
		return nil, fmt.Errorf("find snapshot %q in repo %s: %w", a.Snapshot, repoName, err)
	}
	pl, err := planRestore(ctx, r, sn, a.Paths)
	if err != nil {
		return nil, err
	}
	if err := prepareTarget(target); err != nil {
		return nil, err
	}

	rs := newRestorer(r, target, a.Overwrite, e.parallelism())
	stop := rs.reportProgress(ctx, pl, progress, start)
	err = rs.run(ctx, pl)
	stop()
	res := &brr.RestoreResult{
		Snapshot:   sn.ID.String(),
		Repo:       repoName,
		Target:     a.Target,
		Files:      rs.files.Load(),
		Dirs:       rs.dirs.Load(),
		Symlinks:   rs.symlinks.Load(),
		Bytes:      rs.bytes.Load(),
		DurationMS: time.Since(start).Milliseconds(),
	}
	if err != nil {
		return res, err
	}
	if len(rs.failures) > 0 {
		const shown = 20
		parts := firstN(rs.failures, shown)
		msg := strings.Join(parts, "; ")
		if len(rs.failures) > shown {
			msg += fmt.Sprintf("; and %d more", len(rs.failures)-shown)
		}
		res.Warnings = rs.failures
		// What was written stays written, so running the same job again would only trip
		// over it: the failure is permanent, and the message says what to look at.
		return res, brr.Permanent(fmt.Errorf("restore of snapshot %s into %s: %d of %d entries failed, the others were restored: %s",
			sn.ID.Short(), a.Target, len(rs.failures), pl.entries(), msg))
	}
	return res, nil
}

// entry is one node of the snapshot to restore, at rel (slash-separated, relative to the
// target).
type entry struct {
	rel  string
	node *repo.Node
}

// restorePlan is everything a restore will create, checked before anything is written.
type restorePlan struct {
	dirs      []entry // parents before children
	files     []entry
	symlinks  []entry
	hardlinks []hardlink
	bytes     int64
}

func (pl *restorePlan) entries() int {
	return len(pl.dirs) + len(pl.files) + len(pl.symlinks) + len(pl.hardlinks)
}

type hardlink struct {
	entry
	leader string // rel of the file it links to
}

// planRestore loads the trees below the snapshot's root and checks every name. An entry
// whose name could escape the target, or that repeats a name of its directory, makes the
// whole restore fail, naming it.
func planRestore(ctx context.Context, r *repo.Repository, sn *repo.Snapshot, paths []string) (*restorePlan, error) {
	want := make([]string, 0, len(paths))
	for _, p := range paths {
		p = strings.Trim(path.Clean("/"+p), "/")
		if p == "" {
			want = nil
			break
		}
		want = append(want, p)
	}
	// wanted says whether the entry at rel is restored whole (full) or leads to a path
	// that is (ancestor); all is whether its directory is restored whole.
	wanted := func(rel string, all bool) (full, ancestor bool) {
		if all {
			return true, false
		}
		for _, p := range want {
			switch {
			case rel == p || strings.HasPrefix(rel, p+"/"):
				full = true
			case strings.HasPrefix(p, rel+"/"):
				ancestor = true
			}
		}
		return full, ancestor
	}
	trees := prefetchTrees(ctx, r, sn.Tree, len(want) == 0, wanted)

	pl := &restorePlan{}
	matched := make(map[string]bool)
	var bad []string
	leaders := make(map[devIno]string)
	var walk func(id repo.ID, rel string, all bool) error
	walk = func(id repo.ID, rel string, all bool) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		tf := trees[id]
		if tf.tree == nil && tf.err == nil {
			tf.tree, tf.err = r.LoadTree(ctx, id) // not prefetched: the prefetch was cut short
		}
		tree, err := tf.tree, tf.err
		if err != nil {
			err = fmt.Errorf("load tree of %q: %w", "/"+rel, err)
			if errors.Is(err, repo.ErrDamaged) {
				return brr.Permanent(err)
			}
			return err
		}
		names := make(map[string]bool, len(tree.Nodes))
		for _, n := range tree.Nodes {
			childRel := n.Name
			if rel != "" {
				childRel = rel + "/" + n.Name
			}
			if problem := badName(n.Name); problem != "" {
				bad = append(bad, fmt.Sprintf("%q in %q: %s", n.Name, "/"+rel, problem))
				continue
			}
			if names[n.Name] {
				bad = append(bad, fmt.Sprintf("%q: the name appears twice in its directory", "/"+childRel))
				continue
			}
			names[n.Name] = true
			full, ancestor := wanted(childRel, all)
			if !all && slices.Contains(want, childRel) {
				matched[childRel] = true
			}
			if !full && !ancestor {
				continue
			}
			switch n.Type {
			case repo.NodeDir:
				if n.Subtree.IsZero() {
					bad = append(bad, fmt.Sprintf("%q: directory without a tree", "/"+childRel))
					continue
				}
				pl.dirs = append(pl.dirs, entry{childRel, n})
				if err := walk(n.Subtree, childRel, full); err != nil {
					return err
				}
			case repo.NodeFile:
				if !full {
					continue
				}
				if n.Links > 1 {
					key := devIno{n.DeviceID, n.Inode}
					if leader, ok := leaders[key]; ok {
						pl.hardlinks = append(pl.hardlinks, hardlink{entry{childRel, n}, leader})
						continue
					}
					leaders[key] = childRel
				}
				pl.files = append(pl.files, entry{childRel, n})
				pl.bytes += n.Size
			case repo.NodeSymlink:
				if full {
					pl.symlinks = append(pl.symlinks, entry{childRel, n})
				}
			default:
				bad = append(bad, fmt.Sprintf("%q: unknown entry type %q", "/"+childRel, n.Type))
			}
		}
		return nil
	}
	if err := walk(sn.Tree, "", len(want) == 0); err != nil {
		return nil, err
	}
	if len(bad) > 0 {
		msg := strings.Join(firstN(bad, 10), "; ")
		if len(bad) > 10 {
			msg += fmt.Sprintf("; and %d more", len(bad)-10)
		}
		return nil, brr.Permanent(fmt.Errorf("snapshot %s has %d entries that cannot be restored safely, nothing was written: %s",
			sn.ID.Short(), len(bad), msg))
	}
	for _, p := range want {
		if !matched[p] {
			return nil, brr.Permanent(fmt.Errorf("path %q is not in snapshot %s; give a path relative to the snapshot's root", p, sn.ID.Short()))
		}
	}
	return pl, nil
}

// treeLoaders is how many trees a restore loads at once: on a cold cache each load
// waits for the disk, which serves many at once.
const treeLoaders = 8

type fetchedTree struct {
	tree *repo.Tree
	err  error
}

// prefetchTrees loads, treeLoaders at a time, the trees that planRestore will walk from
// root, so that its walk, which must see them in order, does not wait for each in turn.
// A tree that fails to load is returned with its error; planRestore reports it.
func prefetchTrees(ctx context.Context, r *repo.Repository, root repo.ID, all bool, wanted func(string, bool) (bool, bool)) map[repo.ID]fetchedTree {
	type job struct {
		id  repo.ID
		rel string
		all bool
	}
	var (
		mu    sync.Mutex
		cond  = sync.NewCond(&mu)
		queue = []job{{root, "", all}}
		busy  int // loads running
		trees = map[repo.ID]fetchedTree{}
		seen  = map[repo.ID]bool{root: true}
		wg    sync.WaitGroup
	)
	for range treeLoaders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			defer mu.Unlock()
			for {
				for len(queue) == 0 && busy > 0 {
					cond.Wait()
				}
				if len(queue) == 0 || ctx.Err() != nil {
					cond.Broadcast()
					return
				}
				j := queue[len(queue)-1]
				queue = queue[:len(queue)-1]
				busy++
				mu.Unlock()
				tree, err := r.LoadTree(ctx, j.id)
				mu.Lock()
				busy--
				trees[j.id] = fetchedTree{tree, err}
				if tree != nil {
					for _, n := range tree.Nodes {
						if n.Type != repo.NodeDir || n.Subtree.IsZero() || seen[n.Subtree] || badName(n.Name) != "" {
							continue
						}
						rel := n.Name
						if j.rel != "" {
							rel = j.rel + "/" + n.Name
						}
						full, ancestor := wanted(rel, j.all)
						if full || ancestor {
							seen[n.Subtree] = true
							queue = append(queue, job{n.Subtree, rel, full})
						}
					}
				}
				cond.Broadcast()
			}
		}()
	}
	wg.Wait()
	return trees
}

// badName says why name cannot be an entry of a directory, or "".
func badName(name string) string {
	switch {
	case name == "":
		return "empty name"
	case name == "." || name == "..":
		return "name would escape its directory"
	case strings.ContainsRune(name, '/'):
		return "name contains \"/\""
	case strings.ContainsRune(name, 0):
		return "name contains a NUL byte"
	case len(name) > 255:
		return "name is longer than 255 bytes"
	}
	return ""
}

// prepareTarget creates the target directory if needed and checks that it is one.
func prepareTarget(target string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return fmt.Errorf("create restore target %s: %w", target, err)
	}
	fi, err := os.Lstat(target)
	if err != nil {
		return fmt.Errorf("stat restore target %s: %w", target, err)
	}
	if !fi.IsDir() {
		return brr.Permanent(fmt.Errorf("restore target %s is not a directory; restore into a directory", target))
	}
	return nil
}
