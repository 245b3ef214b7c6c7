package sftp_test

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo/sftp"
	"github.com/brr-dev/brr/internal/testkit"
)

// refused checks that Open of cfg failed with want, permanently, and left nothing on the
// server.
func refused(t *testing.T, cfg sftp.Config, want error) error {
	t.Helper()
	be, err := sftp.Open(context.Background(), cfg)
	if err == nil {
		be.Close()
		t.Fatalf("Open succeeded, want %v", want)
	}
	if !errors.Is(err, want) {
		t.Fatalf("Open: %v, want %v", err, want)
	}
	t.Logf("Open: %v", err)
	if !brr.IsPermanent(err) {
		t.Errorf("Open: %v is not permanent: retrying cannot fix it", err)
	}
	if _, serr := os.Stat(cfg.Path); !errors.Is(serr, fs.ErrNotExist) {
		t.Errorf("the repository directory was created (%v) though Open failed", serr)
	}
	return err
}

func TestUnknownHostKey(t *testing.T) {
	s := testkit.StartSSHD(t)
	for name, knownHosts := range map[string]string{
		"missing file": filepath.Join(t.TempDir(), "known_hosts"),
		"other host":   otherHostKnown(t),
	} {
		t.Run(name, func(t *testing.T) {
			cfg := config(t, s)
			cfg.KnownHostsFile = knownHosts
			err := refused(t, cfg, sftp.ErrUnknownHostKey)
			for _, want := range []string{
				"ssh-keyscan -p " + strconv.Itoa(s.Port) + " -t ed25519 127.0.0.1 >> " + knownHosts,
				ssh.FingerprintSHA256(s.HostPublicKey),
				"[127.0.0.1]:" + strconv.Itoa(s.Port),
			} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			if errors.Is(err, sftp.ErrHostKeyChanged) {
				t.Errorf("an unknown key is reported as a changed one: %v", err)
			}
		})
	}
}

// otherHostKnown returns a known_hosts file with a key for another host only.
func otherHostKnown(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "known_hosts")
	line := "example.org " + string(ssh.MarshalAuthorizedKey(testkit.WriteSSHKey(t, filepath.Join(t.TempDir(), "k"))))
	if err := os.WriteFile(p, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// The command the error suggests, run as it says, is what makes Open work.
func TestUnknownHostKeyHint(t *testing.T) {
	if _, err := exec.LookPath("ssh-keyscan"); err != nil {
		t.Skip("ssh-keyscan not installed")
	}
	s := testkit.StartSSHD(t)
	cfg := config(t, s)
	cfg.KnownHostsFile = filepath.Join(t.TempDir(), "known_hosts")
	err := refused(t, cfg, sftp.ErrUnknownHostKey)
	i := strings.Index(err.Error(), "ssh-keyscan")
	if i < 0 {
		t.Fatalf("error %q has no ssh-keyscan command", err)
	}
	cmd := exec.Command("sh", "-c", err.Error()[i:])
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", cmd, err, out)
	}
	open(t, cfg)
}

func TestChangedHostKey(t *testing.T) {
	s := testkit.StartSSHD(t)
	cfg := config(t, s)
	cfg.KnownHostsFile = s.WriteKnownHosts(t, testkit.WriteSSHKey(t, filepath.Join(t.TempDir(), "impostor")))
	err := refused(t, cfg, sftp.ErrHostKeyChanged)
	for _, want := range []string{
		"HOST KEY CHANGED",
		ssh.FingerprintSHA256(s.HostPublicKey),
		"ssh-keygen -R '[127.0.0.1]:" + strconv.Itoa(s.Port) + "' -f " + cfg.KnownHostsFile,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	if errors.Is(err, sftp.ErrUnknownHostKey) {
		t.Errorf("a changed key is reported as an unknown one: %v", err)
	}
}

func TestWrongUserKey(t *testing.T) {
	s := testkit.StartSSHD(t)
	cfg := config(t, s)
	cfg.KeyFile = filepath.Join(t.TempDir(), "id_ed25519")
	testkit.WriteSSHKey(t, cfg.KeyFile)
	err := refused(t, cfg, sftp.ErrAuth)
	for _, want := range []string{cfg.KeyFile, strconv.Quote(s.User), "authorized_keys", "ssh-copy-id"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}

	cfg.KeyFile = filepath.Join(t.TempDir(), "missing")
	if _, err := sftp.Open(context.Background(), cfg); err == nil || !strings.Contains(err.Error(), cfg.KeyFile) {
		t.Errorf("Open with a missing key file: %v, want an error naming it", err)
	}
}
