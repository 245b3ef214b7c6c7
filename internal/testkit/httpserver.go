package testkit

import (
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// HTTPServer is an HTTP server on loopback (a webhook receiver, say) that knows its open
// connections, so that a test can cut them and know when what came on them is answered.
type HTTPServer struct {
	*httptest.Server

	mu    sync.Mutex
	conns map[net.Conn]http.ConnState
}

// StartHTTPServer starts h on a loopback port; it ends with the test.
func StartHTTPServer(t testing.TB, h http.Handler) *HTTPServer {
	t.Helper()
	s := &HTTPServer{Server: httptest.NewUnstartedServer(h), conns: map[net.Conn]http.ConnState{}} // 127.0.0.1
	s.Config.ConnState = func(c net.Conn, state http.ConnState) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if state == http.StateClosed || state == http.StateHijacked {
			delete(s.conns, c)
		} else {
			s.conns[c] = state
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// Forget closes every connection and waits until each request that came on one has been
// answered: a request that a killed client had sent is answered before the test changes
// what the server answers.
func (s *HTTPServer) Forget(t testing.TB) {
	t.Helper()
	s.CloseClientConnections()
	Eventually(t, 30*time.Second, "the server's connections closed", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 0
	})
}
