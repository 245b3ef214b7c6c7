package natstest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ServerPackage is the import path of nats-server's main package. It is in go.mod, so
// `go build -o BIN ServerPackage` builds the very server version brr embeds, from the
// module cache, without a network.
const ServerPackage = "github.com/nats-io/nats-server/v2"

// ProcessCluster is a JetStream cluster of nats-server processes on loopback, each with
// a file store of its own: a node can be killed with SIGKILL, as when its machine dies,
// which a server in the test's own process cannot be (its shutdown is always clean: it
// steps down from leading its Raft groups and closes its routes in order).
type ProcessCluster struct {
	Nodes []*Node
}

// Node is one nats-server process of a ProcessCluster. Start runs it again after Kill,
// with the same name, ports and store.
type Node struct {
	// Name is the server's name (n1, n2, …): what JetStream's cluster info calls it.
	Name string
	// Port is the client port; HTTPPort the monitoring port (/healthz, /jsz).
	Port, HTTPPort int
	// Dir holds the node's store (jetstream/) and its log (nats.log).
	Dir string

	t    testing.TB
	bin  string
	args []string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// StartProcessCluster starts n nats-server processes of bin (built from ServerPackage)
// routed to one another, and waits until every one of them reports JetStream healthy
// (its /healthz: current with the meta leader). The processes are killed when the test
// ends, and the tail of each log is printed if the test failed.
func StartProcessCluster(t testing.TB, bin string, n int) *ProcessCluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("natstest: a cluster needs at least one server, got %d", n)
	}
	dir := t.TempDir()
	for attempt := 1; ; attempt++ {
		c := newProcessCluster(t, bin, n, filepath.Join(dir, strconv.Itoa(attempt)))
		// All start before any is waited for: JetStream is healthy only once a meta
		// leader is elected, which takes a quorum.
		for _, nd := range c.Nodes {
			nd.spawn()
		}
		err := c.waitHealthy(2 * time.Minute)
		if err == nil {
			for _, nd := range c.Nodes {
				t.Cleanup(func() {
					nd.Kill()
					if t.Failed() {
						t.Logf("nats-server %s log:\n%s", nd.Name, nd.LogTail(8000))
					}
				})
			}
			return c
		}
		for _, nd := range c.Nodes {
			nd.Kill()
		}
		// Another program may have taken a port between its choice and the bind.
		if attempt < 3 && strings.Contains(err.Error(), "address already in use") {
			t.Logf("natstest: %v; starting the cluster again on other ports", err)
			continue
		}
		t.Fatalf("natstest: %v", err)
	}
}

// newProcessCluster chooses the names, ports and directories of n nodes under dir.
func newProcessCluster(t testing.TB, bin string, n int, dir string) *ProcessCluster {
	t.Helper()
	routePorts := make([]int, n)
	routes := make([]string, n)
	for i := range routePorts {
		routePorts[i] = fixedPort(t)
		routes[i] = fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i])
	}
	c := &ProcessCluster{}
	for i := range n {
		nd := &Node{
			Name:     fmt.Sprintf("n%d", i+1),
			Port:     fixedPort(t),
			HTTPPort: fixedPort(t),
			Dir:      filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			t:        t,
			bin:      bin,
		}
		nd.args = []string{
			"-n", nd.Name, "-a", "127.0.0.1", "-p", strconv.Itoa(nd.Port), "-m", strconv.Itoa(nd.HTTPPort),
			"-js", "-sd", filepath.Join(nd.Dir, "jetstream"), "-l", filepath.Join(nd.Dir, "nats.log"),
			"--cluster_name", "natstest", "--cluster", routes[i], "--routes", strings.Join(routes, ","),
		}
		if err := os.MkdirAll(nd.Dir, 0o755); err != nil {
			t.Fatal(err)
		}
		c.Nodes = append(c.Nodes, nd)
	}
	return c
}

// fixedPort returns a loopback port that was free a moment ago, below the kernel's
// range of ephemeral ports (32768 and up by default): a node restarted after a SIGKILL
// listens on the same ports again, and a port from the ephemeral range may meanwhile be
// the local end of some outgoing connection, such as a route between the other nodes.
func fixedPort(t testing.TB) int {
	t.Helper()
	for range 1000 {
		port := 20000 + rand.IntN(12000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("natstest: no free port found in 20000-31999")
	return 0
}

// waitHealthy waits until every node is healthy, and returns an error as soon as one has
// exited.
func (c *ProcessCluster) waitHealthy(d time.Duration) error {
	deadline := time.Now().Add(d)
	for _, nd := range c.Nodes {
		for !nd.healthy() {
			for _, other := range c.Nodes {
				if !other.Running() {
					return fmt.Errorf("nats-server %s exited while starting:\n%s", other.Name, other.LogTail(4000))
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("nats-server %s not healthy after %s:\n%s", nd.Name, d, nd.LogTail(4000))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return nil
}

// URL returns every node's client address, running or not, comma-separated, as
// nats.Connect and the worker's nats.url take them: clients move to the nodes that run.
func (c *ProcessCluster) URL() string {
	urls := make([]string, len(c.Nodes))
	for i, nd := range c.Nodes {
		urls[i] = nd.ClientURL()
	}
	return strings.Join(urls, ",")
}

// Node returns the node named name, or nil.
func (c *ProcessCluster) Node(name string) *Node {
	for _, nd := range c.Nodes {
		if nd.Name == name {
			return nd
		}
	}
	return nil
}

// ClientURL returns the node's client address.
func (n *Node) ClientURL() string { return fmt.Sprintf("nats://127.0.0.1:%d", n.Port) }

// Start runs the node again after Kill and waits until it reports JetStream healthy,
// which includes catching up with the streams it holds a replica of.
func (n *Node) Start() {
	n.t.Helper()
	n.spawn()
	n.waitHealthy(2 * time.Minute)
}

// Running reports whether the process runs.
func (n *Node) Running() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.done == nil {
		return false
	}
	select {
	case <-n.done:
		return false
	default:
		return true
	}
}

// PID returns the process id of the running process, or 0.
func (n *Node) PID() int {
	if !n.Running() {
		return 0
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cmd.Process.Pid
}

// Kill sends SIGKILL and waits for the process to be gone: no step-down, no goodbye to
// its routes or clients, a store left as it was at that instant.
func (n *Node) Kill() {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		n.t.Errorf("nats-server %s still running 30s after SIGKILL", n.Name)
	}
}

// routeRetry marks the lines a node logs every second while a peer is down: noise in
// a log tail.
const routeRetry = "Error trying to connect to route"

// LogTail returns the last max bytes of the node's log, without the lines that say it
// tries to reach a peer that is down, and how many of those lines there were.
func (n *Node) LogTail(max int) string {
	data, err := os.ReadFile(filepath.Join(n.Dir, "nats.log"))
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	retries := 0
	for _, line := range strings.SplitAfter(string(data), "\n") {
		if strings.Contains(line, routeRetry) {
			retries++
			continue
		}
		b.WriteString(line)
	}
	out := b.String()
	if len(out) > max {
		out = "…" + out[len(out)-max:]
	}
	if retries > 0 {
		out += fmt.Sprintf("(and %d lines %q left out)\n", retries, routeRetry)
	}
	return out
}

// Logged returns the time of the first line of the node's log, at or after after, that
// contains substr: when the node saw an event (a new leader elected) by its own account.
func (n *Node) Logged(substr string, after time.Time) (time.Time, bool) {
	data, err := os.ReadFile(filepath.Join(n.Dir, "nats.log"))
	if err != nil {
		return time.Time{}, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if !strings.Contains(line, substr) {
			continue
		}
		// "[pid] 2006/01/02 15:04:05.000000 [INF] text", in local time.
		f := strings.Fields(line)
		if len(f) < 3 {
			continue
		}
		at, err := time.ParseInLocation("2006/01/02 15:04:05.000000", f[1]+" "+f[2], time.Local)
		if err == nil && !at.Before(after) {
			return at, true
		}
	}
	return time.Time{}, false
}

func (n *Node) spawn() {
	n.t.Helper()
	cmd := exec.Command(n.bin, n.args...)
	out, err := os.OpenFile(filepath.Join(n.Dir, "stdout.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		out.Close()
		n.t.Fatalf("natstest: start nats-server %s: %v", n.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		out.Close()
		close(done)
	}()
	n.mu.Lock()
	n.cmd, n.done = cmd, done
	n.mu.Unlock()
}

// healthy reports whether the node's /healthz answers 200: it runs, JetStream is
// enabled, and it is current with the meta leader and the streams it holds.
func (n *Node) healthy() bool {
	client := &http.Client{Timeout: 2 * time.Second}
	resp, err := client.Get(fmt.Sprintf("http://127.0.0.1:%d/healthz", n.HTTPPort))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// waitHealthy waits until the node is healthy.
func (n *Node) waitHealthy(d time.Duration) {
	n.t.Helper()
	deadline := time.Now().Add(d)
	for !n.healthy() {
		if !n.Running() {
			n.t.Fatalf("natstest: nats-server %s exited while starting:\n%s", n.Name, n.LogTail(4000))
		}
		if time.Now().After(deadline) {
			n.t.Fatalf("natstest: nats-server %s not healthy after %s:\n%s", n.Name, d, n.LogTail(4000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
