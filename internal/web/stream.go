package web

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brr-dev/brr"
)

// The live event feed: one core NATS subscription on brr.events.> per process, fanned
// out to every open GET /api/v1/events/stream, held only while at least one stream is
// open: without a reader, every event the worker publishes would still be delivered to
// this process and decoded, a tenth of a ping job's cost in the worker
// (docs/performance.md, "2026-12-07 session 20: pipeline"). Events are published to the
// stream's subjects, so a plain subscription sees each as it is stored, whoever
// published it.
const (
	// streamBuffer is how many events a stream client may fall behind by; a client
	// further behind is dropped (its stream ends; EventSource reconnects).
	streamBuffer = 256
	// maxStreams bounds the streams open at once.
	maxStreams = 64
	// streamWriteTimeout bounds one write to a stream client, so that a client that
	// stopped reading does not hold its goroutine forever.
	streamWriteTimeout = 30 * time.Second
	// subscribeTimeout bounds the wait for the server to confirm the subscription of
	// the first stream.
	subscribeTimeout = 5 * time.Second
)

// hub fans events out to stream clients.
type hub struct {
	mu      sync.Mutex
	clients map[*streamClient]struct{}
	closed  bool
	// nc and subject are set by run; sub is the subscription, held while clients is
	// not empty (and run is running).
	nc      *nats.Conn
	subject string
	sub     *nats.Subscription
}

// streamClient is one open stream: the events it wants, and the frames waiting for it.
// frames is closed when the client is dropped or the hub stops.
type streamClient struct {
	query  eventQuery
	filter string // subject filter; matched with subjectMatch
	frames chan []byte
}

func newHub() *hub { return &hub{clients: map[*streamClient]struct{}{}} }

// run passes every event on subject to the clients until ctx is done, subscribing while
// there are clients; then it ends every stream and takes no more.
func (h *hub) run(ctx context.Context, nc *nats.Conn, subject string) error {
	h.mu.Lock()
	h.nc, h.subject = nc, subject
	err := h.follow()
	h.mu.Unlock()
	if err != nil {
		return err
	}
	<-ctx.Done()
	h.mu.Lock()
	h.closed = true
	h.unfollow()
	for c := range h.clients {
		delete(h.clients, c)
		close(c.frames)
	}
	h.mu.Unlock()
	return nil
}

// follow subscribes when there are clients and no subscription; h.mu is held.
func (h *hub) follow() error {
	if h.sub != nil || h.nc == nil || h.closed || len(h.clients) == 0 {
		return nil
	}
	sub, err := h.nc.Subscribe(h.subject, h.receive)
	if err != nil {
		return fmt.Errorf("subscribe to %s: %w", h.subject, err)
	}
	h.sub = sub
	return nil
}

// unfollow drops the subscription once no client is left; h.mu is held.
func (h *hub) unfollow() {
	if h.sub != nil && (len(h.clients) == 0 || h.closed) {
		_ = h.sub.Unsubscribe()
		h.sub = nil
	}
}

// receive is the subscription's handler.
func (h *hub) receive(m *nats.Msg) {
	e, err := brr.DecodeEvent(m.Data)
	if err != nil {
		return // a newer version: the stream is for events this code reads
	}
	h.publish(m.Subject, e, frame(e.ID, m.Data))
}

// frame is one Server-Sent Events message carrying an event.
func frame(id string, data []byte) []byte {
	return fmt.Appendf(nil, "id: %s\ndata: %s\n\n", id, data)
}

func (h *hub) publish(subject string, e *brr.Event, f []byte) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for c := range h.clients {
		if !subjectMatch(c.filter, subject) || !c.query.match(e) {
			continue
		}
		select {
		case c.frames <- f:
		default: // too slow: drop it rather than hold everyone up
			delete(h.clients, c)
			close(c.frames)
		}
	}
	h.unfollow()
}

// add registers a client; it fails when the hub is stopped or full. The first client
// subscribes, and add returns once the server has the subscription, so that the
// client gets every event stored after its stream answered.
func (h *hub) add(c *streamClient) error {
	h.mu.Lock()
	switch {
	case h.closed:
		h.mu.Unlock()
		return errorf(http.StatusServiceUnavailable, "live events have stopped: the worker is shutting down")
	case len(h.clients) >= maxStreams:
		h.mu.Unlock()
		return errorf(http.StatusServiceUnavailable, "%d live event streams are open, the most this worker serves; close some dashboards or read GET /api/v1/events instead", maxStreams)
	}
	h.clients[c] = struct{}{}
	first := h.sub == nil
	err := h.follow()
	nc := h.nc
	if err != nil {
		delete(h.clients, c)
		h.mu.Unlock()
		return errorf(http.StatusServiceUnavailable, "live events are not available (%v); try again, or read GET /api/v1/events", err)
	}
	h.mu.Unlock()
	if first && nc != nil {
		_ = nc.FlushTimeout(subscribeTimeout) // a slow server: events come when it has it
	}
	return nil
}

// remove unregisters a client that went away by itself; the last one unsubscribes.
func (h *hub) remove(c *streamClient) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.clients[c]; ok {
		delete(h.clients, c)
		close(c.frames)
	}
	h.unfollow()
}

// subjectMatch reports whether subject matches the NATS subject filter (with * and >).
func subjectMatch(filter, subject string) bool {
	for {
		ft, frest, fmore := cut(filter)
		st, srest, smore := cut(subject)
		switch {
		case ft == ">":
			return st != ""
		case ft != "*" && ft != st:
			return false
		case !fmore || !smore:
			return fmore == smore
		}
		filter, subject = frest, srest
	}
}

func cut(s string) (string, string, bool) {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return s[:i], s[i+1:], true
		}
	}
	return s, "", false
}

// stream serves GET /api/v1/events/stream: the events that match the query, as
// Server-Sent Events, from now on, with a comment every KeepAlive.
func (s *Server) stream(w http.ResponseWriter, r *http.Request) error {
	eq, err := s.parseEventQuery(r.URL.Query())
	if err != nil {
		return err
	}
	c := &streamClient{query: eq, filter: eq.subject, frames: make(chan []byte, streamBuffer)}
	if err := s.hub.add(c); err != nil {
		return err
	}
	defer s.hub.remove(c)

	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass events through at once
	w.WriteHeader(http.StatusOK)
	write := func(b []byte) bool {
		_ = rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if _, err := w.Write(b); err != nil {
			return false
		}
		return rc.Flush() == nil
	}
	if !write([]byte("retry: 3000\n: connected\n\n")) {
		return nil
	}
	tick := time.NewTicker(s.cfg.KeepAlive)
	defer tick.Stop()
	for {
		select {
		case f, ok := <-c.frames:
			if !ok || !write(f) {
				return nil
			}
		case <-tick.C:
			if !write([]byte(": keep-alive\n\n")) {
				return nil
			}
		case <-r.Context().Done():
			return nil
		}
	}
}
