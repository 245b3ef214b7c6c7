package testkit

import (
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
)

// FreeAddr returns a loopback address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(natstest.FreePort(t)))
}

// Connect returns a client of the servers at url (comma-separated) on a connection that
// reconnects forever, as a worker's does, with opts besides; the connection is closed
// when the test ends.
func Connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, *brr.Client) {
	t.Helper()
	opts = append([]nats.Option{nats.MaxReconnects(-1), nats.ReconnectWait(100 * time.Millisecond)}, opts...)
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	c, err := brr.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, c
}
