// Package natstest starts real nats-server instances with JetStream for tests: in-process
// without a listener for speed, or on a loopback port when a test needs a real socket
// (another process, a restart on the same address); and clusters of nats-server
// processes for tests that kill a node with SIGKILL.
package natstest

import (
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Server is a running embedded server with JetStream.
type Server struct {
	*server.Server
	Opts *server.Options
}

// Options returns the options Start uses: JetStream with its store under dir, no listener.
func Options(dir string) *server.Options {
	return &server.Options{
		ServerName: "natstest",
		JetStream:  true,
		StoreDir:   dir,
		DontListen: true,
		NoLog:      true,
		NoSigs:     true,
	}
}

// Start starts an in-process server with JetStream and no listener; it is shut down when
// the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	return StartWith(t, Options(t.TempDir()))
}

// StartListening starts a server with JetStream on a free loopback port; URL() gives its
// client address.
func StartListening(t testing.TB) *Server {
	t.Helper()
	opts := Options(t.TempDir())
	opts.DontListen = false
	opts.Host = "127.0.0.1"
	opts.Port = server.RANDOM_PORT
	return StartWith(t, opts)
}

// ListeningOptions returns Options(dir) with a listener on a loopback port chosen now,
// so that a server started again with them is at the same address: for a test that
// stops the server and brings it back under its clients.
func ListeningOptions(t testing.TB, dir string) *server.Options {
	t.Helper()
	opts := Options(dir)
	opts.DontListen = false
	opts.Host = "127.0.0.1"
	opts.Port = FreePort(t)
	return opts
}

// StartWith starts a server with opts; it is shut down when the test ends.
func StartWith(t testing.TB, opts *server.Options) *Server {
	t.Helper()
	ns, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natstest: new server: %v", err)
	}
	ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		ns.Shutdown()
		t.Fatalf("natstest: server not ready after 10s")
	}
	s := &Server{Server: ns, Opts: opts}
	t.Cleanup(s.Stop)
	return s
}

// Stop shuts the server down and waits for it; it may be called more than once.
func (s *Server) Stop() {
	s.Shutdown()
	s.WaitForShutdown()
}

// Connect returns a connection to s (in-process when s has no listener), closed when the
// test ends.
func (s *Server) Connect(t testing.TB, opts ...nats.Option) *nats.Conn {
	t.Helper()
	url := ""
	if s.Opts.DontListen {
		opts = append(opts, nats.InProcessServer(s.Server))
	} else {
		url = s.ClientURL()
	}
	return connect(t, url, opts...)
}

// JetStream returns a JetStream context on a new connection to s.
func (s *Server) JetStream(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return jetStream(t, s.Connect(t))
}

// connect connects to url, and closes the connection when the test ends.
func connect(t testing.TB, url string, opts ...nats.Option) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("natstest: connect: %v", err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// jetStream returns nc with a JetStream context on it.
func jetStream(t testing.TB, nc *nats.Conn) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("natstest: jetstream: %v", err)
	}
	return nc, js
}
