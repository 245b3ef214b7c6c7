package repo

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"

	"github.com/zeebo/blake3"

	"github.com/brr-dev/brr"
)

// CheckOptions tune Check.
type CheckOptions struct {
	// ReadData reads every pack whole and decrypts and hashes every blob in it.
	ReadData bool
	// Progress, when set, is called as packs are read and snapshots walked; done counts
	// both, out of total.
	Progress func(done, total int64)
}

// CheckReport is what Check found.
type CheckReport struct {
	Snapshots, Packs, Blobs int
	BytesRead               int64
	// Damage lists every damaged or missing object, with the snapshots and paths using it.
	Damage []brr.Damage
	// Unreferenced lists packs no index file names: left by a crash or by a writer that
	// has not flushed yet. They are not damage.
	Unreferenced []ID
}

// OK reports whether Check found no damage.
func (c *CheckReport) OK() bool { return len(c.Damage) == 0 }

// checker holds the state of one Check.
type checker struct {
	r      *Repository
	report *CheckReport
	// bad maps a damaged blob to its entry in report.Damage.
	bad map[blobKey]int
	// badPack maps a damaged pack to its entry in report.Damage.
	badPack map[ID]int
	// clean holds trees known to contain no damage below them.
	clean    map[ID]bool
	done     int64
	total    int64
	progress func(done, total int64)
}

// Check verifies the repository. Structure: every index file decrypts, every pack an index
// names exists with the right size, every snapshot loads, every tree it references loads,
// and every blob referenced is in the index. With ReadData, every pack is also read whole:
// its name must match its content, and every blob must decrypt and match its id. Each
// problem is one Damage entry naming the pack or blob, the problem, and the snapshots and
// paths ("/dir/file") affected. Check returns an error only when it cannot run (the
// backend fails), never for damage.
func (r *Repository) Check(ctx context.Context, opts CheckOptions) (*CheckReport, error) {
	c := &checker{
		r:        r,
		report:   &CheckReport{},
		bad:      make(map[blobKey]int),
		badPack:  make(map[ID]int),
		clean:    make(map[ID]bool),
		progress: opts.Progress,
	}
	// A pack missing that a plan condemns means a GC is deleting it right now; it removed
	// the index files naming it first, so reloading the index once more leaves it out.
	var (
		packs  []ID
		sizes  []uint64
		byPack [][]packEntry
		stored map[ID]int64
	)
	for attempt := 0; ; attempt++ {
		if err := r.ReloadIndex(ctx); err != nil {
			return nil, err
		}
		var dead []bool
		packs, sizes, dead, byPack = c.indexView()
		var err error
		if stored, err = r.storedPacks(ctx); err != nil {
			return nil, err
		}
		collecting := false
		for i, p := range packs {
			if _, ok := stored[p]; !ok && dead[i] {
				collecting = true
			}
		}
		if !collecting || attempt > 0 {
			break
		}
	}
	r.idx.mu.RLock()
	for name, err := range r.idx.damaged {
		c.report.Damage = append(c.report.Damage, brr.Damage{Problem: fmt.Sprintf("index file %s: %v", name, err)})
	}
	r.idx.mu.RUnlock()
	c.report.Packs = len(packs)

	known := make(map[ID]bool, len(packs))
	for _, p := range packs {
		known[p] = true
	}
	for id := range stored {
		if !known[id] {
			c.report.Unreferenced = append(c.report.Unreferenced, id)
		}
	}
	slices.SortFunc(c.report.Unreferenced, func(a, b ID) int { return slices.Compare(a[:], b[:]) })

	snapIDs, err := r.snapshotNames(ctx)
	if err != nil {
		return nil, err
	}
	c.total = int64(len(snapIDs))
	if opts.ReadData {
		c.total += int64(len(packs))
	}

	for i, p := range packs {
		size, ok := stored[p]
		switch {
		case !ok:
			c.damagePack(p, byPack[i], "pack missing")
			continue
		case uint64(size) != sizes[i]:
			c.damagePack(p, byPack[i], fmt.Sprintf("pack is %d bytes, the index says %d", size, sizes[i]))
			continue
		}
		if opts.ReadData {
			if err := c.readPack(ctx, p, byPack[i]); err != nil {
				return nil, err
			}
		}
	}

	for _, id := range snapIDs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		sn, err := r.LoadSnapshot(ctx, id)
		if errors.Is(err, brr.ErrNotFound) {
			continue // removed since listed
		}
		if errors.Is(err, ErrDamaged) {
			c.report.Damage = append(c.report.Damage, brr.Damage{Problem: err.Error(), Snapshots: []string{id.String()}})
			c.step()
			continue
		}
		if err != nil {
			return nil, err
		}
		c.report.Snapshots++
		if _, err := c.walk(ctx, sn.ID.String(), "/", sn.Tree); err != nil {
			return nil, err
		}
		c.step()
	}
	return c.report, nil
}

// indexView copies what Check needs of the index: the packs, their sizes, whether a plan
// condemns them, and their blobs.
func (c *checker) indexView() (packs []ID, sizes []uint64, dead []bool, byPack [][]packEntry) {
	x := c.r.idx
	x.mu.RLock()
	defer x.mu.RUnlock()
	packs = slices.Clone(x.packs)
	sizes = slices.Clone(x.packSize)
	dead = slices.Clone(x.packDead)
	byPack = make([][]packEntry, len(packs))
	for k, e := range x.blobs.all() {
		byPack[e.pack] = append(byPack[e.pack], packEntry{Type: k.t, ID: k.id, Offset: e.offset, Length: e.length, RawLength: e.rawLength})
	}
	c.report.Blobs = x.blobs.len()
	return packs, sizes, dead, byPack
}

// storedPacks lists the packs in the backend and their sizes.
func (r *Repository) storedPacks(ctx context.Context) (map[ID]int64, error) {
	stored := make(map[ID]int64)
	err := r.be.List(ctx, PackFile, func(fi FileInfo) error {
		if id, err := ParseID(fi.Name); err == nil {
			stored[id] = fi.Size
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list packs: %w", err)
	}
	return stored, nil
}

func (c *checker) step() {
	c.done++
	if c.progress != nil {
		c.progress(c.done, c.total)
	}
}

// damagePack records a pack-wide problem for every blob of the pack.
func (c *checker) damagePack(p ID, entries []packEntry, problem string) {
	c.badPack[p] = len(c.report.Damage)
	c.report.Damage = append(c.report.Damage, brr.Damage{Pack: p.String(), Problem: problem})
	for _, e := range entries {
		c.bad[blobKey{e.ID, e.Type}] = c.badPack[p]
	}
}

// damageBlob records a problem of one blob.
func (c *checker) damageBlob(k blobKey, pack string, problem string) int {
	if i, ok := c.bad[k]; ok {
		return i
	}
	c.bad[k] = len(c.report.Damage)
	c.report.Damage = append(c.report.Damage, brr.Damage{Pack: pack, Blob: k.id.String(), Problem: problem})
	return c.bad[k]
}

// readPack reads pack p whole and checks its name, its header and every blob in it.
func (c *checker) readPack(ctx context.Context, p ID, entries []packEntry) error {
	defer c.step()
	data, err := c.r.be.Load(ctx, Handle{Type: PackFile, Name: p.String()}, 0, 0)
	if IsNotExist(err) {
		c.damagePack(p, entries, "pack missing")
		return nil
	}
	if err != nil {
		return fmt.Errorf("read pack %s: %w", p.Short(), err)
	}
	c.report.BytesRead += int64(len(data))
	if ID(blake3.Sum256(data)) != p {
		c.report.Damage = append(c.report.Damage, brr.Damage{Pack: p.String(), Problem: "pack content does not match its name"})
	}
	if _, err := c.r.readPackHeader(data); err != nil {
		c.report.Damage = append(c.report.Damage, brr.Damage{Pack: p.String(), Problem: err.Error()})
	}
	var buf []byte
	for _, e := range entries {
		k := blobKey{e.ID, e.Type}
		end := int64(e.Offset) + int64(e.Length)
		if end > int64(len(data)) {
			c.damageBlob(k, p.String(), "blob lies past the end of its pack")
			continue
		}
		ct := append([]byte(nil), data[e.Offset:end]...)
		out, err := c.r.openBlob(ct, buf, e.RawLength)
		if err == nil && c.r.BlobID(out) != e.ID {
			err = errors.New("content does not match the id")
		}
		if err != nil {
			c.damageBlob(k, p.String(), fmt.Sprintf("%s blob: %v", e.Type, err))
			continue
		}
		buf = out
	}
	return nil
}

// walk checks the tree id at dir and everything below it, attributing damage to snapshot
// sn and paths. It reports whether it found damage.
func (c *checker) walk(ctx context.Context, sn, dir string, id ID) (bool, error) {
	if c.clean[id] {
		return false, nil
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	tk := blobKey{id, TreeBlob}
	if i, ok := c.bad[tk]; ok {
		c.attribute(i, sn, dir)
		return true, nil
	}
	t, err := c.r.LoadTree(ctx, id)
	if err != nil {
		var i int
		switch {
		case errors.Is(err, ErrNotInIndex):
			i = c.damageBlob(tk, "", "tree blob not in the index")
		case errors.Is(err, ErrDamaged):
			pack := ""
			if pb, ok := c.r.LookupBlob(TreeBlob, id); ok {
				pack = pb.Pack.String()
			}
			i = c.damageBlob(tk, pack, err.Error())
		case IsNotExist(err):
			i = c.damageBlob(tk, "", "pack of tree blob missing")
		default:
			return false, err
		}
		c.attribute(i, sn, dir)
		return true, nil
	}
	damaged := false
	for _, n := range t.Nodes {
		p := path.Join(dir, n.Name)
		for _, b := range n.Content {
			k := blobKey{b, DataBlob}
			i, ok := c.bad[k]
			if !ok && !c.r.idx.present(k) {
				i, ok = c.damageBlob(k, "", "data blob not in the index"), true
			}
			if ok {
				c.attribute(i, sn, p)
				damaged = true
			}
		}
		if n.Type == NodeDir {
			d, err := c.walk(ctx, sn, p, n.Subtree)
			if err != nil {
				return false, err
			}
			damaged = damaged || d
		}
	}
	if !damaged {
		c.clean[id] = true
	}
	return damaged, nil
}

// attribute adds snapshot sn and path p to damage entry i.
func (c *checker) attribute(i int, sn, p string) {
	d := &c.report.Damage[i]
	if !slices.Contains(d.Snapshots, sn) {
		d.Snapshots = append(d.Snapshots, sn)
	}
	if !slices.Contains(d.Paths, p) {
		d.Paths = append(d.Paths, p)
	}
}
