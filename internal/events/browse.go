package events

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brr-dev/brr"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"
)

// Browser answers the browse queries ls, find, diff and dump, whose answers are streams
// (the protocol is described in the root package's stream.go). Each method resolves the
// request at once and returns the open reply's info and run, which writes the stream;
// the caller calls run exactly once. *jobs.Engine implements it; ServeAPI serves the
// browse queries when its Queries implement it too.
type Browser interface {
	List(ctx context.Context, req brr.ListRequest) (any, func(context.Context, io.Writer) error, error)
	Find(ctx context.Context, req brr.FindRequest) (any, func(context.Context, io.Writer) error, error)
	Diff(ctx context.Context, req brr.DiffRequest) (any, func(context.Context, io.Writer) error, error)
	Dump(ctx context.Context, req brr.DumpRequest) (any, func(context.Context, io.Writer) error, error)
}

// browseQueries are the queries a Browser answers.
var browseQueries = []string{"ls", "find", "diff", "dump"}

// browseQuery says whether subject is a browse query that q answers, and of which pool.
func browseQuery(q Queries, subject string) (b Browser, pool, query string, ok bool) {
	b, ok = q.(Browser)
	if !ok {
		return nil, "", "", false
	}
	parts := strings.Split(subject, ".")
	if len(parts) < 2 {
		return nil, "", "", false
	}
	pool, query = parts[len(parts)-2], parts[len(parts)-1]
	for _, bq := range browseQueries {
		if query == bq {
			return b, pool, query, true
		}
	}
	return nil, "", "", false
}

// maxStreams bounds the streams one worker serves at once: each holds a few chunks.
const maxStreams = 16

// streamPieces is how many pieces of at most brr.StreamChunk bytes a stream's producer
// may run ahead of the client.
const streamPieces = 4

// streamKeepAlive is how long a chunk request waits for data before it is answered with
// an empty chunk, so that a slow producer (a find over many snapshots) does not make the
// client's request time out.
const streamKeepAlive = 3 * time.Second

// streamer serves the streams of one worker.
type streamer struct {
	nc   *nats.Conn
	subj brr.Subjects
	log  zerolog.Logger
	idle time.Duration

	mu   sync.Mutex
	open int
	wg   sync.WaitGroup
}

// wait waits until every stream has ended.
func (s *streamer) wait() { s.wg.Wait() }

// browse answers the request m for query of a pool: it opens a stream, or says why not.
func (s *streamer) browse(ctx context.Context, b Browser, pool, query string, data []byte) brr.StreamOpened {
	var (
		info any
		run  func(context.Context, io.Writer) error
		err  error
	)
	decodeErr := ""
	switch query {
	case "ls":
		var req brr.ListRequest
		if decodeErr = decodeRequest(query, data, &req, &req.V); decodeErr == "" {
			info, run, err = b.List(ctx, req)
		}
	case "find":
		var req brr.FindRequest
		if decodeErr = decodeRequest(query, data, &req, &req.V); decodeErr == "" {
			info, run, err = b.Find(ctx, req)
		}
	case "diff":
		var req brr.DiffRequest
		if decodeErr = decodeRequest(query, data, &req, &req.V); decodeErr == "" {
			info, run, err = b.Diff(ctx, req)
		}
	case "dump":
		var req brr.DumpRequest
		if decodeErr = decodeRequest(query, data, &req, &req.V); decodeErr == "" {
			info, run, err = b.Dump(ctx, req)
		}
	default:
		decodeErr = fmt.Sprintf("unknown browse query %q", query)
	}
	if decodeErr != "" {
		return brr.StreamOpened{V: brr.Version, Error: decodeErr, Code: brr.CodeInvalid}
	}
	if err != nil {
		return brr.StreamOpened{V: brr.Version, Error: err.Error(), Code: errorCode(err)}
	}
	raw, err := json.Marshal(info)
	if err != nil {
		_ = run(canceled(), io.Discard)
		return brr.StreamOpened{V: brr.Version, Error: fmt.Sprintf("encode %s info: %v", query, err)}
	}
	subject, err := s.start(ctx, pool, run)
	if err != nil {
		return brr.StreamOpened{V: brr.Version, Error: err.Error()}
	}
	return brr.StreamOpened{V: brr.Version, Subject: subject, Info: raw}
}

// canceled is a context that is done, for a run that must be called but not run.
func canceled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// errorCode is the code of an error reply for err.
func errorCode(err error) string {
	switch {
	case errors.Is(err, brr.ErrNotFound):
		return brr.CodeNotFound
	case errors.Is(err, brr.ErrInvalid):
		return brr.CodeInvalid
	}
	return ""
}

// start subscribes a new stream's subject and runs its producer; it returns the subject.
func (s *streamer) start(ctx context.Context, pool string, run func(context.Context, io.Writer) error) (string, error) {
	s.mu.Lock()
	if s.open >= maxStreams {
		s.mu.Unlock()
		_ = run(canceled(), io.Discard)
		return "", fmt.Errorf("worker is busy: %d streams open; ask again shortly", maxStreams)
	}
	s.open++
	s.wg.Add(1)
	s.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	st := &session{
		s: s, ctx: ctx, cancel: cancel,
		pieces: make(chan []byte, streamPieces), touch: make(chan struct{}, 1), ended: make(chan struct{}),
		sum: sha256.New(), next: 1,
	}
	subject := s.subj.API(pool, "stream."+strings.ReplaceAll(brr.NewID(), "-", ""))
	sub, err := s.nc.Subscribe(subject, st.handle)
	if err != nil {
		cancel()
		_ = run(ctx, io.Discard)
		s.done()
		return "", fmt.Errorf("open a stream: %w", err)
	}
	st.sub.Store(sub)
	select {
	case <-st.ended: // ended by a request that came before sub was stored
		_ = sub.Unsubscribe()
	default:
	}
	go func() {
		err := run(ctx, st)
		st.err = err
		close(st.pieces)
	}()
	go st.watch(s.idle)
	return subject, nil
}

func (s *streamer) done() {
	s.mu.Lock()
	s.open--
	s.mu.Unlock()
	s.wg.Done()
}

// session is one stream: its producer writes pieces, its subscription hands them out
// in chunks.
type session struct {
	s      *streamer
	ctx    context.Context
	cancel context.CancelFunc
	// sub is set once Subscribe returns; a request guessed before then finds it nil.
	sub    atomic.Pointer[nats.Subscription]
	pieces chan []byte   // closed after err is set
	err    error         // the producer's, read once pieces is closed
	touch  chan struct{} // a chunk was asked for
	ended  chan struct{} // closed by end
	once   sync.Once

	// Used only by handle, which the subscription calls one at a time.
	carry []byte
	next  int64
	sum   hash.Hash
	size  int64
}

// Write hands p to the stream in pieces, waiting while the client is behind.
func (st *session) Write(p []byte) (int, error) {
	n := 0
	for len(p) > 0 {
		k := min(len(p), brr.StreamChunk)
		piece := append([]byte(nil), p[:k]...)
		select {
		case st.pieces <- piece:
		case <-st.ctx.Done():
			return n, st.ctx.Err()
		}
		n += k
		p = p[k:]
	}
	return n, nil
}

// watch ends the stream when nobody asked for a chunk for idle, or when it ended.
func (st *session) watch(idle time.Duration) {
	t := time.NewTimer(idle)
	defer t.Stop()
	for {
		select {
		case <-st.ended:
			return
		case <-st.ctx.Done():
			st.end()
			return
		case <-st.touch:
			t.Reset(idle)
		case <-t.C:
			st.s.log.Debug().Msg("stream idle: ended")
			st.end()
			return
		}
	}
}

// end ends the stream: its producer stops, its subject is no longer served.
func (st *session) end() {
	st.once.Do(func() {
		st.cancel()
		if sub := st.sub.Load(); sub != nil {
			_ = sub.Unsubscribe()
		}
		close(st.ended)
		go func() {
			for range st.pieces { // let the producer see the cancel and return
			}
			st.s.done()
		}()
	})
}

// handle answers a chunk request.
func (st *session) handle(m *nats.Msg) {
	select {
	case st.touch <- struct{}{}:
	default:
	}
	reply := nats.NewMsg(m.Reply)
	reply.Header.Set(brr.HeaderVersion, strconv.Itoa(brr.Version))
	fail := func(format string, args ...any) {
		reply.Header.Set(brr.HeaderError, fmt.Sprintf(format, args...))
		_ = m.RespondMsg(reply)
		st.end()
	}
	var req brr.StreamNext
	if err := json.Unmarshal(m.Data, &req); err != nil {
		fail("chunk request is not valid JSON (%v): send {\"v\":%d,\"seq\":N}", err, brr.Version)
		return
	}
	if req.V != brr.Version {
		fail("chunk request has version %d, this worker reads version %d: upgrade the client or the worker", req.V, brr.Version)
		return
	}
	if req.Stop {
		st.end()
		return
	}
	if req.Seq != st.next {
		fail("chunk %d asked for, chunk %d is next: a stream is read in order, once; ask again from the start", req.Seq, st.next)
		return
	}
	if m.Reply == "" {
		return
	}
	data, eof := st.chunk()
	if errors.Is(st.ctx.Err(), context.Canceled) && !eof {
		fail("the stream ended (the worker is stopping); ask again")
		return
	}
	st.next++
	st.sum.Write(data)
	st.size += int64(len(data))
	reply.Header.Set(brr.HeaderSeq, strconv.FormatInt(req.Seq, 10))
	if eof {
		if st.err != nil {
			reply.Header.Set(brr.HeaderCode, errorCode(st.err))
			fail("%v", st.err)
			return
		}
		reply.Header.Set(brr.HeaderEOF, "1")
		reply.Header.Set(brr.HeaderSize, strconv.FormatInt(st.size, 10))
		reply.Header.Set(brr.HeaderSHA256, hex.EncodeToString(st.sum.Sum(nil)))
	}
	reply.Data = data
	if err := m.RespondMsg(reply); err != nil {
		st.s.log.Warn().Err(err).Str("subject", m.Subject).Msg("send a stream chunk")
	}
	if eof {
		st.end()
	}
}

// chunk takes up to brr.StreamChunk bytes of the stream: what is ready, or, when nothing
// is, what comes within streamKeepAlive. eof says that the producer ended and this is
// the last chunk.
func (st *session) chunk() (data []byte, eof bool) {
	data, st.carry = st.carry, nil
	keepAlive := time.NewTimer(streamKeepAlive)
	defer keepAlive.Stop()
	for len(data) < brr.StreamChunk {
		var (
			p  []byte
			ok bool
		)
		if len(data) > 0 {
			select {
			case p, ok = <-st.pieces:
			default:
				return data, false
			}
		} else {
			select {
			case p, ok = <-st.pieces:
			case <-keepAlive.C:
				return data, false
			case <-st.ctx.Done():
				return data, false
			}
		}
		if !ok {
			return data, true
		}
		room := brr.StreamChunk - len(data)
		if len(p) > room {
			st.carry = p[room:]
			p = p[:room]
		}
		data = append(data, p...)
	}
	return data, false
}
