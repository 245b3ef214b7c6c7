package testkit

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SSHDPath is the OpenSSH server StartSSHD runs (Debian: apt-get install openssh-server).
const SSHDPath = "/usr/sbin/sshd"

// SSHD is a real OpenSSH server on a loopback port, for tests of the sftp:// backend: it
// serves sftp (internal-sftp) to the current user with one generated key, and touches no
// system sshd, no ~/.ssh and no port but its own.
type SSHD struct {
	// Addr is "127.0.0.1:PORT"; Host and Port are its parts.
	Addr string
	Host string
	Port int
	// User is the current user's name, the one account sshd lets in.
	User string
	// UserKeyFile is an OpenSSH-format ed25519 private key that sshd accepts for User.
	UserKeyFile string
	// HostPublicKey is the key sshd proves itself with.
	HostPublicKey ssh.PublicKey

	dir  string
	args []string
	cmd  *exec.Cmd
	log  *SyncBuffer
	done chan struct{}
}

// StartSSHD starts sshd on a free loopback port with a fresh host key and user key; it is
// stopped when the test ends. Without /usr/sbin/sshd the test is skipped, or fails under
// CI (CI set), where a missing server must not pass as a skip.
func StartSSHD(t testing.TB) *SSHD {
	t.Helper()
	if _, err := os.Stat(SSHDPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (apt-get install openssh-server): %v", SSHDPath, err)
		}
		t.Skipf("%s not found (apt-get install openssh-server)", SSHDPath)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("current user: %v", err)
	}
	// sshd's privilege separation directory; Debian creates it at boot, a container may not.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatalf("create /run/sshd: %v", err)
	}
	dir := t.TempDir()
	hostPub := WriteSSHKey(t, filepath.Join(dir, "host_ed25519"))
	userKey := filepath.Join(dir, "user_ed25519")
	userPub := WriteSSHKey(t, userKey)
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(userPub), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := FreeAddr(t)
	host, portStr, _ := net.SplitHostPort(addr)
	port, _ := strconv.Atoi(portStr)
	s := &SSHD{
		Addr: addr, Host: host, Port: port,
		User:          u.Username,
		UserKeyFile:   userKey,
		HostPublicKey: hostPub,
		dir:           dir,
		args: []string{
			"-D", "-e", "-f", "/dev/null",
			"-o", "Port=" + portStr,
			"-o", "ListenAddress=" + host,
			"-o", "HostKey=" + filepath.Join(dir, "host_ed25519"),
			"-o", "AuthorizedKeysFile=" + authorized,
			"-o", "PidFile=" + filepath.Join(dir, "sshd.pid"),
			"-o", "Subsystem=sftp internal-sftp",
			"-o", "StrictModes=no",
			"-o", "PermitRootLogin=prohibit-password",
			"-o", "PasswordAuthentication=no",
			"-o", "KbdInteractiveAuthentication=no",
		},
	}
	s.Start(t)
	t.Cleanup(s.Stop)
	return s
}

// WriteSSHKey writes a new ed25519 private key to file in OpenSSH format (mode 0600) and
// returns its public key.
func WriteSSHKey(t testing.TB, file string) ssh.PublicKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "brr test key")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return sshPub
}

// Start starts sshd again on the same port with the same keys after Stop; StartSSHD has
// started it already. It returns once sshd listens.
func (s *SSHD) Start(t testing.TB) {
	t.Helper()
	if s.cmd != nil {
		t.Fatal("sshd is running already")
	}
	s.log = &SyncBuffer{}
	cmd := exec.Command(SSHDPath, s.args...)
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start sshd: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.cmd, s.done = cmd, done
	exited := func() bool {
		select {
		case <-done:
			return true
		default:
			return false
		}
	}
	// The port was free a moment ago, or was sshd's own before a restart (sshd sets
	// SO_REUSEADDR); sshd says when it listens.
	ok := WaitFor(10*time.Second, func() bool {
		return exited() || strings.Contains(s.log.String(), "Server listening on")
	})
	if !ok || exited() {
		s.Stop()
		t.Fatalf("sshd did not start on %s:\n%s", s.Addr, s.log.String())
	}
}

// Stop kills sshd and every connection it serves (as a crash or reboot of the server
// would), and waits until they are gone. Stopping a stopped sshd does nothing.
func (s *SSHD) Stop() {
	if s.cmd == nil {
		return
	}
	s.killConnections()
	_ = s.cmd.Process.Kill()
	<-s.done
	s.killConnections() // any accepted while it was being killed
	s.cmd, s.done = nil, nil
}

// Restart stops sshd, dropping every connection, and starts it again on the same port.
func (s *SSHD) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	s.Start(t)
}

// DropConnections kills the processes serving connections (sshd forks one or two per
// connection, each in its own session) while sshd goes on listening: clients see their
// connections reset, and new ones are accepted.
func (s *SSHD) DropConnections(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		t.Fatal("sshd is not running")
	}
	s.killConnections()
}

// killConnections kills sshd's descendants, found in /proc, and waits until they are
// gone: the per-connection processes call setsid, so killing a process group misses them.
func (s *SSHD) killConnections() {
	pids := descendants(s.cmd.Process.Pid)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	WaitFor(5*time.Second, func() bool {
		for _, pid := range pids {
			if alive(pid) {
				return false
			}
		}
		return true
	})
}

// descendants returns the processes below pid, children first.
func descendants(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	children := map[int][]int{}
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if pp, ok := parentPID(p); ok {
			children[pp] = append(children[pp], p)
		}
	}
	var out []int
	queue := []int{pid}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, children[p]...)
		queue = append(queue, children[p]...)
	}
	return out
}

// parentPID reads the parent of p from /proc/p/stat: "pid (comm) state ppid ...", where
// comm may hold spaces and parentheses, so the fields are counted from the last ')'.
func parentPID(p int) (int, bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
	if err != nil {
		return 0, false
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0, false
	}
	pp, err := strconv.Atoi(f[1])
	return pp, err == nil
}

// alive reports whether p exists and is not a zombie (a killed child of sshd is one until
// sshd, or init after it, reaps it).
func alive(p int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z"
}

// KnownHosts writes a known_hosts file that trusts sshd's host key for
// "[127.0.0.1]:PORT", as ssh-keyscan would, and returns its path.
func (s *SSHD) KnownHosts(t testing.TB) string {
	t.Helper()
	return s.WriteKnownHosts(t, s.HostPublicKey)
}

// WriteKnownHosts writes a known_hosts file that names key as sshd's host key (another
// key than HostPublicKey makes one that says the host key changed) and returns its path.
func (s *SSHD) WriteKnownHosts(t testing.TB, key ssh.PublicKey) string {
	t.Helper()
	f, err := os.CreateTemp(s.dir, "known_hosts-*")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := fmt.Fprintln(f, knownhosts.Line([]string{knownhosts.Normalize(s.Addr)}, key)); err != nil {
		t.Fatal(err)
	}
	return f.Name()
}

// Log returns what sshd has logged since it last started: its reasons for refusing a
// client are there.
func (s *SSHD) Log() string {
	if s.log == nil {
		return ""
	}
	return s.log.String()
}

// FreezeConnections stops (SIGSTOP) the processes serving connections, as a server that
// hangs or a link that silently drops everything would look to a client: nothing is
// reset, requests go unanswered. sshd goes on accepting new connections. Stop and
// Restart kill the frozen processes.
func (s *SSHD) FreezeConnections(t testing.TB) {
	t.Helper()
	if s.cmd == nil {
		t.Fatal("sshd is not running")
	}
	for _, pid := range descendants(s.cmd.Process.Pid) {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
}
