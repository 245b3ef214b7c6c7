package natstest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a JetStream cluster of servers in this process, each listening on loopback
// with a file store of its own, routed to one another: what a test needs for R3 streams
// and for losing a node.
type Cluster struct {
	Servers []*Server
}

// StartCluster starts a cluster of n servers (named n1, n2, …) and waits until JetStream
// has a meta leader that every server follows; the servers are shut down when the test
// ends. Clients connect with URL, the list of every server's address.
func StartCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: a cluster needs at least one server, got %d", n)
	}
	// Routes name every server's cluster port, so the ports are chosen before any starts.
	ports := make([]int, n)
	routes := make([]*url.URL, n)
	for i := range ports {
		ports[i] = FreePort(t)
		routes[i] = &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	dir := t.TempDir()
	c := &Cluster{}
	for i := range n {
		opts := Options(filepath.Join(dir, fmt.Sprintf("n%d", i+1)))
		opts.ServerName = fmt.Sprintf("n%d", i+1)
		opts.DontListen = false
		opts.Host = "127.0.0.1"
		opts.Port = server.RANDOM_PORT
		opts.Cluster = server.ClusterOpts{Name: "natstest", Host: "127.0.0.1", Port: ports[i]}
		opts.Routes = routes
		c.Servers = append(c.Servers, StartWith(t, opts))
	}
	c.waitMetaLeader(t, 30*time.Second)
	return c
}

// FreePort returns a loopback TCP port that was free a moment ago: for a server that
// must listen on the same address after a restart, or whose address is known before it
// starts. It never returns a port it returned before in this process: the kernel, asked
// for any port, often gives back one just freed, and two addresses asked for at once (a
// worker's NATS and HTTP listeners) were then the same. So it tries random ports below
// the kernel's ephemeral range (32768-60999 here), where outgoing connections do not
// take them meanwhile either. (Another test process may still take one.)
func FreePort(t testing.TB) int {
	t.Helper()
	givenMu.Lock()
	defer givenMu.Unlock()
	for range 1000 {
		port := portsFrom + rand.IntN(portsTo-portsFrom)
		if given[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue // in use
		}
		l.Close()
		given[port] = true
		return port
	}
	t.Fatalf("natstest: no free loopback port in %d-%d after 1000 tries", portsFrom, portsTo-1)
	return 0
}

// FreePort picks from [portsFrom, portsTo).
const portsFrom, portsTo = 20000, 32768

// given holds the ports FreePort returned.
var (
	givenMu sync.Mutex
	given   = make(map[int]bool)
)

// waitMetaLeader waits until one server leads JetStream's meta group and every running
// server is current with it.
func (c *Cluster) waitMetaLeader(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		leader, current := false, true
		for _, s := range c.Servers {
			if !s.Running() {
				continue
			}
			leader = leader || s.JetStreamIsLeader()
			current = current && s.JetStreamIsCurrent()
		}
		if leader && current {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: no JetStream meta leader in the cluster after %s", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// URL returns the client addresses of the servers that are running, comma-separated,
// as nats.Connect and the worker's nats.url take them.
func (c *Cluster) URL() string {
	var urls []string
	for _, s := range c.Servers {
		if s.Running() {
			urls = append(urls, s.ClientURL())
		}
	}
	return strings.Join(urls, ",")
}

// Server returns the running server named name, or nil.
func (c *Cluster) Server(name string) *Server {
	for _, s := range c.Servers {
		if s.Running() && s.Name() == name {
			return s
		}
	}
	return nil
}
