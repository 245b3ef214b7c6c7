package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/fsio"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/restorer"
)

// maxDrillProblems bounds the problems a drill lists; DrillResult.ProblemCount has them all.
const maxDrillProblems = 100

// Drill is a restore drill: it restores a snapshot into a fresh directory under
// ScratchDir with the restore's own code, checks every entry of the copy against the
// snapshot (type, size, mode, symlink target, hard links, and the content of every file
// hashed chunk by chunk against the snapshot's blob ids), and removes the copy, whatever
// the outcome. A drill that finds problems returns its report and an error marked
// brr.Permanent, so that the job ends failed with the report.
func (e *Engine) Drill(ctx context.Context, jobID string, a brr.DrillJob, progress func(brr.Progress)) (*brr.DrillResult, error) {
	start := time.Now()
	pr := newReporter(progress)
	defer pr.flush()
	r, repoName, err := e.Repo(a.Repo)
	if err != nil {
		return nil, err
	}
	if err := a.Validate(); err != nil {
		return nil, brr.Permanent(err)
	}
	sn, err := r.FindSnapshot(ctx, a.Snapshot, a.Source, nil)
	if err != nil {
		if errors.Is(err, brr.ErrNotFound) {
			return nil, brr.Permanent(fmt.Errorf("find snapshot %q in repo %s: %w; list the snapshots with `brr snapshots --repo %s`", a.Snapshot, repoName, err, repoName))
		}
		return nil, fmt.Errorf("find snapshot %q in repo %s: %w", a.Snapshot, repoName, err)
	}
	return e.drill(ctx, r, repoName, sn, pr, start)
}

// runDrill runs a drill job; its outcome states recovery.drill_passed or drill_failed.
func (e *Engine) runDrill(ctx context.Context, job *brr.Job, a brr.DrillJob, rep brr.Reporter) (*brr.Outcome, error) {
	res, err := e.Drill(ctx, job.ID, a, progressOf(rep))
	if res == nil {
		return nil, err
	}
	return &brr.Outcome{Result: &brr.Result{Drill: res}, Events: []*brr.Event{drillEvent(res, err)}}, err
}

// drillEvent is the recovery.drill_passed or drill_failed event of the drill dr, of a
// drill job or a verify that ran one, whatever the job's end; err, the job's error, says
// why a drill failed.
func drillEvent(dr *brr.DrillResult, err error) *brr.Event {
	e := &brr.Event{Type: brr.EventRecovery, Status: brr.StatusDrillPassed,
		Repo: dr.Repo, Snapshot: dr.Snapshot, Source: dr.Source, Result: &brr.Result{Drill: dr}}
	if !dr.Passed {
		e.Status = brr.StatusDrillFailed
		if err != nil {
			e.Error = err.Error()
		}
	}
	return e
}

// verifyDrill runs the drill of a verify job with Drill: of the repo's newest snapshot.
// It sets res.Drill and returns the drill's error.
func (e *Engine) verifyDrill(ctx context.Context, r *repo.Repository, repoName string, res *brr.VerifyResult, pr *reporter) error {
	sn, err := r.FindSnapshot(ctx, "latest", "", nil)
	if errors.Is(err, brr.ErrNotFound) {
		return brr.Permanent(fmt.Errorf("repo %s has no snapshot to drill; back one up first, or verify without --drill", repoName))
	}
	if err != nil {
		return fmt.Errorf("find the newest snapshot of repo %s: %w", repoName, err)
	}
	dr, err := e.drill(ctx, r, repoName, sn, pr, time.Now())
	res.Drill = dr
	return err
}

// drill restores sn into scratch space, checks the copy and removes it.
func (e *Engine) drill(ctx context.Context, r *repo.Repository, repoName string, sn *repo.Snapshot, pr *reporter, start time.Time) (*brr.DrillResult, error) {
	if err := r.ReloadIndex(ctx); err != nil {
		return nil, fmt.Errorf("read the index of repo %s: %w", repoName, err)
	}
	scratch := e.ScratchDir
	if scratch == "" {
		scratch = os.TempDir()
	}
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return nil, fmt.Errorf("create scratch dir %s for the drill: %w", scratch, err)
	}
	// The restore and the check open the copy by a path without symlinks.
	scratch, err := filepath.EvalSymlinks(scratch)
	if err != nil {
		return nil, fmt.Errorf("resolve scratch dir %s for the drill: %w", e.ScratchDir, err)
	}
	dir, err := os.MkdirTemp(scratch, "drill-")
	if err != nil {
		return nil, fmt.Errorf("create a directory for the drill in %s: %w", scratch, err)
	}
	c := &drillCheck{r: r, root: dir, links: make(map[devIno]linkSeen)}
	err = c.run(ctx, e, sn, pr, start)
	if rerr := removeScratch(dir); rerr != nil {
		c.problem("", fmt.Sprintf("the drill's copy in %s could not be removed: %v; remove it by hand", dir, rerr))
	}
	if err != nil {
		return nil, err
	}

	problems := slices.Clone(c.problems)
	slices.Sort(problems)
	res := &brr.DrillResult{
		Repo:         repoName,
		Snapshot:     sn.ID.String(),
		Source:       sn.Source,
		Passed:       len(problems) == 0,
		Files:        c.files.Load(),
		Dirs:         c.dirs.Load(),
		Symlinks:     c.symlinks.Load(),
		Bytes:        c.bytes.Load(),
		Problems:     firstN(problems, maxDrillProblems),
		ProblemCount: len(problems),
		DurationMS:   time.Since(start).Milliseconds(),
	}
	if res.Passed {
		return res, nil
	}
	const shown = 5
	msg := strings.Join(firstN(problems, shown), "; ")
	if len(problems) > shown {
		msg += fmt.Sprintf("; and %d more", len(problems)-shown)
	}
	return res, brr.Permanent(fmt.Errorf("restore drill of snapshot %s in repo %s found %s: %s; run `brr verify --read-data --repo %s` to find damaged data, and restore those files from a replica or back them up again",
		sn.ID.Short(), repoName, problemCount(len(problems)), msg, repoName))
}

// problemCount says "1 problem" or "n problems".
func problemCount(n int) string {
	if n == 1 {
		return "1 problem"
	}
	return fmt.Sprintf("%d problems", n)
}

// drillCheck is one drill: the restore into root, then the check of what it wrote. The
// check reaches the copy through copy, relative to directory descriptors: a directory
// swapped for a symlink meanwhile is a problem found, never followed.
type drillCheck struct {
	r    *repo.Repository
	root string
	copy *fsio.Root // open during the check

	mu       sync.Mutex
	problems []string
	// failed holds the paths ("/a/b") the restore reported failures for: their absence
	// from the copy is that failure, not a second problem.
	failed map[string]bool
	// links maps a hard-linked inode of the snapshot to its first path in the copy.
	links map[devIno]linkSeen

	files, dirs, symlinks, bytes atomic.Int64
	checkedFiles                 atomic.Int64
}

// devIno identifies an inode of the snapshot: the hard links of one share it.
type devIno struct{ dev, ino uint64 }

type linkSeen struct {
	rel string
	ino uint64
}

// fileCheck is a file whose content is checked once the walk is done.
type fileCheck struct {
	rel  string
	node *repo.Node
}

func (c *drillCheck) problem(rel, what string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rel == "" {
		c.problems = append(c.problems, what)
		return
	}
	c.problems = append(c.problems, "/"+rel+": "+what)
}

// lstat stats the entry rel ("" for the copy's root) of the copy.
func (c *drillCheck) lstat(rel string) (unix.Stat_t, error) {
	var st unix.Stat_t
	err := c.copy.At(dotted(rel), func(dirfd int, name string) (err error) {
		st, err = fsio.Lstatat(dirfd, name)
		return err
	})
	return st, err
}

// chmod sets the mode bits of rel, not a symlink.
func (c *drillCheck) chmod(rel string, mode uint32) error {
	return c.copy.At(dotted(rel), func(dirfd int, name string) error { return fsio.Chmodat(dirfd, name, mode) })
}

// dotted is rel as fsio.Root takes it: "." for the root.
func dotted(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// run restores sn into c.root and checks the copy. It returns an error only when the
// drill could not run to its end (the job was cancelled, the repository could not be
// read); what the drill found is in c.problems.
func (c *drillCheck) run(ctx context.Context, e *Engine, sn *repo.Snapshot, pr *reporter, start time.Time) error {
	pl, err := restorer.NewPlan(ctx, c.r, sn, nil)
	if err != nil {
		if brr.IsPermanent(err) {
			c.problem("", fmt.Sprintf("the snapshot cannot be restored: %v", err))
			return nil
		}
		return fmt.Errorf("plan the restore of snapshot %s: %w", sn.ID.Short(), err)
	}
	rs := restorer.New(c.r, c.root, restorer.Options{Workers: e.parallelism()})
	stop := reportRestoreProgress(ctx, rs, pl, pr, start)
	err = rs.Run(ctx, pl)
	stop()
	if err != nil {
		return fmt.Errorf("restore snapshot %s into %s: %w", sn.ID.Short(), c.root, err)
	}
	if c.copy, err = fsio.OpenRoot(c.root); err != nil {
		return fmt.Errorf("open the drill's copy: %w", err)
	}
	defer c.copy.Close()
	c.failed = make(map[string]bool)
	for _, f := range rs.Failures() {
		c.problem("", "restore: "+f)
		// A failure reads "/path: reason"; a path may contain ": " itself.
		for i := strings.Index(f, ": "); i >= 0; {
			c.failed[f[:i]] = true
			j := strings.Index(f[i+2:], ": ")
			if j < 0 {
				break
			}
			i += 2 + j
		}
	}

	var files []fileCheck
	if err := c.walk(ctx, sn.Tree, "", &files); err != nil {
		return err
	}
	var total int64
	for _, f := range files {
		total += f.node.Size
	}
	stopCheck := c.reportProgress(ctx, pr, int64(len(files)), total, time.Now())
	defer stopCheck()
	return c.contents(ctx, files, e.parallelism())
}

// walk checks the entries of tree id, at rel in the copy, and what else the copy has
// there; it appends the files whose content is to be checked to files.
func (c *drillCheck) walk(ctx context.Context, id repo.ID, rel string, files *[]fileCheck) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tree, err := c.r.LoadTree(ctx, id)
	if err != nil {
		if errors.Is(err, repo.ErrDamaged) || errors.Is(err, repo.ErrNotInIndex) {
			c.problem(rel, fmt.Sprintf("the snapshot's listing of this directory cannot be read: %v", err))
			return nil
		}
		return fmt.Errorf("load tree of %q: %w", "/"+rel, err)
	}
	names := make(map[string]bool, len(tree.Nodes))
	for _, n := range tree.Nodes {
		names[n.Name] = true
		childRel := n.Name
		if rel != "" {
			childRel = rel + "/" + n.Name
		}
		if !c.entry(childRel, n, files) || n.Type != repo.NodeDir {
			continue
		}
		if err := c.walk(ctx, n.Subtree, childRel, files); err != nil {
			return err
		}
	}
	ents, err := c.copy.ReadDir(dotted(rel))
	if err != nil {
		c.problem(rel, fmt.Sprintf("cannot list the restored directory: %v", err))
		return nil
	}
	for _, ent := range ents {
		if !names[ent] {
			extra := ent
			if rel != "" {
				extra = rel + "/" + extra
			}
			c.problem(extra, "in the restored copy but not in the snapshot")
		}
	}
	return nil
}

// entry checks the entry at rel against node n and reports whether it is there with the
// right type (for a directory: whether to walk into it). A file that matches so far is
// appended to files for its content to be checked.
func (c *drillCheck) entry(rel string, n *repo.Node, files *[]fileCheck) bool {
	st, err := c.lstat(rel)
	if err != nil {
		if !c.failed["/"+rel] {
			c.problem(rel, fmt.Sprintf("missing from the restored copy (%v)", err))
		}
		return false
	}
	mode := fsio.ModeOf(st.Mode)
	var want string
	var ok bool
	switch n.Type {
	case repo.NodeDir:
		want, ok = "directory", mode.IsDir()
	case repo.NodeFile:
		want, ok = "file", mode.IsRegular()
	case repo.NodeSymlink:
		want, ok = "symlink", mode&fs.ModeSymlink != 0
	default:
		c.problem(rel, fmt.Sprintf("the snapshot has an entry of unknown type %q", n.Type))
		return false
	}
	if !ok {
		c.problem(rel, fmt.Sprintf("restored as a %s, the snapshot has a %s", fsio.Kind(mode), want))
		return false
	}
	if n.Type != repo.NodeSymlink {
		const bits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky
		if got, want := mode&bits, fsio.Perm(n.Mode); got != want {
			c.problem(rel, fmt.Sprintf("mode %v, the snapshot has %v", got, want))
		}
	}
	switch n.Type {
	case repo.NodeDir:
		c.dirs.Add(1)
		// Let the walk list it and the removal empty it, whatever mode it was given.
		if st.Mode&0o700 != 0o700 {
			if err := c.chmod(rel, st.Mode&0o7777|0o700); err != nil {
				c.problem(rel, fmt.Sprintf("cannot open the restored directory: %v", err))
				return false
			}
		}
	case repo.NodeSymlink:
		var target string
		err := c.copy.At(rel, func(dirfd int, name string) (err error) {
			target, err = fsio.Readlinkat(dirfd, name, st.Size)
			return err
		})
		switch {
		case err != nil:
			c.problem(rel, fmt.Sprintf("cannot read the restored symlink: %v", err))
		case target != n.LinkTarget:
			c.problem(rel, fmt.Sprintf("symlink to %q, the snapshot has %q", target, n.LinkTarget))
		default:
			c.symlinks.Add(1)
		}
	case repo.NodeFile:
		if st.Size != n.Size {
			c.problem(rel, fmt.Sprintf("%d bytes, the snapshot has %d", st.Size, n.Size))
			return true
		}
		if n.Links > 1 {
			ino := st.Ino
			key := devIno{n.DeviceID, n.Inode}
			if first, ok := c.links[key]; ok {
				if first.ino != ino {
					c.problem(rel, fmt.Sprintf("not a hard link of %q as in the snapshot", "/"+first.rel))
					return true
				}
				c.files.Add(1) // the same inode as a file whose content is checked
				return true
			}
			c.links[key] = linkSeen{rel: rel, ino: ino}
		}
		*files = append(*files, fileCheck{rel: rel, node: n})
	}
	return true
}

// contents checks the content of files, workers at a time.
func (c *drillCheck) contents(ctx context.Context, files []fileCheck, workers int) error {
	g, ctx := errgroup.WithContext(ctx)
	next := make(chan fileCheck)
	for range max(workers, 1) {
		g.Go(func() error {
			var buf []byte
			for f := range next {
				var err error
				if buf, err = c.content(ctx, f, buf); err != nil {
					return err
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(next)
		for _, f := range files {
			select {
			case next <- f:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	return g.Wait()
}

// content reads the restored file f and hashes it blob by blob: each run of RawLength
// bytes must have the id of the snapshot's blob at that place. buf is reused.
func (c *drillCheck) content(ctx context.Context, f fileCheck, buf []byte) ([]byte, error) {
	open := func() (fd int, err error) {
		err = c.copy.At(f.rel, func(dirfd int, name string) (err error) {
			fd, err = fsio.OpenFileAt(dirfd, name)
			return err
		})
		return fd, err
	}
	fd, err := open()
	if errors.Is(err, fs.ErrPermission) {
		// Restored with a mode that does not let its owner read it (as in the snapshot).
		if st, serr := c.lstat(f.rel); serr == nil && st.Mode&unix.S_IFMT == unix.S_IFREG && c.chmod(f.rel, st.Mode&0o7777|0o400) == nil {
			fd, err = open()
		}
	}
	if err != nil {
		c.problem(f.rel, fmt.Sprintf("cannot read the restored file: %v", err))
		return buf, nil
	}
	file := os.NewFile(uintptr(fd), f.rel)
	defer file.Close()
	var off int64
	for _, id := range f.node.Content {
		if err := ctx.Err(); err != nil {
			return buf, err
		}
		pb, ok := c.r.LookupBlob(repo.DataBlob, id)
		if !ok {
			c.problem(f.rel, fmt.Sprintf("blob %s at offset %d is not in the repository's index", id.Short(), off))
			return buf, nil
		}
		n := int(pb.RawLength)
		if cap(buf) < n {
			buf = make([]byte, n)
		}
		if _, err := io.ReadFull(file, buf[:n]); err != nil {
			c.problem(f.rel, fmt.Sprintf("cannot read %d bytes at offset %d of the restored file: %v", n, off, err))
			return buf, nil
		}
		if got := c.r.BlobID(buf[:n]); got != id {
			c.problem(f.rel, fmt.Sprintf("the %d bytes at offset %d differ from the snapshot's (blob %s, restored content hashes to %s)", n, off, id.Short(), got.Short()))
			return buf, nil
		}
		off += int64(n)
		c.bytes.Add(int64(n))
	}
	if off != f.node.Size {
		c.problem(f.rel, fmt.Sprintf("the snapshot's blobs hold %d bytes, its size is %d", off, f.node.Size))
		return buf, nil
	}
	c.files.Add(1)
	c.checkedFiles.Add(1)
	return buf, nil
}

// reportProgress reports the check's progress until the returned func is called.
func (c *drillCheck) reportProgress(ctx context.Context, pr *reporter, totalFiles, totalBytes int64, start time.Time) func() {
	return pr.tick(ctx, func() brr.Progress {
		p := brr.Progress{Phase: "check", Files: c.checkedFiles.Load(), Bytes: c.bytes.Load(), TotalFiles: totalFiles, TotalBytes: totalBytes}
		fillRate(&p, start, true)
		return p
	})
}

// removeScratch removes the drill's directory, first giving every directory in it the
// mode that lets its owner empty it (without following a symlink: the copy is reached
// through directory descriptors, as the check reaches it).
func removeScratch(dir string) error {
	if root, err := fsio.OpenRoot(dir); err == nil {
		makeRemovable(root, ".")
		root.Close()
	}
	return os.RemoveAll(dir)
}

// makeRemovable gives the directories below rel the mode bits that let their owner list
// and empty them.
func makeRemovable(root *fsio.Root, rel string) {
	names, err := root.ReadDir(rel)
	if err != nil {
		return
	}
	for _, name := range names {
		child := path.Join(rel, name)
		var st unix.Stat_t
		err := root.At(child, func(dirfd int, name string) (err error) {
			if st, err = fsio.Lstatat(dirfd, name); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
				return errors.New("not a directory")
			}
			if st.Mode&0o700 != 0o700 {
				return fsio.Chmodat(dirfd, name, st.Mode&0o7777|0o700)
			}
			return nil
		})
		if err == nil {
			makeRemovable(root, child)
		}
	}
}

// ClearScratch removes what drills and SQLite copies left in the scratch directory dir,
// which a worker killed during one does, and creates dir if need be. Call it at start,
// before any job runs.
func ClearScratch(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create scratch dir %s: %w", dir, err)
	}
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return fmt.Errorf("resolve scratch dir: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("read scratch dir %s: %w", dir, err)
	}
	for _, ent := range ents {
		// Drills restore into drill-*; SQLite sources copy their database into sqlite-*.
		if !strings.HasPrefix(ent.Name(), "drill-") && !strings.HasPrefix(ent.Name(), "sqlite-") {
			continue
		}
		if err := removeScratch(filepath.Join(dir, ent.Name())); err != nil {
			return fmt.Errorf("remove the leftovers of a drill or a database copy in scratch dir %s: %w", dir, err)
		}
	}
	return nil
}
