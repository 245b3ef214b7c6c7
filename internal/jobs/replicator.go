package jobs

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
)

// checkpointPacks is how many of the target's packs a replication sends between two
// checkpoints: a Flush (the target indexes what it got) and a blob map update. A
// replication that stops is taken up from its last checkpoint.
const checkpointPacks = 4

// replicator copies snapshots from src to dst for one job.
type replicator struct {
	src, dst *repo.Repository
	// w writes into dst for this job (copyAll starts it): it fails the job when a write
	// it relied on failed, and only then.
	w *repo.Writer
	// same: src and dst name blobs alike, and nothing needs rewriting.
	same            bool
	blobMap         BlobMap
	scope           string
	parallelism     int
	checkpointBytes int64
	pr              *reporter
	start           time.Time
	bufs            sync.Pool // *[]byte: a blob read from src

	mu sync.Mutex
	// trees maps source trees to target trees for the whole job; fresh maps the blobs
	// of both kinds met since the last checkpoint, which then go to the blob map.
	trees map[repo.ID]repo.ID
	fresh map[repo.ID]repo.ID
	// pendingBlobs and pendingBytes were sent since the last checkpoint, and are durable
	// in dst only after the next; sent and sentBytes are.
	pendingBlobs, pendingBytes int64
	sent, sentBytes            int64
	present                    int64
	warnings                   []string

	// Progress of the snapshot being copied.
	phase      string
	files      atomic.Int64
	bytes      atomic.Int64
	totalFiles int64
	totalBytes int64
}

func (e *Engine) newReplicator(src, dst *repo.Repository, pr *reporter) *replicator {
	rp := &replicator{
		src:             src,
		dst:             dst,
		same:            src.SharesIDKey(dst),
		scope:           BlobMapScope(src, dst),
		parallelism:     e.parallelism(),
		checkpointBytes: int64(checkpointPacks * dst.PackSize()),
		pr:              pr,
		start:           time.Now(),
		trees:           make(map[repo.ID]repo.ID),
		fresh:           make(map[repo.ID]repo.ID),
	}
	if !rp.same {
		// With the same key a blob's id is the same in both: there is nothing to map.
		rp.blobMap = e.BlobMap
	}
	rp.bufs.New = func() any { b := make([]byte, 0, 1<<20); return &b }
	return rp
}

// copyAll copies each snapshot of sns, in order, holding the target's writer lock, and
// calls copied with each, as saved in the target.
func (rp *replicator) copyAll(ctx context.Context, jobID, toName string, sns []*repo.Snapshot, copied func(*repo.Snapshot)) error {
	w, err := rp.dst.StartWriter(ctx, "replicate "+jobID)
	if err != nil {
		return fmt.Errorf("lock repo %s for writing: %w", toName, err)
	}
	defer w.Release()
	rp.w = w
	for i, sn := range sns {
		rp.phase = "copy " + sn.ID.Short()
		if len(sns) > 1 {
			rp.phase += fmt.Sprintf(" (%d/%d)", i+1, len(sns))
		}
		cp, err := rp.snapshot(ctx, sn)
		if err != nil {
			return fmt.Errorf("snapshot %s: %w", sn.ID.Short(), err)
		}
		copied(cp)
	}
	return nil
}

// snapshot copies sn's tree and everything below it, then saves the snapshot in dst.
func (rp *replicator) snapshot(ctx context.Context, sn *repo.Snapshot) (*repo.Snapshot, error) {
	rp.files.Store(0)
	rp.bytes.Store(0)
	rp.totalFiles, rp.totalBytes = sn.Files, sn.Bytes
	rp.mu.Lock()
	blobs0, bytes0 := rp.sent+rp.pendingBlobs, rp.sentBytes+rp.pendingBytes
	rp.mu.Unlock()

	hints, err := rp.lookup([]repo.ID{sn.Tree})
	if err != nil {
		return nil, err
	}
	tree, err := rp.tree(ctx, sn.Tree, hints[sn.Tree])
	if err != nil {
		return nil, err
	}
	if err := rp.checkpoint(ctx); err != nil {
		return nil, err
	}
	cp := &repo.Snapshot{
		ID:     sn.ID,
		Time:   sn.Time,
		Host:   sn.Host,
		Source: sn.Source,
		Tags:   sn.Tags,
		Parent: sn.Parent,
		Tree:   tree,
		JobID:  sn.JobID,
		Files:  sn.Files,
		Dirs:   sn.Dirs,
		Bytes:  sn.Bytes,
	}
	rp.mu.Lock()
	cp.BlobsAdded, cp.BytesAdded = rp.sent-blobs0, rp.sentBytes-bytes0
	rp.mu.Unlock()
	if err := rp.dst.SaveSnapshot(ctx, cp); err != nil {
		return nil, err
	}
	rp.report()
	return cp, nil
}

// lookup returns what the blob map knows of ids; nothing without a blob map.
func (rp *replicator) lookup(ids []repo.ID) (map[repo.ID]repo.ID, error) {
	if rp.blobMap == nil || len(ids) == 0 {
		return nil, nil
	}
	keys := make([][32]byte, len(ids))
	for i, id := range ids {
		keys[i] = id
	}
	found, err := rp.blobMap.LookupBlobMap(rp.scope, keys)
	if err != nil {
		return nil, err
	}
	out := make(map[repo.ID]repo.ID, len(found))
	for k, v := range found {
		out[k] = v
	}
	return out, nil
}

// known returns the target id of source blob id when this job or the blob map (hint)
// knows it and dst has that blob.
func (rp *replicator) known(t repo.BlobType, id, hint repo.ID) (repo.ID, bool) {
	if rp.same {
		return id, rp.dst.HasBlob(t, id)
	}
	rp.mu.Lock()
	mapped, ok := rp.fresh[id]
	if !ok && t == repo.TreeBlob {
		mapped, ok = rp.trees[id]
	}
	rp.mu.Unlock()
	if !ok && !hint.IsZero() {
		mapped, ok = hint, true
	}
	if ok && rp.dst.HasBlob(t, mapped) {
		return mapped, true
	}
	return repo.ID{}, false
}

// tree copies the source tree id and what is below it, and returns its id in dst. A tree
// that dst has comes with everything below it, which is not looked at.
func (rp *replicator) tree(ctx context.Context, id, hint repo.ID) (repo.ID, error) {
	if err := ctx.Err(); err != nil {
		return repo.ID{}, err
	}
	if tid, ok := rp.known(repo.TreeBlob, id, hint); ok {
		rp.record(repo.TreeBlob, id, tid, false, 0)
		return tid, nil
	}
	raw, err := rp.src.LoadBlob(ctx, repo.TreeBlob, id, nil)
	if err != nil {
		return repo.ID{}, fmt.Errorf("read from the source: %w", err)
	}
	t, err := repo.DecodeTree(raw)
	if err != nil {
		return repo.ID{}, fmt.Errorf("%w: tree %s in the source: %w", repo.ErrDamaged, id.Short(), err)
	}
	var ids []repo.ID
	var files int64
	for _, n := range t.Nodes {
		switch n.Type {
		case repo.NodeDir:
			ids = append(ids, n.Subtree)
		case repo.NodeFile:
			ids = append(ids, n.Content...)
			files++
		}
	}
	hints, err := rp.lookup(ids)
	if err != nil {
		return repo.ID{}, err
	}

	nodes := make([]*repo.Node, len(t.Nodes))
	for i, n := range t.Nodes {
		cp := *n
		nodes[i] = &cp
		if n.Type == repo.NodeDir {
			if cp.Subtree, err = rp.tree(ctx, n.Subtree, hints[n.Subtree]); err != nil {
				return repo.ID{}, err
			}
		}
	}
	if err := rp.content(ctx, nodes, hints); err != nil {
		return repo.ID{}, err
	}

	data, tid := raw, id
	if !rp.same {
		if data, err = repo.EncodeTree(&repo.Tree{Nodes: nodes}); err != nil {
			return repo.ID{}, fmt.Errorf("tree %s: %w", id.Short(), err)
		}
		tid = rp.dst.BlobID(data)
	}
	added, stored, err := rp.w.SaveBlob(ctx, repo.TreeBlob, tid, data)
	if err != nil {
		return repo.ID{}, fmt.Errorf("write to the target: %w", err)
	}
	rp.record(repo.TreeBlob, id, tid, added, stored)
	rp.mu.Lock()
	due := rp.pendingBytes >= rp.checkpointBytes
	rp.mu.Unlock()
	if due {
		if err := rp.checkpoint(ctx); err != nil {
			return repo.ID{}, err
		}
	}
	rp.files.Add(files)
	rp.report()
	return tid, nil
}

// content copies the data blobs of the file nodes, several at once, and points each node
// at the target's ids.
func (rp *replicator) content(ctx context.Context, nodes []*repo.Node, hints map[repo.ID]repo.ID) error {
	var ids []repo.ID
	seen := make(map[repo.ID]bool)
	for _, n := range nodes {
		for _, id := range n.Content {
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
		}
	}
	if len(ids) == 0 {
		return nil
	}
	mapped := make([]repo.ID, len(ids))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(rp.parallelism)
	for i, id := range ids {
		g.Go(func() error {
			var err error
			mapped[i], err = rp.data(gctx, id, hints[id])
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if rp.same {
		return nil
	}
	to := make(map[repo.ID]repo.ID, len(ids))
	for i, id := range ids {
		to[id] = mapped[i]
	}
	for _, n := range nodes {
		if len(n.Content) == 0 {
			continue
		}
		content := make([]repo.ID, len(n.Content))
		for j, id := range n.Content {
			content[j] = to[id]
		}
		n.Content = content
	}
	return nil
}

// data copies the data blob id, unless dst has it, and returns its id in dst.
func (rp *replicator) data(ctx context.Context, id, hint repo.ID) (repo.ID, error) {
	if did, ok := rp.known(repo.DataBlob, id, hint); ok {
		if pb, ok := rp.src.LookupBlob(repo.DataBlob, id); ok {
			rp.bytes.Add(int64(pb.RawLength))
		}
		rp.record(repo.DataBlob, id, did, false, 0)
		return did, nil
	}
	bp := rp.bufs.Get().(*[]byte)
	defer rp.bufs.Put(bp)
	data, err := rp.src.LoadBlob(ctx, repo.DataBlob, id, (*bp)[:0])
	if err != nil {
		return repo.ID{}, fmt.Errorf("read from the source: %w", err)
	}
	*bp = data[:0]
	did := id
	if !rp.same {
		did = rp.dst.BlobID(data)
	}
	added, stored, err := rp.w.SaveBlob(ctx, repo.DataBlob, did, data)
	if err != nil {
		return repo.ID{}, fmt.Errorf("write to the target: %w", err)
	}
	rp.record(repo.DataBlob, id, did, added, stored)
	rp.bytes.Add(int64(len(data)))
	rp.report()
	return did, nil
}

// record notes that source blob id is target blob did, sent now (added, stored bytes)
// or found in the target.
func (rp *replicator) record(t repo.BlobType, id, did repo.ID, added bool, stored int) {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	if !rp.same {
		rp.fresh[id] = did
		if t == repo.TreeBlob {
			rp.trees[id] = did
		}
	}
	if added {
		rp.pendingBlobs++
		rp.pendingBytes += int64(stored)
	} else {
		rp.present++
	}
}

// checkpoint makes what was sent so far durable in dst (Flush), counts it as sent, and
// records the blobs met since the last checkpoint in the blob map. It runs while no blob
// is being copied, so that everything counted as pending is flushed.
func (rp *replicator) checkpoint(ctx context.Context) error {
	rp.mu.Lock()
	blobs, bytes, fresh := rp.pendingBlobs, rp.pendingBytes, rp.fresh
	rp.pendingBlobs, rp.pendingBytes, rp.fresh = 0, 0, make(map[repo.ID]repo.ID)
	rp.mu.Unlock()
	if err := rp.w.Flush(ctx); err != nil {
		return fmt.Errorf("flush the target: %w", err)
	}
	rp.mu.Lock()
	rp.sent += blobs
	rp.sentBytes += bytes
	rp.mu.Unlock()
	if rp.blobMap == nil || len(fresh) == 0 {
		return nil
	}
	pairs := make(map[[32]byte][32]byte, len(fresh))
	for k, v := range fresh {
		pairs[k] = v
	}
	if err := rp.blobMap.UpdateBlobMap(rp.scope, pairs); err != nil {
		// The copy is durable; a blob map that lacks it only costs reading it again.
		rp.mu.Lock()
		if len(rp.warnings) == 0 {
			rp.warnings = append(rp.warnings, fmt.Sprintf("update blob map: %v (the next replication reads those blobs again)", err))
		}
		rp.mu.Unlock()
	}
	return nil
}

// report tells how far the snapshot being copied has got: files whose directory is
// done, and bytes of file data copied or found in the target.
func (rp *replicator) report() {
	if rp.pr == nil {
		return
	}
	p := brr.Progress{
		Phase:      rp.phase,
		Files:      min(rp.files.Load(), rp.totalFiles),
		Bytes:      min(rp.bytes.Load(), rp.totalBytes),
		TotalFiles: rp.totalFiles,
		TotalBytes: rp.totalBytes,
	}
	fillRate(&p, rp.start, true)
	rp.pr.report(p)
}
