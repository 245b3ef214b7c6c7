package natsobj

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Batched reads. nats-server 2.11 and later answer a direct get that asks for a batch
// ({"seq": N, "next_by_subj": S, "batch": M}, ADR-31) with the next M messages of
// subject S from sequence N, then an end-of-batch status message (204 EOB). A range of
// a pack is then one request for the chunks it needs that no other read has or is
// getting, instead of one request per chunk: the chunks come in order on one
// subscription and each is handed to the reads waiting for it as it arrives.
//
// nats.go has no API for it (v1.55), so the request is the raw one on
// "<API prefix>DIRECT.GET.<stream>". Batches are used only where the stream allows direct
// gets and the server says it is 2.11 or later; a reply without the batch's
// Nats-Num-Pending header (an older server in a mixed cluster) turns them off for the
// backend, and the chunks not read yet are read one by one as before. Every chunk is
// checked as in fetch: its subject, sequence and size must be the map's.

// batchMinVersion is the first nats-server version that answers batched direct gets.
var batchMinVersion = [3]int{2, 11, 0}

// errNoBatch says that the server answered a batch request as a single get.
var errNoBatch = errors.New("server does not answer batched direct gets")

// Headers of a direct get's reply (nats-server's JSSubject, JSSequence, JSNumPending) and
// nats.go's status header of a headers-only status message.
const (
	hdrSubject    = "Nats-Subject"
	hdrSequence   = "Nats-Sequence"
	hdrNumPending = "Nats-Num-Pending"
	hdrStatus     = "Status"
	hdrDesc       = "Description"
)

// batchRequest is nats-server's JSApiMsgGetRequest, the fields a batch uses.
type batchRequest struct {
	Seq      uint64 `json:"seq"`
	NextFor  string `json:"next_by_subj"`
	Batch    int    `json:"batch"`
	MaxBytes int    `json:"max_bytes"`
}

// versionAtLeast reports whether the server version v ("2.11.0", "2.12.0-RC.1") is at
// least want; false when v does not parse.
func versionAtLeast(v string, want [3]int) bool {
	v, _, _ = strings.Cut(v, "-")
	parts := strings.Split(v, ".")
	if len(parts) != 3 {
		return false
	}
	for i, p := range parts {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return false
		}
		if n != want[i] {
			return n > want[i]
		}
	}
	return true
}

// readBatched is read with batched direct gets: the chunks of the range that the chunk
// cache has are copied from it, those another read is getting are waited for, and the
// others are claimed and read in runs of contiguous chunks, one request each.
func (r *ranger) readBatched(ctx context.Context, m *chunkMap, first, last int, off int64, dst []byte) error {
	end := off + int64(len(dst))
	gs := make([]*chunkGet, last-first+1) // nil: copied from the cache
	var claimed []int
	for i := first; i <= last; i++ {
		lo, hi := max(off, m.start(i)), min(end, m.ends[i])
		key := chunkKey{m.nuid, i}
		if r.cache.read(key, lo-m.start(i), dst[lo-off:hi-off]) {
			continue
		}
		r.mu.Lock()
		g := r.getting[key]
		if g == nil {
			g = &chunkGet{done: make(chan struct{})}
			r.getting[key] = g
			claimed = append(claimed, i)
		}
		r.mu.Unlock()
		gs[i-first] = g
	}
	// The runs go on if ctx ends: other reads may wait for their chunks, and they are
	// bounded by their own timeout.
	for len(claimed) > 0 {
		n := 1
		for n < len(claimed) && n < chunkGets && claimed[n] == claimed[n-1]+1 {
			n++
		}
		a := claimed[0]
		run := gs[a-first : a-first+n]
		go r.fetchRun(context.WithoutCancel(ctx), m, a, run)
		claimed = claimed[n:]
	}
	var err error
	for k, g := range gs {
		if g == nil {
			continue
		}
		select {
		case <-g.done:
		case <-ctx.Done():
			return ctx.Err()
		}
		if g.err != nil {
			if err == nil {
				err = g.err
			}
			continue
		}
		i := first + k
		lo, hi := max(off, m.start(i)), min(end, m.ends[i])
		copy(dst[lo-off:hi-off], g.data[lo-m.start(i):])
		if hi-lo != m.ends[i]-m.start(i) {
			r.cache.keep(chunkKey{m.nuid, i}, g.data, hi-lo)
		}
	}
	return err
}

// fetchRun reads chunks a, a+1, ... of m's object, one per chunkGet of run (claimed by
// the caller), and hands each to its waiters as it comes; what a batch does not bring
// is read chunk by chunk.
func (r *ranger) fetchRun(ctx context.Context, m *chunkMap, a int, run []*chunkGet) {
	done := 0
	deliver := func(data []byte, err error) {
		g := run[done]
		g.data, g.err = data, err
		r.mu.Lock()
		delete(r.getting, chunkKey{m.nuid, a + done})
		r.mu.Unlock()
		close(g.done)
		done++
	}
	if err := r.sem.Acquire(ctx, int64(len(run))); err != nil {
		for done < len(run) {
			deliver(nil, fmt.Errorf("chunk %d at sequence %d: %w", a+done, m.seqs[a+done], err))
		}
		return
	}
	defer r.sem.Release(int64(len(run)))
	// The timeout starts once the run may read, as a single chunk's does.
	ctx, cancel := context.WithTimeout(ctx, r.timeout(m.ends[a+len(run)-1]-m.start(a)))
	defer cancel()
	var err error
	if !r.noBatch.Load() {
		err = r.batchGet(ctx, m, a, len(run), func(data []byte) { deliver(data, nil) })
		if errors.Is(err, errNoBatch) {
			r.noBatch.Store(true)
		}
	}
	if err != nil && !errors.Is(err, errNoBatch) {
		for done < len(run) {
			deliver(nil, err)
		}
		return
	}
	for done < len(run) { // no batches, or a batch that ended early
		deliver(r.getChunk(ctx, m, a+done))
	}
}

// batchGet asks for chunks a to a+n-1 of m's object in one batched direct get and calls
// got with each, in order, as it comes. It returns nil when the batch ended, with all
// of them or fewer (the caller reads the rest), and errNoBatch after the one message an
// older server sends (given to got when it is chunk a).
func (r *ranger) batchGet(ctx context.Context, m *chunkMap, a, n int, got func([]byte)) error {
	subj := r.prefix + m.nuid
	size := m.ends[a+n-1] - m.start(a)
	req, err := json.Marshal(batchRequest{Seq: m.seqs[a], NextFor: subj, Batch: n, MaxBytes: int(size) + n*4096})
	if err != nil {
		return err
	}
	inbox := r.nc.NewInbox()
	sub, err := r.nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("chunks %d to %d: subscribe: %w", a, a+n-1, err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := r.nc.PublishRequest(r.direct, inbox, req); err != nil {
		return fmt.Errorf("chunks %d to %d: request: %w", a, a+n-1, err)
	}
	for k := 0; k < n; k++ {
		i := a + k
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return fmt.Errorf("chunk %d at sequence %d: %w", i, m.seqs[i], err)
		}
		if st := msg.Header.Get(hdrStatus); st != "" && len(msg.Data) == 0 {
			switch st {
			case "204": // end of batch, early: the caller reads the rest
				return nil
			case "404":
				return fmt.Errorf("chunk %d at sequence %d: %w", i, m.seqs[i], errStale)
			default:
				return fmt.Errorf("chunk %d at sequence %d: direct get: %s %s", i, m.seqs[i], st, msg.Header.Get(hdrDesc))
			}
		}
		seq, _ := strconv.ParseUint(msg.Header.Get(hdrSequence), 10, 64)
		want := m.ends[i] - m.start(i)
		if msg.Header.Get(hdrSubject) != subj || seq != m.seqs[i] || int64(len(msg.Data)) != want {
			return fmt.Errorf("chunk %d at sequence %d: %d bytes on %q at sequence %d, want %d on %q: %w",
				i, m.seqs[i], len(msg.Data), msg.Header.Get(hdrSubject), seq, want, subj, errStale)
		}
		r.count(len(msg.Data))
		got(msg.Data)
		if msg.Header.Get(hdrNumPending) == "" {
			return errNoBatch
		}
	}
	return nil
}

// setBatch turns batched reads on when the stream allows direct gets and the server is
// recent enough; they stay off otherwise.
func (r *ranger) setBatch(nc *nats.Conn, apiPrefix string, allowDirect bool) {
	r.nc = nc
	r.direct = apiPrefix + "DIRECT.GET." + r.streamName
	r.noBatch.Store(nc == nil || !allowDirect || !versionAtLeast(nc.ConnectedServerVersion(), batchMinVersion))
}

// apiPrefix is the JetStream API prefix that nats.go's jetstream uses with opts.
func apiPrefix(opts jetstream.JetStreamOptions) string {
	switch {
	case opts.Domain != "":
		return "$JS." + opts.Domain + ".API."
	case opts.APIPrefix != "" && !strings.HasSuffix(opts.APIPrefix, "."):
		return opts.APIPrefix + "."
	case opts.APIPrefix != "":
		return opts.APIPrefix
	default:
		return jetstream.DefaultAPIPrefix
	}
}
