package brr

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

	"github.com/nats-io/nats.go"
)

// A stream carries an answer too large for one message (a listing, a diff, a file) as a
// series of request/reply exchanges, so that both sides hold at most one chunk and the
// client sets the pace:
//
//  1. The client asks on brr.api.<pool>.<query> (ls, find, diff, dump); a worker of the
//     pool answers StreamOpened: an error, or what it found (Info) and the subject of
//     the stream, brr.api.<pool>.stream.<id>, which only that worker listens on.
//  2. The client asks there for each chunk in turn (StreamNext, seq 1, 2, …). The reply
//     carries at most StreamChunk bytes in its body and these headers: Brr-V (the
//     version), Brr-Seq; on the last chunk Brr-Eof: 1, Brr-Size (bytes in all) and
//     Brr-Sha256 (hex, of all the bytes), which the client checks; instead of data,
//     Brr-Error (and Brr-Code) when the stream failed.
//  3. A client that stops early sends StreamNext with Stop; a stream nobody asks for
//     StreamIdle ends on the worker by itself.
//
// Every reply is one message to one request, so a NATS user allowed only responses to
// its requests (allow_responses) can serve it.

// StreamChunk is the most bytes one chunk of a stream carries.
const StreamChunk = 256 << 10

// StreamIdle is how long a worker keeps a stream that nobody asks a chunk of.
const StreamIdle = 2 * DefaultRequestTimeout

// The headers of a stream's chunk replies.
const (
	HeaderVersion = "Brr-V"
	HeaderSeq     = "Brr-Seq"
	HeaderEOF     = "Brr-Eof"
	HeaderSize    = "Brr-Size"
	HeaderSHA256  = "Brr-Sha256"
	HeaderError   = "Brr-Error"
	HeaderCode    = "Brr-Code"
)

// The codes of an error reply, which the client turns back into ErrNotFound and
// ErrInvalid.
const (
	CodeNotFound = "not_found"
	CodeInvalid  = "invalid"
)

// StreamOpened is the reply to the request that opens a stream.
type StreamOpened struct {
	V int `json:"v"`
	// Subject is where the client asks for the chunks.
	Subject string `json:"subject,omitempty"`
	// Info is what the worker found: ListInfo, FindInfo, DiffInfo or DumpInfo.
	Info  json.RawMessage `json:"info,omitempty"`
	Error string          `json:"error,omitempty"`
	Code  string          `json:"code,omitempty"`
}

// StreamNext asks for chunk Seq (the first is 1) of a stream; with Stop, ends it.
type StreamNext struct {
	V    int   `json:"v"`
	Seq  int64 `json:"seq"`
	Stop bool  `json:"stop,omitempty"`
}

// replyError is the error that a worker's reply states, marked with the sentinel of code.
func replyError(msg, code string) error {
	switch code {
	case CodeNotFound:
		return fmt.Errorf("%s: %w", msg, ErrNotFound)
	case CodeInvalid:
		return fmt.Errorf("%s: %w", msg, ErrInvalid)
	}
	return errors.New(msg)
}

// stream reads a stream that a worker opened; it is an io.Reader that returns io.EOF
// only once the size and SHA-256 of what it read match what the worker sent.
type stream struct {
	c       *Client
	ctx     context.Context
	subject string
	seq     int64
	buf     []byte
	sum     hash.Hash
	size    int64
	done    bool // the worker ended the stream
	err     error
}

// openStream asks query with req and returns the stream the worker opened; info gets
// the open reply's Info.
func (c *Client) openStream(ctx context.Context, query string, req, info any) (*stream, error) {
	var opened StreamOpened
	if err := c.askPool(ctx, c.pool, query, req, &opened); err != nil {
		return nil, err
	}
	if opened.Error != "" {
		return nil, replyError(opened.Error, opened.Code)
	}
	if opened.Subject == "" {
		return nil, fmt.Errorf("%w: the worker opened a stream without a subject", ErrInvalid)
	}
	if info != nil && len(opened.Info) > 0 {
		if err := json.Unmarshal(opened.Info, info); err != nil {
			return nil, fmt.Errorf("%w: stream info is not valid JSON: %v", ErrInvalid, err)
		}
	}
	return &stream{c: c, ctx: ctx, subject: opened.Subject, sum: sha256.New()}, nil
}

func (s *stream) Read(p []byte) (int, error) {
	for len(s.buf) == 0 {
		if s.err != nil {
			return 0, s.err
		}
		s.err = s.next()
	}
	n := copy(p, s.buf)
	s.buf = s.buf[n:]
	return n, nil
}

// next asks for the next chunk; it returns io.EOF with the last one, once it checked.
func (s *stream) next() error {
	s.seq++
	data, err := json.Marshal(StreamNext{V: Version, Seq: s.seq})
	if err != nil {
		return err
	}
	ctx, cancel := withTimeout(s.ctx)
	defer cancel()
	msg, err := s.c.nc.RequestWithContext(ctx, s.subject, data)
	if errors.Is(err, nats.ErrNoResponders) {
		s.done = true
		return fmt.Errorf("chunk %d: the worker no longer serves this stream (it stopped, or nobody asked for %s): ask again", s.seq, StreamIdle)
	}
	if err != nil {
		return fmt.Errorf("chunk %d: %w", s.seq, err)
	}
	h := msg.Header
	if v := h.Get(HeaderVersion); v != strconv.Itoa(Version) {
		s.done = true
		return fmt.Errorf("%w: chunk %d has version %q, this code reads version %d", ErrUnknownVersion, s.seq, v, Version)
	}
	if e := h.Get(HeaderError); e != "" {
		s.done = true
		return replyError(e, h.Get(HeaderCode))
	}
	if got := h.Get(HeaderSeq); got != strconv.FormatInt(s.seq, 10) {
		s.done = true
		return fmt.Errorf("%w: asked for chunk %d, got %q", ErrInvalid, s.seq, got)
	}
	s.buf = msg.Data
	s.sum.Write(msg.Data)
	s.size += int64(len(msg.Data))
	if h.Get(HeaderEOF) == "" {
		return nil
	}
	s.done = true
	if size := h.Get(HeaderSize); size != strconv.FormatInt(s.size, 10) {
		return fmt.Errorf("stream is incomplete: %d bytes came, the worker sent %s", s.size, size)
	}
	if sum := hex.EncodeToString(s.sum.Sum(nil)); sum != h.Get(HeaderSHA256) {
		return fmt.Errorf("stream is damaged: SHA-256 of what came is %s, the worker sent %s", sum, h.Get(HeaderSHA256))
	}
	return io.EOF
}

// Close ends the stream on the worker when it did not end by itself.
func (s *stream) Close() error {
	if s.done {
		return nil
	}
	s.done = true
	data, _ := json.Marshal(StreamNext{V: Version, Seq: s.seq + 1, Stop: true})
	return s.c.nc.Publish(s.subject, data)
}
