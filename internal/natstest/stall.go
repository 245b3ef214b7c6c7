package natstest

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Staller forwards TCP connections from a loopback address to a server, and can hold
// every byte in both directions for a while: what a client sees when the server stalls
// under load (its read loop stops for seconds) and then resumes with the requests it
// held. Nothing is lost or closed; requests and replies are only late.
type Staller struct {
	// Addr is the address clients connect to.
	Addr string

	l     net.Listener
	gate  sync.RWMutex // held for writing while stalled; every forwarded write reads it
	held  atomic.Bool
	mu    sync.Mutex
	conns []net.Conn
	after []byte // StallAfter's marker, until seen
	wg    sync.WaitGroup
}

// StartStaller forwards connections to target (host:port) until the test ends.
func StartStaller(t testing.TB, target string) *Staller {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("natstest: staller listen: %v", err)
	}
	s := &Staller{Addr: l.Addr().String(), l: l}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			srv, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			s.mu.Lock()
			s.conns = append(s.conns, c, srv)
			s.mu.Unlock()
			s.wg.Add(2)
			go s.pipe(srv, c, false)
			go s.pipe(c, srv, true)
		}
	}()
	t.Cleanup(func() {
		l.Close()
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

// URL is the client URL of the server behind s.
func (s *Staller) URL() string { return "nats://" + s.Addr }

// Connect returns a connection through s, closed when the test ends.
func (s *Staller) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	return connect(t, s.URL(), opts...)
}

// JetStream returns a JetStream context on a new connection through s.
func (s *Staller) JetStream(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return jetStream(t, s.Connect(t))
}

// Stall holds every byte from now on until Resume, which the test must call before it ends.
func (s *Staller) Stall() {
	s.gate.Lock()
	s.held.Store(true)
}

// Resume delivers what Stall held, and forwards again.
func (s *Staller) Resume() {
	s.held.Store(false)
	s.gate.Unlock()
}

// Stalled says whether s holds what passes through it now.
func (s *Staller) Stalled() bool { return s.held.Load() }

// StallAfter stalls (as Stall) once the server has sent bytes that hold marker, right
// after they were forwarded: to stall a client between two steps of one call, such as
// after the reply to its first request. The marker must come within one read.
func (s *Staller) StallAfter(marker string) {
	s.mu.Lock()
	s.after = []byte(marker)
	s.mu.Unlock()
}

// pipe copies src to dst; fromServer says src is the server, whose bytes StallAfter
// watches.
func (s *Staller) pipe(dst, src net.Conn, fromServer bool) {
	defer s.wg.Done()
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			s.gate.RLock()
			_, werr := dst.Write(buf[:n])
			s.gate.RUnlock()
			if werr != nil {
				return
			}
			if fromServer {
				s.mu.Lock()
				hit := s.after != nil && bytes.Contains(buf[:n], s.after)
				if hit {
					s.after = nil
				}
				s.mu.Unlock()
				if hit {
					s.Stall()
				}
			}
		}
		if err != nil {
			return
		}
	}
}
