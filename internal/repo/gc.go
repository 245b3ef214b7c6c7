package repo

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"time"
)

// DefaultGrace is the grace period when GCOptions.Grace is 0: condemned packs are deleted
// by a GC that runs at least this long after they were condemned.
const DefaultGrace = time.Hour

// DefaultRepackBelow is GCOptions.RepackBelow when it is 0: a pack whose live bytes are
// below this share of its size is repacked.
const DefaultRepackBelow = 0.5

// GCOptions tune GC. The zero value is right for production.
type GCOptions struct {
	// Grace is how long condemned packs stay before a GC deletes them; 0 means
	// DefaultGrace, a negative value (NoGrace) none: one GC condemns and deletes.
	Grace time.Duration
	// RepackBelow is the share of a pack's size under which its live bytes make GC copy
	// them into new packs and condemn the pack; 0 means DefaultRepackBelow, a negative
	// value never repacks (only packs with no live blob are condemned).
	RepackBelow float64
	// DryRun decides and reports, and changes nothing.
	DryRun bool
	// Exclude, with DryRun only, names snapshots to treat as removed: what a prune that
	// would remove them would free. GC refuses it without DryRun, since their data would go.
	Exclude []ID
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// LockStale is how long a writer lock may go unrefreshed before GC takes its writer
	// for dead and ignores it; 0 means DefaultLockStale.
	LockStale time.Duration
	// Progress, when set, is called as GC goes, a few times per second at most.
	Progress func(GCProgress)

	// step is a test hook called after each step that changes the repository; an error
	// stops GC there, as a crash would.
	step func(string) error
}

// NoGrace is a GCOptions.Grace that makes condemned packs due at once, so that one GC
// condemns and deletes them (when no writer is running): for tests and for emptying a
// repository nothing writes to.
const NoGrace = time.Duration(-1)

// GCProgress is what a running GC reports: Phase "mark" (snapshots walked), "repack"
// (blobs copied) or "delete" (packs deleted), and how far it is, Done of Total.
type GCProgress struct {
	Phase       string
	Done, Total int64
}

// GCReport is what a GC did (or, with DryRun, would do).
type GCReport struct {
	// PacksDeleted is how many condemned packs GC deleted; PacksResurrected how many it
	// kept because a snapshot saved after they were condemned needs them.
	PacksDeleted, PacksResurrected int
	// PacksCondemned is how many packs this GC condemned (to be deleted by a later GC);
	// PacksRepacked how many of those it condemned because few of their bytes are live,
	// after copying those into new packs.
	PacksCondemned, PacksRepacked int
	// BlobsRemoved counts the blobs, used by no snapshot, that the deleted packs held.
	BlobsRemoved int64
	// BytesFreed is the size of the packs deleted; BytesRepacked is what the blobs
	// copied take in the new packs (with DryRun: what they take in the old ones).
	BytesFreed, BytesRepacked int64
	// PendingPacks and PendingBytes are the packs condemned and not deleted yet, this
	// GC's included; a GC that runs after PendingUntil deletes them, if no writer that
	// started before they were condemned is still running. PendingUntil is zero when
	// nothing is pending.
	PendingPacks int
	PendingBytes int64
	PendingUntil time.Time
	// Postponed says why plans that were due were not carried out ("" when none was):
	// which writers GC waits for.
	Postponed string
}

// GC collects garbage: data that no snapshot present in the repository now refers to.
//
// It works in two phases with a grace period between them, so that it never deletes
// data a running backup relies on. It marks every blob that a snapshot uses. Phase 1
// condemns the packs with no live blob (none a snapshot uses, or only duplicates of
// copies elsewhere) and the packs mostly dead, whose live blobs it copies into new packs:
// it saves a plan naming them before anything else, and from then on every writer that
// reloads its index stops reusing their blobs. Phase 2, in a GC at least Grace later,
// carries out the plans that are due: it deletes their packs, except while a writer that
// started before it knew of a plan is still running (LockWriter), and except packs that
// hold the only copy of a blob a snapshot saved meanwhile uses. A crash at any step leaves
// a repository that checks clean.
//
// The caller must make sure that no other GC runs on the repository at the same time
// (the prune job holds the repository's lease); backups may run, in this process and in
// others. GC refuses to run, deleting nothing, when a snapshot, a tree or an index file
// cannot be read: the data it cannot see might be needed. On error, the report says what
// was done before it.
//
// In a repository opened with Options.AppendOnly, GC refuses to run, before it reads or
// writes anything, with an error wrapping ErrAppendOnly; with DryRun, which changes
// nothing, it runs.
func (r *Repository) GC(ctx context.Context, opts GCOptions) (*GCReport, error) {
	if len(opts.Exclude) > 0 && !opts.DryRun {
		return &GCReport{}, fmt.Errorf("gc: Exclude goes with DryRun only; remove the snapshots first")
	}
	if r.opts.AppendOnly && !opts.DryRun {
		return &GCReport{}, errAppendOnly("gc deletes and rewrites packs, index files and plans; " + runElsewhere)
	}
	g := &gcRun{r: r, opts: opts.withDefaults(), report: &GCReport{}}
	g.progress.fn = g.opts.Progress
	if err := g.scan(ctx); err != nil {
		return g.report, err
	}
	if err := g.collect(ctx); err != nil {
		return g.report, err
	}
	if !g.opts.DryRun {
		if err := g.removeStaleLocks(ctx); err != nil {
			return g.report, err
		}
		if err := g.removeDamagedPlans(ctx); err != nil {
			return g.report, err
		}
	}
	p, err := g.condemn(ctx)
	if err != nil {
		return g.report, err
	}
	if p != nil && !g.opts.DryRun && !p.Time.Add(g.opts.Grace).After(g.opts.Now()) {
		// Due at once: carry it out, after a scan that starts after the plan was saved
		// (see scan: the locks must be listed after the plan, the snapshots after them).
		if err := g.scan(ctx); err != nil {
			return g.report, err
		}
		if err := g.collect(ctx); err != nil {
			return g.report, err
		}
	}
	g.summarize()
	return g.report, nil
}

func (o GCOptions) withDefaults() GCOptions {
	switch {
	case o.Grace == 0:
		o.Grace = DefaultGrace
	case o.Grace < 0:
		o.Grace = 0
	}
	if o.RepackBelow == 0 {
		o.RepackBelow = DefaultRepackBelow
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.LockStale <= 0 {
		o.LockStale = DefaultLockStale
	}
	return o
}

// gcRun is one GC: its options, what its last scan found, and its report.
type gcRun struct {
	r        *Repository
	opts     GCOptions
	report   *GCReport
	progress gcProgress

	// From the last scan, in this order (collect relies on it): the writer locks, the
	// blobs the snapshots use, the plans (updated as GC goes), the packs stored and
	// their sizes.
	locks  []writerLock
	used   *usedSet
	plans  map[string]*planObject
	stored map[ID]int64
	// dryPlan is the plan a DryRun would have saved.
	dryPlan *planObject
}

func (g *gcRun) step(name string) error {
	if g.opts.step == nil {
		return nil
	}
	return g.opts.step(name)
}

// scan lists the writer locks, then the snapshots, and marks what the snapshots use, then
// reloads the index and lists the packs. The order is what makes phase 2 safe: a writer
// whose lock the listing missed had saved its snapshot before (so the mark sees it) or
// took its lock after (so it knew the plans, as they were saved before the scan), and a
// snapshot listed had its index saved before it.
func (g *gcRun) scan(ctx context.Context) error {
	r := g.r
	g.used = nil // the last scan's, not to be held while mark builds the new one
	locks, err := r.listLocks(ctx)
	if err != nil {
		return err
	}
	sns, err := r.Snapshots(ctx)
	if err != nil {
		return fmt.Errorf("gc: %w; GC deletes nothing while a snapshot cannot be read, as it may need any pack; run verify", err)
	}
	if len(g.opts.Exclude) > 0 {
		sns = slices.DeleteFunc(sns, func(sn *Snapshot) bool { return slices.Contains(g.opts.Exclude, sn.ID) })
	}
	if err := r.ReloadIndex(ctx); err != nil {
		return err
	}
	r.idx.mu.RLock()
	for name, err := range r.idx.damaged {
		r.idx.mu.RUnlock()
		return fmt.Errorf("gc: index file %s is damaged (%w); GC deletes nothing while it is, as packs only it names would look unused; run verify", name, err)
	}
	r.idx.mu.RUnlock()
	used, err := g.mark(ctx, sns)
	if err != nil {
		return err
	}
	stored, err := r.storedPacks(ctx)
	if err != nil {
		return err
	}
	g.locks, g.used, g.plans, g.stored = locks, used, r.idx.clonePlans(), stored
	return nil
}

// condemn is phase 1: it condemns the packs with no live blob, and those whose live
// bytes are below RepackBelow of their size after copying their live blobs into new
// packs. It saves the plan first, so that writers stop reusing these packs before any
// of them is touched. It returns the plan, or nil when there is nothing to condemn.
func (g *gcRun) condemn(ctx context.Context) (*planObject, error) {
	r := g.r
	r.mu.Lock()
	own := make(map[ID]bool, len(r.unindexed))
	for _, p := range r.unindexed {
		own[p.ID] = true // a backup of this process is writing it; its index is to come
	}
	r.mu.Unlock()

	var condemned, repack []ID
	var repackBytes int64
	x := r.idx
	x.mu.RLock()
	live := make([]int64, len(x.packs))
	for k, e := range x.blobs.all() {
		if g.used.has(k) {
			live[e.pack] += int64(e.length)
		}
	}
	for i, id := range x.packs {
		size, ok := g.stored[id]
		if x.packDead[i] || own[id] || !ok {
			continue // already condemned, being written, or not stored (damage: verify's business)
		}
		switch {
		case live[i] == 0:
			condemned = append(condemned, id)
		case float64(live[i]) < g.opts.RepackBelow*float64(size):
			condemned = append(condemned, id)
			repack = append(repack, id)
			repackBytes += live[i]
		}
	}
	for id := range g.stored {
		if _, ok := x.packIdx[id]; !ok && !x.dead[id] {
			condemned = append(condemned, id) // no index names it: a writer crashed, or has not flushed yet
		}
	}
	x.mu.RUnlock()
	if len(condemned) == 0 {
		return nil, nil
	}
	sortIDs(condemned)
	sortIDs(repack)
	p := &planObject{V: planVersion, Time: g.opts.Now().UTC(), Packs: condemned, Repack: repack}
	g.report.PacksCondemned += len(condemned)
	g.report.PacksRepacked += len(repack)
	if g.opts.DryRun {
		g.report.BytesRepacked += repackBytes
		g.dryPlan = p
		return p, nil
	}
	if _, err := r.savePlan(ctx, p); err != nil {
		return nil, err
	}
	if err := g.step("plan saved"); err != nil {
		return nil, err
	}
	if err := g.repack(ctx, repack); err != nil {
		return nil, err
	}
	return p, g.step("repacked")
}

// summarize fills in what is pending at the end.
func (g *gcRun) summarize() {
	plans := g.r.idx.clonePlans()
	if g.opts.DryRun {
		plans = g.plans // without the plans a real GC would have carried out
		if g.dryPlan != nil {
			plans["dry run"] = g.dryPlan
		}
	}
	now := g.opts.Now()
	for _, p := range plans {
		for _, id := range p.Packs {
			if size, ok := g.stored[id]; ok {
				g.report.PendingPacks++
				g.report.PendingBytes += size
			}
		}
		until := p.Time.Add(g.opts.Grace)
		if until.Before(now) {
			until = now // due, and postponed
		}
		if until.After(g.report.PendingUntil) {
			g.report.PendingUntil = until
		}
	}
	if g.report.PendingPacks == 0 {
		g.report.PendingUntil = time.Time{}
	}
}

// clonePlans returns a copy of the known plans.
func (x *index) clonePlans() map[string]*planObject {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return maps.Clone(x.plans)
}

func sortIDs(ids []ID) {
	slices.SortFunc(ids, func(a, b ID) int { return slices.Compare(a[:], b[:]) })
}

// gcProgress calls a GCProgress callback, at most a few times per second but always at
// the end of a phase.
type gcProgress struct {
	fn   func(GCProgress)
	last time.Time
}

// progressEvery is the least time between two progress reports of a phase.
const progressEvery = 250 * time.Millisecond

func (p *gcProgress) report(phase string, done, total int64) {
	if p.fn == nil || (done < total && time.Since(p.last) < progressEvery) {
		return
	}
	p.last = time.Now()
	p.fn(GCProgress{Phase: phase, Done: done, Total: total})
}
