package sftp_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/brr-dev/brr/internal/repo/sftp"
	"github.com/brr-dev/brr/internal/testkit"
)

// startAgent serves an ssh-agent holding the private key in keyFile on a socket of its
// own, and points SSH_AUTH_SOCK at it until the test ends.
func startAgent(t *testing.T, keyFile string) {
	t.Helper()
	pemBytes, err := os.ReadFile(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ssh.ParseRawPrivateKey(pemBytes)
	if err != nil {
		t.Fatal(err)
	}
	keyring := agent.NewKeyring()
	if err := keyring.Add(agent.AddedKey{PrivateKey: key}); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = agent.ServeAgent(keyring, c)
			}()
		}
	}()
	t.Setenv("SSH_AUTH_SOCK", sock)
}

func TestAgent(t *testing.T) {
	s := testkit.StartSSHD(t)
	startAgent(t, s.UserKeyFile)
	cfg := config(t, s)
	cfg.KeyFile, cfg.UseAgent = "", true
	open(t, cfg)

	// A key file the server refuses, then the agent's key, which it accepts.
	cfg.KeyFile = filepath.Join(t.TempDir(), "other")
	testkit.WriteSSHKey(t, cfg.KeyFile)
	open(t, cfg)

	// Without an agent, UseAgent and no key file is a clear error.
	t.Setenv("SSH_AUTH_SOCK", "")
	cfg.KeyFile = ""
	if _, err := sftp.Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), "SSH_AUTH_SOCK") {
		t.Fatalf("Open with UseAgent and no agent: %v, want an error naming SSH_AUTH_SOCK", err)
	}
}

func TestAgentRefused(t *testing.T) {
	s := testkit.StartSSHD(t)
	other := filepath.Join(t.TempDir(), "other")
	testkit.WriteSSHKey(t, other)
	startAgent(t, other)
	cfg := config(t, s)
	cfg.KeyFile, cfg.UseAgent = "", true
	err := refused(t, cfg, sftp.ErrAuth)
	if !strings.Contains(err.Error(), "ssh-agent") {
		t.Errorf("error %q does not say the agent's keys were refused", err)
	}
}

func TestPassphraseKey(t *testing.T) {
	s := testkit.StartSSHD(t)
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKeyWithPassphrase(priv, "", []byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := config(t, s)
	cfg.KeyFile = filepath.Join(t.TempDir(), "id_ed25519")
	if err := os.WriteFile(cfg.KeyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = sftp.Open(context.Background(), cfg)
	if err == nil || !strings.Contains(err.Error(), "passphrase") || !strings.Contains(err.Error(), "ssh-agent") {
		t.Fatalf("Open with a key that has a passphrase: %v, want an error that says so and names ssh-agent", err)
	}
}

// With no key file and no known_hosts file given, ~/.ssh is where they are found.
func TestDefaultFiles(t *testing.T) {
	s := testkit.StartSSHD(t)
	home := t.TempDir()
	t.Setenv("HOME", home)
	dotSSH := filepath.Join(home, ".ssh")
	if err := os.Mkdir(dotSSH, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := config(t, s)
	for from, to := range map[string]string{s.UserKeyFile: "id_ed25519", cfg.KnownHostsFile: "known_hosts"} {
		b, err := os.ReadFile(from)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dotSSH, to), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg.KeyFile, cfg.KnownHostsFile, cfg.User = "", "", ""
	open(t, cfg)

	if err := os.Remove(filepath.Join(dotSSH, "id_ed25519")); err != nil {
		t.Fatal(err)
	}
	if _, err := sftp.Open(context.Background(), cfg); err == nil || errors.Is(err, sftp.ErrAuth) || !strings.Contains(err.Error(), dotSSH) {
		t.Fatalf("Open with no key anywhere: %v, want an error naming %s", err, dotSSH)
	}
}
