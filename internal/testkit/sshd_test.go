package testkit_test

import (
	"os"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/brr-dev/brr/internal/testkit"
)

// dialSSHD logs in to s with its user key, checking its host key against known_hosts.
func dialSSHD(t *testing.T, s *testkit.SSHD, knownHosts string) (*ssh.Client, error) {
	t.Helper()
	pem, err := os.ReadFile(s.UserKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		t.Fatal(err)
	}
	check, err := knownhosts.New(knownHosts)
	if err != nil {
		t.Fatal(err)
	}
	return ssh.Dial("tcp", s.Addr, &ssh.ClientConfig{
		User:            s.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: check,
		Timeout:         5 * time.Second,
	})
}

func TestSSHD(t *testing.T) {
	s := testkit.StartSSHD(t)
	c, err := dialSSHD(t, s, s.KnownHosts(t))
	if err != nil {
		t.Fatalf("dial: %v\nsshd log:\n%s", err, s.Log())
	}
	sess, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestSubsystem("sftp"); err != nil {
		t.Fatalf("sftp subsystem: %v", err)
	}

	// Another host key for the same address is refused.
	if _, err := dialSSHD(t, s, s.WriteKnownHosts(t, testkit.WriteSSHKey(t, t.TempDir()+"/other"))); err == nil {
		t.Fatal("dial with a known_hosts naming another host key succeeded")
	}

	// Dropped connections end; sshd goes on accepting.
	closed := make(chan error, 1)
	go func() { closed <- c.Wait() }()
	s.DropConnections(t)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection outlived DropConnections")
	}
	c2, err := dialSSHD(t, s, s.KnownHosts(t))
	if err != nil {
		t.Fatalf("dial after DropConnections: %v", err)
	}
	go func() { closed <- c2.Wait() }()

	// A restart drops them too, and listens on the same port with the same host key.
	s.Restart(t)
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("the connection outlived Restart")
	}
	c3, err := dialSSHD(t, s, s.KnownHosts(t))
	if err != nil {
		t.Fatalf("dial after Restart: %v", err)
	}
	c3.Close()
}
