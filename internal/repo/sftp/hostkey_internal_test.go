package sftp

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

func publicKey(t *testing.T, raw any) ssh.PublicKey {
	t.Helper()
	k, err := ssh.NewPublicKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A server with keys of several types must be asked for the type known_hosts has, or it
// shows another and that looks like a changed key.
func TestKnownAlgorithms(t *testing.T) {
	edPub, _, _ := ed25519.GenerateKey(rand.Reader)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rs, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ed, ecK, rsK := publicKey(t, edPub), publicKey(t, &ec.PublicKey), publicKey(t, &rs.PublicKey)
	lines := knownhosts.Line([]string{"[backup.example.org]:2222"}, ecK) + "\n" +
		knownhosts.Line([]string{"backup.example.org"}, rsK) + "\n" +
		knownhosts.Line([]string{"other.example.org"}, ed) + "\n"
	file := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(file, []byte(lines), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		hostport string
		want     []string
	}{
		{"backup.example.org:2222", []string{ssh.KeyAlgoECDSA256}},
		{"backup.example.org:22", []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}},
		{"other.example.org:22", []string{ssh.KeyAlgoED25519}},
		{"unknown.example.org:22", nil},
	} {
		k := &hostKeys{file: file, hostport: tt.hostport}
		_, got, err := k.callback()
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("algorithms for %s = %v, want %v", tt.hostport, got, tt.want)
		}
	}
}

func TestShortType(t *testing.T) {
	for keyType, want := range map[string]string{
		ssh.KeyAlgoED25519:   "ed25519",
		ssh.KeyAlgoRSA:       "rsa",
		ssh.KeyAlgoECDSA384:  "ecdsa",
		ssh.KeyAlgoSKED25519: "",
	} {
		if got := shortType(keyType); got != want {
			t.Errorf("shortType(%q) = %q, want %q", keyType, got, want)
		}
	}
}
