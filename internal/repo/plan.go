package repo

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A plan is the record of packs a GC condemned: saved before anything else happens to
// them, so that every writer that reloads its index from then on stops reusing their
// blobs, and carried out (the packs deleted) by a later GC once the grace period has
// passed and no writer that started before the plan is still running.

// planObject is the stored form of a plan.
type planObject struct {
	V int `json:"v"`
	// Time is when the packs were condemned.
	Time time.Time `json:"time"`
	// Packs lists every pack condemned.
	Packs []ID `json:"packs"`
	// Repack lists the packs among Packs whose live blobs the GC copied into new packs.
	Repack []ID `json:"repack,omitempty"`
}

const planVersion = 1

// decodePlan parses the plaintext of a plan object.
func decodePlan(data []byte) (*planObject, error) {
	var p planObject
	if err := json.Unmarshal(data, &p); err != nil {
		return nil, fmt.Errorf("decode plan: %w", err)
	}
	if p.V != planVersion {
		return nil, fmt.Errorf("decode plan: version %d, this brr reads version %d", p.V, planVersion)
	}
	return &p, nil
}

// randomName returns a random object name, for objects not named by their content.
func randomName() string {
	var id ID
	_, _ = rand.Read(id[:]) // crypto/rand.Read never fails on supported platforms.
	return id.String()
}

// savePlan saves p under a new name and makes it known to this Repository at once.
func (r *Repository) savePlan(ctx context.Context, p *planObject) (string, error) {
	name := randomName()
	if err := r.saveJSON(ctx, Handle{Type: PlanFile, Name: name}, p); err != nil {
		return "", err
	}
	// Under indexMu, so that a ReloadIndex that listed the plans before this one was
	// saved cannot apply its listing afterwards and revive the packs.
	r.indexMu.Lock()
	r.idx.addPlan(name, p)
	r.indexMu.Unlock()
	return name, nil
}

// loadPlans returns the plans stored now, by name; plans already known are not read again
// (a plan is never changed). A plan that does not decrypt or decode is left out: no GC can
// carry it out either, and GC removes it.
func (r *Repository) loadPlans(ctx context.Context) (map[string]*planObject, error) {
	names, err := r.listNames(ctx, PlanFile)
	if err != nil {
		return nil, err
	}
	plans := make(map[string]*planObject, len(names))
	r.idx.mu.RLock()
	var todo []string
	for _, n := range names {
		if p := r.idx.plans[n]; p != nil {
			plans[n] = p
		} else {
			todo = append(todo, n)
		}
	}
	r.idx.mu.RUnlock()
	for _, name := range todo {
		p, err := r.loadPlan(ctx, name)
		switch {
		case IsNotExist(err) || errors.Is(err, ErrDamaged):
			continue
		case err != nil:
			return nil, err
		}
		plans[name] = p
	}
	return plans, nil
}

// loadPlan loads one plan; one that does not decrypt or decode gives an error wrapping
// ErrDamaged.
func (r *Repository) loadPlan(ctx context.Context, name string) (*planObject, error) {
	plain, err := r.loadObject(ctx, Handle{Type: PlanFile, Name: name})
	if err != nil {
		return nil, err
	}
	p, err := decodePlan(plain)
	if err != nil {
		return nil, fmt.Errorf("%w: plan %s: %w", ErrDamaged, name, err)
	}
	return p, nil
}

// removeDamagedPlans removes plan objects that do not decrypt or decode: ReloadIndex
// ignores them and no GC can carry them out, so they would stay forever; their packs, if
// still unused, are condemned again by a new plan.
func (g *gcRun) removeDamagedPlans(ctx context.Context) error {
	var names []string
	err := g.r.be.List(ctx, PlanFile, func(fi FileInfo) error {
		if g.plans[fi.Name] == nil {
			names = append(names, fi.Name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("list plans: %w", err)
	}
	for _, name := range names {
		if _, err := g.r.loadPlan(ctx, name); !errors.Is(err, ErrDamaged) {
			continue // a plan saved since the scan, or one that vanished
		}
		if err := g.r.be.Remove(ctx, Handle{Type: PlanFile, Name: name}); err != nil && !IsNotExist(err) {
			return fmt.Errorf("remove damaged plan %s: %w", name, err)
		}
	}
	return nil
}

// collect carries out the plans that are due (phase 2): for each, unless a writer that
// may have reused its packs before it knew of the plan is still running, it deletes the
// condemned packs that no snapshot needs, and keeps (resurrects) those holding the only
// copy of a blob that a snapshot uses. The order of the deletions leaves a repository that
// checks clean after a crash at any step.
func (g *gcRun) collect(ctx context.Context) error {
	now := g.opts.Now()
	var due []string
	for name, p := range g.plans {
		if !p.Time.Add(g.opts.Grace).After(now) {
			due = append(due, name)
		}
	}
	slices.SortFunc(due, func(a, b string) int { return g.plans[a].Time.Compare(g.plans[b].Time) })
	var run []string
	var postponed []string
	for _, name := range due {
		if why := g.blocker(name, now); why != "" {
			postponed = append(postponed, why)
			continue
		}
		run = append(run, name)
	}
	g.report.Postponed = strings.Join(postponed, "; ")
	if len(run) == 0 {
		return nil
	}

	doomed := make(map[ID]bool)
	for _, name := range run {
		for _, id := range g.plans[name].Packs {
			doomed[id] = true
		}
	}
	for name, p := range g.plans {
		if !slices.Contains(run, name) {
			for _, id := range p.Packs {
				delete(doomed, id) // another plan, not carried out now, condemns it too
			}
		}
	}
	keep, unused := g.resurrect(doomed)
	for id := range keep {
		delete(doomed, id)
	}
	g.report.PacksResurrected += len(keep)
	g.report.BlobsRemoved += unused
	var deleted []ID
	for id := range doomed {
		if _, ok := g.stored[id]; ok {
			deleted = append(deleted, id)
		}
	}
	sortIDs(deleted)
	if g.opts.DryRun {
		for _, id := range deleted {
			g.report.PacksDeleted++
			g.report.BytesFreed += g.stored[id]
		}
		for _, name := range run {
			delete(g.plans, name)
		}
		return nil
	}

	// 1. New index files for the packs kept, 2. the old index files removed: from then on
	// the condemned packs are unreferenced (a crash leaves orphans, not damage), 3. the
	// packs removed, 4. the plans removed, last, so that a reader never sees a plan gone
	// while an index file still names its deleted packs (see ReloadIndex).
	old, err := g.rewriteIndexes(ctx, doomed)
	if err != nil {
		return err
	}
	if err := g.step("index rewritten"); err != nil {
		return err
	}
	for _, name := range old {
		if err := g.r.be.Remove(ctx, Handle{Type: IndexFile, Name: name}); err != nil && !IsNotExist(err) {
			return fmt.Errorf("remove index %s: %w", name, err)
		}
	}
	if err := g.step("index removed"); err != nil {
		return err
	}
	for i, id := range deleted {
		if err := g.r.be.Remove(ctx, Handle{Type: PackFile, Name: id.String()}); err != nil && !IsNotExist(err) {
			return fmt.Errorf("remove pack %s: %w", id, err)
		}
		g.report.PacksDeleted++
		g.report.BytesFreed += g.stored[id]
		delete(g.stored, id)
		g.progress.report("delete", int64(i+1), int64(len(deleted)))
		if err := g.step("pack removed"); err != nil {
			return err
		}
	}
	for _, name := range run {
		if err := g.r.be.Remove(ctx, Handle{Type: PlanFile, Name: name}); err != nil && !IsNotExist(err) {
			return fmt.Errorf("remove plan %s: %w", name, err)
		}
	}
	if err := g.r.ReloadIndex(ctx); err != nil {
		return err
	}
	g.plans = g.r.idx.clonePlans()
	return nil
}

// blocker returns why plan name must wait, or "" when it may be carried out: a fresh
// writer lock whose writer did not know the plan when it loaded its index, so that it
// may have reused blobs of the condemned packs in a snapshot it has not saved yet.
func (g *gcRun) blocker(name string, now time.Time) string {
	for _, l := range g.locks {
		if l.err != nil {
			if errors.Is(l.err, ErrDamaged) {
				continue // not a live writer's: Save is atomic
			}
			return fmt.Sprintf("plan %s waits: writer lock %s cannot be read (%v)", name[:8], l.name[:8], l.err)
		}
		if now.Sub(l.obj.Refreshed) > g.opts.LockStale {
			continue
		}
		if !slices.Contains(l.obj.Plans, name) {
			return fmt.Sprintf("plan %s waits for %q on %s (writer lock taken %s, before it knew the plan)",
				name[:8], l.obj.Who, l.obj.Host, l.obj.Created.UTC().Format(time.RFC3339))
		}
	}
	return ""
}

// resurrect returns the packs of doomed that hold the canonical copy of a blob some
// snapshot uses: as the index prefers a copy in a pack no plan condemns, that is the only
// copy left. It also counts the blobs of the other doomed packs that no snapshot uses.
func (g *gcRun) resurrect(doomed map[ID]bool) (keep map[ID]bool, unused int64) {
	x := g.r.idx
	x.mu.RLock()
	defer x.mu.RUnlock()
	isDoomed := make([]bool, len(x.packs))
	for i, id := range x.packs {
		isDoomed[i] = doomed[id]
	}
	garbage := make([]int64, len(x.packs))
	keep = make(map[ID]bool)
	for k, e := range x.blobs.all() {
		if !isDoomed[e.pack] {
			continue
		}
		if g.used.has(k) {
			keep[x.packs[e.pack]] = true
		} else {
			garbage[e.pack]++
		}
	}
	for i, n := range garbage {
		if !keep[x.packs[i]] {
			unused += n
		}
	}
	return keep, unused
}

// rewriteIndexes saves, for every index file that names a pack of doomed, a new index
// file naming its other packs, and returns the names of the old ones.
func (g *gcRun) rewriteIndexes(ctx context.Context, doomed map[ID]bool) ([]string, error) {
	var names []string
	err := g.r.be.List(ctx, IndexFile, func(fi FileInfo) error {
		names = append(names, fi.Name)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list index files: %w", err)
	}
	slices.Sort(names)
	var old []string
	for _, name := range names {
		packs, err := g.r.readIndexFile(ctx, name)
		if IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("gc: %w; GC deletes nothing while an index file cannot be read; run verify", err)
		}
		kept := slices.DeleteFunc(slices.Clone(packs), func(p indexPack) bool { return doomed[p.ID] })
		if len(kept) == len(packs) {
			continue
		}
		if len(kept) > 0 {
			if err := g.r.saveIndex(ctx, kept); err != nil {
				return nil, err
			}
		}
		old = append(old, name)
	}
	return old, nil
}
