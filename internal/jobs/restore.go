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
//
// When the repository cannot give the snapshot (it cannot be read, it does not have the
// snapshot, or a blob of it is missing or damaged), the restore falls back to each
// replica of the repository (ReplicateTo) in turn, and says so in the result: FellBackFrom,
// FallbackReason and a warning. The replica is asked for the snapshot by the id the
// repository resolved, or, when it could resolve nothing, by the job's reference. What
// the failed attempt restored stays: each of its files was checked against its blob ids
// as it was read, so only the rest comes from the replica, and nothing the failed attempt
// wrote is in the way. Entries that were in the target before the restore are kept unless
// Overwrite, as without a fallback.
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

	first := e.restoreFrom(ctx, r, repoName, a, a.Snapshot, target, nil, progress, start)
	replicas := e.replicasOf(repoName)
	if first.unreadable == "" || len(replicas) == 0 || ctx.Err() != nil {
		return first.result(a, start)
	}
	ref := a.Snapshot
	if first.sn != nil {
		ref = first.sn.ID.String()
	}
	var tried []string
	last := first
	for _, name := range replicas {
		att := e.restoreFrom(ctx, e.Repos[name], name, a, ref, target, last.rs, progress, start)
		if att.unreadable == "" {
			res, err := att.result(a, start)
			if res != nil {
				note := fmt.Sprintf("repo %s could not give snapshot %s (%s); restored from its replica %s", repoName, res.Snapshot, first.unreadable, name)
				if len(tried) > 0 {
					note += " after " + strings.Join(tried, "; ")
				}
				res.FellBackFrom = repoName
				res.FallbackReason = first.unreadable
				res.Warnings = append([]string{note}, res.Warnings...)
			}
			return res, err
		}
		tried = append(tried, fmt.Sprintf("replica %s: %s", name, att.unreadable))
		if att.rs != nil {
			last = att
		}
		if ctx.Err() != nil {
			break
		}
	}
	// Every attempt failed, each with an error: the last one that wrote says what the
	// target holds now.
	res, err := last.result(a, start)
	err = fmt.Errorf("%w; no replica could give it instead: %s", err, strings.Join(tried, "; "))
	if last.rs != nil {
		// Something was written, which a retry would trip over, as in a restore without
		// replicas.
		err = brr.Permanent(err)
	}
	return res, err
}

// runRestore runs a restore job; its outcome states recovery.restored when it succeeded.
func (e *Engine) runRestore(ctx context.Context, job *brr.Job, a brr.RestoreJob, rep brr.Reporter) (*brr.Outcome, error) {
	res, err := e.Restore(ctx, job.ID, a, progressOf(rep))
	if res == nil {
		return nil, err
	}
	out := &brr.Outcome{Result: &brr.Result{Restore: res}}
	if err == nil {
		out.Events = []*brr.Event{{Type: brr.EventRecovery, Status: brr.StatusRestored,
			Repo: res.Repo, Snapshot: res.Snapshot, Source: a.Source, Result: &brr.Result{Restore: res}}}
	}
	return out, err
}

// replicasOf returns the configured replicas of repo name.
func (e *Engine) replicasOf(name string) []string {
	var out []string
	for _, to := range e.ReplicateTo[name] {
		if r, ok := e.Repos[to]; ok && r != nil && to != name {
			out = append(out, to)
		}
	}
	return out
}

// restoreAttempt is one restore of the snapshot from one repository.
type restoreAttempt struct {
	repoName string
	sn       *repo.Snapshot // nil when the repository could not give it
	pl       *restorePlan
	rs       *restorer // nil when nothing was written
	err      error
	// unreadable says why the repository could not give the snapshot, when that is why
	// the attempt failed: a replica may give it whole.
	unreadable string
}

// restoreFrom restores the snapshot ref from repository r. With prev, the restorer of an
// attempt that failed, it restores only what prev did not.
func (e *Engine) restoreFrom(ctx context.Context, r *repo.Repository, repoName string, a brr.RestoreJob, ref, target string,
	prev *restorer, progress func(brr.Progress), start time.Time) *restoreAttempt {
	att := &restoreAttempt{repoName: repoName}
	// Read the index files other workers wrote, and forget packs a prune deleted, since
	// this worker loaded it.
	if err := r.ReloadIndex(ctx); err != nil {
		att.err = fmt.Errorf("read the index of repo %s: %w", repoName, err)
		if ctx.Err() == nil {
			att.unreadable = err.Error()
		}
		return att
	}
	sn, err := r.FindSnapshot(ctx, ref, a.Source, a.AsOf)
	switch {
	case errors.Is(err, brr.ErrNotFound):
		att.err = brr.Permanent(fmt.Errorf("find snapshot %q in repo %s: %w; list the snapshots with `brr snapshots --repo %s`", ref, repoName, err, repoName))
		att.unreadable = err.Error()
		return att
	case err != nil && ambiguous(ctx, r, ref):
		att.err = brr.Permanent(fmt.Errorf("find snapshot %q in repo %s: %w", ref, repoName, err))
		return att
	case err != nil:
		att.err = fmt.Errorf("find snapshot %q in repo %s: %w", ref, repoName, err)
		if ctx.Err() == nil {
			att.unreadable = err.Error()
		}
		return att
	}
	att.sn = sn
	pl, err := planRestore(ctx, r, sn, a.Paths)
	if err != nil {
		att.err = err
		if ctx.Err() == nil && (errors.Is(err, repo.ErrDamaged) || errors.Is(err, repo.ErrNotInIndex) || !brr.IsPermanent(err)) {
			att.unreadable = err.Error()
		}
		return att
	}
	if err := prepareTarget(target); err != nil {
		att.err = err
		return att
	}

	rs := newRestorer(r, target, a.Overwrite, e.parallelism())
	if prev != nil {
		pl = rs.resume(prev, pl)
	}
	att.pl, att.rs = pl, rs
	stop := rs.reportProgress(ctx, pl, progress, start)
	att.err = rs.run(ctx, pl)
	stop()
	if att.err == nil && len(rs.failures) > 0 && rs.loadFailed.Load() {
		att.unreadable = fmt.Sprintf("%d of %d entries could not be restored from it, first %s", len(rs.failures), pl.entries(), rs.failures[0])
	}
	return att
}

// ambiguous reports whether ref is an id prefix that matches several snapshots of r: no
// replica should resolve it to one of them instead.
func ambiguous(ctx context.Context, r *repo.Repository, ref string) bool {
	if ref == "latest" || len(ref) == 64 {
		return false
	}
	ids, err := r.MatchSnapshots(ctx, ref)
	return err == nil && len(ids) > 1
}

// resume makes rs carry on after prev, an attempt that failed: what prev restored counts
// as restored here, and is left out of the plan it returns.
func (rs *restorer) resume(prev *restorer, pl *restorePlan) *restorePlan {
	prev.restored.Range(func(k, v any) bool {
		rs.restored.Store(k, v)
		return true
	})
	rs.files.Store(prev.files.Load())
	rs.symlinks.Store(prev.symlinks.Load())
	rs.bytes.Store(prev.bytes.Load())
	done := func(rel string) bool {
		_, ok := prev.restored.Load(rel)
		return ok
	}
	out := &restorePlan{dirs: pl.dirs}
	for _, f := range pl.files {
		if !done(f.rel) {
			out.files = append(out.files, f)
			out.bytes += f.node.Size
		}
	}
	for _, s := range pl.symlinks {
		if !done(s.rel) {
			out.symlinks = append(out.symlinks, s)
		}
	}
	for _, h := range pl.hardlinks {
		if !done(h.rel) {
			out.hardlinks = append(out.hardlinks, h)
		}
	}
	return out
}

// result is the job's result and error after this attempt.
func (att *restoreAttempt) result(a brr.RestoreJob, start time.Time) (*brr.RestoreResult, error) {
	rs := att.rs
	if rs == nil {
		return nil, att.err
	}
	res := &brr.RestoreResult{
		Snapshot:   att.sn.ID.String(),
		Repo:       att.repoName,
		Target:     a.Target,
		Files:      rs.files.Load(),
		Dirs:       rs.dirs.Load(),
		Symlinks:   rs.symlinks.Load(),
		Bytes:      rs.bytes.Load(),
		DurationMS: time.Since(start).Milliseconds(),
	}
	if att.err != nil {
		return res, att.err
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
		return res, brr.Permanent(fmt.Errorf("restore of snapshot %s from repo %s into %s: %d of %d entries failed, the others were restored: %s",
			att.sn.ID.Short(), att.repoName, a.Target, len(rs.failures), att.pl.entries(), msg))
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
