package testkit

import (
	"errors"
	"go/build"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

// VersityGWInstall is the command that installs the S3 server StartS3 runs.
const VersityGWInstall = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

// S3Server is a real S3 server for tests: a versitygw child process on a loopback port,
// serving every sub-directory of Dir as a bucket (its posix backend). It is killed when
// the test ends, and its output is printed if the test failed. Stop and Start restart it
// on the same port and directory, for tests of what a client does while it is down.
type S3Server struct {
	// Endpoint is the server's host:port (plain HTTP).
	Endpoint string
	// AccessKey and SecretKey are the root user's keys.
	AccessKey, SecretKey string
	// Dir holds the buckets.
	Dir string

	t    testing.TB
	bin  string
	logs SyncBuffer

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when cmd has exited
}

// VersityGW returns the path of the versitygw binary: on PATH, or in GOPATH/bin where
// `go install` puts it. Without one it fails the test in CI (CI set) and skips it
// elsewhere, naming the command that installs it.
func VersityGW(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	for _, dir := range filepath.SplitList(build.Default.GOPATH) {
		p := filepath.Join(dir, "bin", "versitygw")
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0 {
			return p
		}
	}
	msg := "versitygw (the S3 server of these tests) is not installed; install it with: " + VersityGWInstall
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// StartS3 starts an S3 server with no bucket in a new temporary directory and waits
// until it answers.
func StartS3(t testing.TB) *S3Server {
	t.Helper()
	s := &S3Server{
		Endpoint:  FreeAddr(t),
		AccessKey: "brr-test-access",
		SecretKey: "brr-test-secret-key",
		Dir:       t.TempDir(),
		t:         t,
		bin:       VersityGW(t),
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			logs := s.logs.String()
			if len(logs) > 20000 {
				logs = "…" + logs[len(logs)-20000:]
			}
			t.Logf("versitygw %s output:\n%s", s.Endpoint, logs)
		}
	})
	s.Start()
	return s
}

// Bucket creates the bucket name, a directory of Dir, and returns name.
func (s *S3Server) Bucket(t testing.TB, name string) string {
	t.Helper()
	if err := os.Mkdir(filepath.Join(s.Dir, name), 0o700); err != nil {
		t.Fatalf("create bucket %s: %v", name, err)
	}
	return name
}

// URL returns the server's base URL.
func (s *S3Server) URL() string { return "http://" + s.Endpoint }

// Start runs the server, again after Stop, on the same port and directory, and waits
// until it answers HTTP.
func (s *S3Server) Start() {
	t := s.t
	t.Helper()
	// --keep-alive, as S3 services do, so that a client's pooled connections outlive
	// requests and a restart leaves it holding dead ones.
	cmd := exec.Command(s.bin, "--port", s.Endpoint, "--quiet", "--keep-alive", "posix", s.Dir)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY="+s.AccessKey, "ROOT_SECRET_KEY="+s.SecretKey)
	cmd.Stdout, cmd.Stderr = &s.logs, &s.logs
	if err := cmd.Start(); err != nil {
		t.Fatalf("start versitygw: %v", err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(done)
	}()
	s.mu.Lock()
	s.cmd, s.done = cmd, done
	s.mu.Unlock()

	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Any HTTP answer will do: an unsigned request is refused with 403.
		resp, err := client.Get(s.URL() + "/")
		if err == nil {
			resp.Body.Close()
			return
		}
		select {
		case <-done:
			t.Fatalf("versitygw exited before it answered:\n%s", s.logs.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw on %s not answering after 30s: %v\n%s", s.Endpoint, err, s.logs.String())
		}
	}
}

// Stop kills the server and waits until it is gone and its port is closed; the buckets
// stay in Dir.
func (s *S3Server) Stop() {
	s.t.Helper()
	s.mu.Lock()
	cmd, done := s.cmd, s.done
	s.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	if !killWait(s.t, cmd, done, "versitygw "+s.Endpoint) {
		return
	}
	// The port is free once a dial is refused.
	ok := WaitFor(5*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", s.Endpoint, time.Second)
		if err == nil {
			c.Close()
			return false
		}
		return errors.Is(err, syscall.ECONNREFUSED)
	})
	if !ok {
		s.t.Errorf("versitygw %s: port still open after the process exited", s.Endpoint)
	}
}
