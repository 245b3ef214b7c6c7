package natsobj

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"
)

// Ranged reads. The object store streams an object from its start, but it stores the
// object as messages of its stream, one per chunk (up to maxChunkSize bytes), on the
// subject "$O.<bucket>.C.<nuid>", and a message can be read on its own by its sequence
// (a direct get). So the backend reads a range of a pack as the chunks that hold it:
// a chunk map (the sequence and size of each chunk, learnt once per pack from a
// headers-only consumer, which sends no data) says which, and they are read in
// parallel, a bounded number at a time, straight into the caller's buffer.
//
// A chunk is checked as it comes (its subject is the object's chunk subject, its size
// the map's); the bytes themselves are checked by the repository, which authenticates
// and hashes every blob: a wrong range fails there. A chunk only partly read (the end
// of one range, the start of the next) is kept in a small cache bounded in bytes, so that
// reading a pack range after range does not fetch the chunks at their borders twice;
// it is dropped once its bytes were all read, or when the bound needs room.

const (
	// chunkCacheSize bounds the bytes of chunks kept for the next ranges.
	chunkCacheSize = 8 << 20
	// chunkGets is how many chunks a backend reads at once (a batch counts its chunks):
	// the bytes a backend holds in chunks being read, about chunkGets × maxChunkSize.
	chunkGets = 8
	// maxMaps bounds the chunk maps kept; past it they are all dropped (a map is about a
	// kilobyte, one per pack read recently).
	maxMaps = 4096
)

// msgSizeHeader is the header in which a headers-only consumer gives a message's size.
const msgSizeHeader = "Nats-Msg-Size"

// errStale says that a chunk is not where the map says: the object was replaced or
// removed since the map was made.
var errStale = errors.New("chunk not where the chunk map says (object replaced or removed?)")

// chunkMap is where the chunks of one version (NUID) of an object are.
type chunkMap struct {
	nuid string
	seqs []uint64
	ends []int64 // ends[i] is the offset just after chunk i; the last is the object's size
}

func (m *chunkMap) size() int64 { return m.ends[len(m.ends)-1] }

func (m *chunkMap) start(i int) int64 {
	if i == 0 {
		return 0
	}
	return m.ends[i-1]
}

// find returns the chunk that holds byte off.
func (m *chunkMap) find(off int64) int {
	return sort.Search(len(m.ends), func(i int) bool { return m.ends[i] > off })
}

// ranger reads ranges of objects by chunk.
type ranger struct {
	stream     jetstream.Stream
	streamName string // "OBJ_<bucket>"
	prefix     string // "$O.<bucket>.C."
	timeout    func(size int64) time.Duration
	recheck    time.Duration       // how long a chunk map is used without asking; negative: never
	sem        *semaphore.Weighted // a unit per chunk being read
	count      func(n int)         // counts the bytes read from the server

	// Batched direct gets (ranged_batch.go): nc and the request subject; noBatch when
	// they are not used.
	nc      *nats.Conn
	direct  string
	noBatch atomic.Bool

	mu      sync.Mutex
	maps    map[string]*mapFill // by object name
	getting map[chunkKey]*chunkGet
	cache   chunkCache
	running sync.WaitGroup // the prefetches
}

// mapFill is a chunk map, or the making of one, which concurrent reads share.
type mapFill struct {
	done chan struct{}
	m    *chunkMap
	err  error
	// checked is when the server last said that the object has m's NUID (under
	// ranger.mu).
	checked time.Time
}

func newRanger(stream jetstream.Stream, bucket string, recheck time.Duration, timeout func(int64) time.Duration, count func(int)) *ranger {
	r := &ranger{stream: stream, streamName: "OBJ_" + bucket, prefix: "$O." + bucket + ".C.", recheck: recheck, timeout: timeout,
		sem: semaphore.NewWeighted(chunkGets), count: count,
		maps: make(map[string]*mapFill), getting: make(map[chunkKey]*chunkGet)}
	r.noBatch.Store(true)
	r.cache.init(chunkCacheSize)
	return r
}

// known returns the chunk map of object name made earlier, if the server said less than
// recheck ago that it is the object's: a read with it does not ask the server for the
// object's info. A chunk not where the map says sends a read to ask; within recheck, a
// pack replaced by another process (same name, so the same bytes) may be read from the
// chunks of the old one that the chunk cache still has.
func (r *ranger) known(name string) *chunkMap {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.maps[name]; f != nil && r.recheck >= 0 {
		select {
		case <-f.done:
			if f.m != nil && time.Since(f.checked) < r.recheck {
				return f.m
			}
		default:
		}
	}
	return nil
}

// forget drops what is known of object name: it was saved, removed, or is not where
// its map says.
func (r *ranger) forget(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f := r.maps[name]; f != nil {
		delete(r.maps, name)
		select {
		case <-f.done:
			if f.m != nil {
				r.cache.dropObject(f.m.nuid, len(f.m.seqs))
			}
		default:
		}
	}
}

// chunkMap returns the chunk map of object name as info describes it, making it when
// it is not known, or shares the making of it under way.
func (r *ranger) chunkMap(ctx context.Context, name string, info *jetstream.ObjectInfo) (*chunkMap, error) {
	r.mu.Lock()
	f := r.maps[name]
	if f != nil {
		select {
		case <-f.done:
			if f.m == nil || f.m.nuid != info.NUID {
				f = nil // failed, or of another version
			} else {
				f.checked = time.Now() // info, just asked for, says it is current
			}
		default:
		}
	}
	if f == nil {
		if len(r.maps) >= maxMaps {
			clear(r.maps)
		}
		f = &mapFill{done: make(chan struct{})}
		r.maps[name] = f
		r.mu.Unlock()
		mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.timeout(0))
		m, err := r.makeMap(mctx, info)
		cancel()
		r.mu.Lock()
		f.m, f.err, f.checked = m, err, time.Now()
		if err != nil && r.maps[name] == f {
			delete(r.maps, name)
		}
		r.mu.Unlock()
		close(f.done)
	} else {
		r.mu.Unlock()
	}
	select {
	case <-f.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if f.err != nil {
		return nil, f.err
	}
	if f.m.nuid != info.NUID {
		return nil, errStale
	}
	return f.m, nil
}

// makeMap learns where the chunks of the object info describes are. Most objects were
// put by one Put at a time into their stream, in chunks of the chunk size but the last:
// their first and last chunk (read with their data, which the chunk cache keeps for the
// reads to come) then say where every chunk is. Otherwise a headers-only consumer of the
// object's chunk subject sends the sequence and size of each, no data.
func (r *ranger) makeMap(ctx context.Context, info *jetstream.ObjectInfo) (*chunkMap, error) {
	n := int(info.Chunks)
	if n <= 0 || info.Size == 0 {
		return nil, fmt.Errorf("object %s has %d chunks of %d bytes: no chunk map", info.Name, info.Chunks, info.Size)
	}
	if m, err := r.uniformMap(ctx, info); m != nil || ctx.Err() != nil {
		return m, err
	}
	return r.consumerMap(ctx, info)
}

// uniformMap returns the chunk map of an object whose chunks are contiguous in the stream
// and all of the object's chunk size but the last, from its first and last chunk; nil
// when they are not (or the chunks could not be read: the consumer will tell). It
// proves the sizes: when the first chunk has the chunk size, which no chunk exceeds, the
// n-2 between the first and the last can only add up to n-2 chunk sizes if each has it.
func (r *ranger) uniformMap(ctx context.Context, info *jetstream.ObjectInfo) (*chunkMap, error) {
	if info.Opts == nil || info.Opts.ChunkSize == 0 {
		return nil, nil
	}
	n, cs, size := int64(info.Chunks), int64(info.Opts.ChunkSize), int64(info.Size)
	subj := r.prefix + info.NUID
	first, err := r.getBy(ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
		return r.stream.GetMsg(ctx, 0, jetstream.WithGetMsgSubject(subj))
	})
	if err != nil || first.Subject != subj || int64(len(first.Data)) != min(cs, size) {
		return nil, nil
	}
	last := first
	if n > 1 {
		last, err = r.getBy(ctx, func(ctx context.Context) (*jetstream.RawStreamMsg, error) {
			return r.stream.GetLastMsgForSubject(ctx, subj)
		})
		if err != nil || last.Subject != subj {
			return nil, nil
		}
	}
	cl := int64(len(last.Data))
	if last.Sequence-first.Sequence+1 != uint64(n) || cl == 0 || cl > cs || (n-1)*cs+cl != size {
		return nil, nil
	}
	m := &chunkMap{nuid: info.NUID, seqs: make([]uint64, n), ends: make([]int64, n)}
	for i := range n {
		m.seqs[i] = first.Sequence + uint64(i)
		m.ends[i] = min((i+1)*cs, size)
	}
	r.cache.keep(chunkKey{info.NUID, 0}, first.Data, 0)
	if n > 1 {
		r.cache.keep(chunkKey{info.NUID, int(n - 1)}, last.Data, 0)
	}
	return m, nil
}

// getBy runs get, one of the chunk reads at once that r allows, and counts the bytes.
func (r *ranger) getBy(ctx context.Context, get func(context.Context) (*jetstream.RawStreamMsg, error)) (*jetstream.RawStreamMsg, error) {
	if err := r.sem.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	defer r.sem.Release(1)
	msg, err := get(ctx)
	if err != nil {
		return nil, err
	}
	r.count(len(msg.Data))
	return msg, nil
}

// consumerMap learns where the chunks of the object info describes are from a
// headers-only consumer of its chunk subject.
func (r *ranger) consumerMap(ctx context.Context, info *jetstream.ObjectInfo) (*chunkMap, error) {
	n := int(info.Chunks)
	cons, err := r.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     r.prefix + info.NUID,
		DeliverPolicy:     jetstream.DeliverAllPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		HeadersOnly:       true,
		MemoryStorage:     true,
		InactiveThreshold: time.Minute, // in case the delete below is lost
	})
	if err != nil {
		return nil, fmt.Errorf("chunk map: create consumer: %w", err)
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		_ = r.stream.DeleteConsumer(dctx, cons.CachedInfo().Name)
		cancel()
	}()
	wait := time.Until(deadline(ctx))
	batch, err := cons.Fetch(n, jetstream.FetchMaxWait(wait))
	if err != nil {
		return nil, fmt.Errorf("chunk map: fetch: %w", err)
	}
	m := &chunkMap{nuid: info.NUID, seqs: make([]uint64, 0, n), ends: make([]int64, 0, n)}
	var end int64
	for msg := range batch.Messages() {
		md, err := msg.Metadata()
		if err != nil {
			return nil, fmt.Errorf("chunk map: %w", err)
		}
		size, err := strconv.ParseInt(msg.Headers().Get(msgSizeHeader), 10, 64)
		if err != nil || size <= 0 {
			return nil, fmt.Errorf("chunk map: chunk %d at sequence %d has no size (%q)", len(m.seqs), md.Sequence.Stream, msg.Headers().Get(msgSizeHeader))
		}
		if k := len(m.seqs); k > 0 && md.Sequence.Stream <= m.seqs[k-1] {
			return nil, fmt.Errorf("chunk map: chunk %d at sequence %d, after one at %d", k, md.Sequence.Stream, m.seqs[k-1])
		}
		end += size
		m.seqs = append(m.seqs, md.Sequence.Stream)
		m.ends = append(m.ends, end)
	}
	if err := batch.Error(); err != nil {
		return nil, fmt.Errorf("chunk map: fetch: %w", err)
	}
	if len(m.seqs) != n || end != int64(info.Size) {
		return nil, fmt.Errorf("chunk map: %d chunks of %d bytes, the object has %d of %d: %w", len(m.seqs), end, n, info.Size, errStale)
	}
	return m, nil
}

// deadline is ctx's deadline; ctx always has one here.
func deadline(ctx context.Context) time.Time {
	if d, ok := ctx.Deadline(); ok {
		return d
	}
	return time.Now().Add(30 * time.Second)
}

// read reads bytes [off, off+len(dst)) of the object m maps into dst, its chunks in
// parallel. It returns errStale (wrapped) when a chunk is not where m says.
func (r *ranger) read(ctx context.Context, m *chunkMap, off int64, dst []byte) error {
	if len(dst) == 0 {
		return nil
	}
	end := off + int64(len(dst))
	first, last := m.find(off), m.find(end-1)
	if !r.noBatch.Load() {
		return r.readBatched(ctx, m, first, last, off, dst)
	}
	if first == last {
		return r.readChunk(ctx, m, first, off, dst)
	}
	errs := make(chan error, last-first+1)
	for i := first; i <= last; i++ {
		lo, hi := max(off, m.start(i)), min(end, m.ends[i])
		go func() { errs <- r.readChunk(ctx, m, i, lo, dst[lo-off:hi-off]) }()
	}
	var err error
	for range last - first + 1 {
		if e := <-errs; e != nil && err == nil {
			err = e
		}
	}
	return err
}

// readChunk copies bytes [off, off+len(dst)) of the object, all in chunk i, into dst.
func (r *ranger) readChunk(ctx context.Context, m *chunkMap, i int, off int64, dst []byte) error {
	key := chunkKey{m.nuid, i}
	lo := off - m.start(i)
	whole := lo == 0 && int64(len(dst)) == m.ends[i]-m.start(i)
	if r.cache.read(key, lo, dst) {
		return nil
	}
	data, err := r.get(ctx, m, i)
	if err != nil {
		return err
	}
	copy(dst, data[lo:])
	if !whole {
		r.cache.keep(key, data, int64(len(dst)))
	}
	return nil
}

// get reads chunk i of m's object from the server, or waits for the read of it under
// way: adjacent ranges read at once share the chunk at their border.
func (r *ranger) get(ctx context.Context, m *chunkMap, i int) ([]byte, error) {
	key := chunkKey{m.nuid, i}
	r.mu.Lock()
	g := r.getting[key]
	if g == nil {
		g = &chunkGet{done: make(chan struct{})}
		r.getting[key] = g
		r.mu.Unlock()
		// The read goes on if ctx ends: another read may be waiting for it, and it is
		// bounded by its own timeout.
		g.data, g.err = r.fetch(context.WithoutCancel(ctx), m, i)
		r.mu.Lock()
		delete(r.getting, key)
		r.mu.Unlock()
		close(g.done)
	} else {
		r.mu.Unlock()
	}
	select {
	case <-g.done:
		return g.data, g.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// chunkGet is a read of a chunk that concurrent reads share.
type chunkGet struct {
	done chan struct{}
	data []byte
	err  error
}

// fetch reads chunk i of m's object from the server, one of the chunk reads at once
// that r allows.
func (r *ranger) fetch(ctx context.Context, m *chunkMap, i int) ([]byte, error) {
	if err := r.sem.Acquire(ctx, 1); err != nil {
		return nil, err
	}
	defer r.sem.Release(1)
	return r.getChunk(ctx, m, i)
}

// getChunk reads chunk i of m's object from the server by a direct get of its sequence.
func (r *ranger) getChunk(ctx context.Context, m *chunkMap, i int) ([]byte, error) {
	size := m.ends[i] - m.start(i)
	gctx, cancel := context.WithTimeout(ctx, r.timeout(size))
	msg, err := r.stream.GetMsg(gctx, m.seqs[i])
	cancel()
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, fmt.Errorf("chunk %d at sequence %d: %w", i, m.seqs[i], errStale)
	}
	if err != nil {
		return nil, fmt.Errorf("chunk %d at sequence %d: %w", i, m.seqs[i], err)
	}
	r.count(len(msg.Data))
	if msg.Subject != r.prefix+m.nuid || int64(len(msg.Data)) != size {
		return nil, fmt.Errorf("chunk %d at sequence %d: %d bytes on %q, want %d on %q: %w",
			i, m.seqs[i], len(msg.Data), msg.Subject, size, r.prefix+m.nuid, errStale)
	}
	return msg.Data, nil
}
