package sftp

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"strconv"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// Host key errors. Neither is ever resolved by trusting the key silently: a person adds
// the key to known_hosts (ErrUnknownHostKey) or finds out why it changed (ErrHostKeyChanged).
var (
	// ErrUnknownHostKey says that known_hosts has no key for the server.
	ErrUnknownHostKey = errors.New("unknown host key")
	// ErrHostKeyChanged says that known_hosts has a key for the server, and the server
	// showed another: someone may be in the middle, or the server was reinstalled.
	ErrHostKeyChanged = errors.New("HOST KEY CHANGED")
)

// hostKeys checks a server's host key against a known_hosts file, read afresh at each
// dial so that a key added while the worker runs is seen at the next reconnect.
type hostKeys struct {
	file     string // known_hosts
	hostport string // as dialed: "host:port"
	// err is why the last check failed, in words for a person: ssh wraps the callback's
	// error in its own, which is kept out of what the user reads.
	err error
}

// callback returns the HostKeyCallback for one dial, and the host key algorithms to ask
// the server for: those of the keys known_hosts has for it, so that a server with keys of
// several types shows the one known instead of one that would look like a changed key.
func (k *hostKeys) callback() (ssh.HostKeyCallback, []string, error) {
	db, err := knownhosts.New(k.file)
	if errors.Is(err, fs.ErrNotExist) {
		db = func(string, net.Addr, ssh.PublicKey) error { return &knownhosts.KeyError{} }
	} else if err != nil {
		return nil, nil, fmt.Errorf("read known_hosts %s: %w", k.file, err)
	}
	cb := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := db(hostname, remote, key)
		var keyErr *knownhosts.KeyError
		var revoked *knownhosts.RevokedError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &keyErr) && len(keyErr.Want) == 0:
			k.err = k.unknown(key)
		case errors.As(err, &keyErr):
			k.err = k.changed(key, keyErr.Want)
		case errors.As(err, &revoked):
			k.err = fmt.Errorf("%w: the host key of %s (%s %s) is marked @revoked in %s:%d",
				ErrHostKeyChanged, knownhosts.Normalize(k.hostport), key.Type(), ssh.FingerprintSHA256(key), revoked.Revoked.Filename, revoked.Revoked.Line)
		default:
			k.err = fmt.Errorf("check host key of %s against %s: %w", k.hostport, k.file, err)
		}
		return k.err
	}
	return cb, knownAlgorithms(db, k.hostport), nil
}

// unknown says that key is not in known_hosts, and how to add it once it is checked.
func (k *hostKeys) unknown(key ssh.PublicKey) error {
	host, port, _ := net.SplitHostPort(k.hostport)
	typ := shortType(key.Type())
	scan, admin := "ssh-keyscan", "ssh-keygen -lf /etc/ssh/ssh_host_*_key.pub"
	if port != "22" {
		scan += " -p " + port
	}
	if typ != "" {
		scan += " -t " + typ
		admin = "ssh-keygen -lf /etc/ssh/ssh_host_" + typ + "_key.pub"
	}
	scan += " " + host + " >> " + k.file
	return fmt.Errorf("%w: the server %s shows host key %s %s, which %s does not have; "+
		"compare the fingerprint with the one the server's administrator gives (%s on the server), "+
		"then add it with: %s",
		ErrUnknownHostKey, knownhosts.Normalize(k.hostport), key.Type(), ssh.FingerprintSHA256(key), k.file, admin, scan)
}

// shortType returns the name ssh-keyscan -t and the server's key files use for a key
// type, or "" for one it does not know.
func shortType(keyType string) string {
	switch {
	case keyType == ssh.KeyAlgoED25519:
		return "ed25519"
	case keyType == ssh.KeyAlgoRSA:
		return "rsa"
	case strings.HasPrefix(keyType, "ecdsa-sha2-"):
		return "ecdsa"
	}
	return ""
}

// changed says, loudly, that key is not the one known_hosts has for the server.
func (k *hostKeys) changed(key ssh.PublicKey, want []knownhosts.KnownKey) error {
	var known []string
	for _, w := range want {
		known = append(known, fmt.Sprintf("%s %s (%s:%d)", w.Key.Type(), ssh.FingerprintSHA256(w.Key), w.Filename, w.Line))
	}
	name := knownhosts.Normalize(k.hostport)
	return fmt.Errorf("%w: the server %s shows host key %s %s, but known_hosts has %s. "+
		"Someone may be intercepting the connection (man in the middle), or the server was "+
		"reinstalled. Do not connect until you know which; if the new key is right, remove the "+
		"old one with: ssh-keygen -R '%s' -f %s, and add the new one",
		ErrHostKeyChanged, name, key.Type(), ssh.FingerprintSHA256(key), strings.Join(known, ", "), name, k.file)
}

// knownAlgorithms returns the host key algorithms of the keys db has for hostport, or
// nil (any algorithm) when it has none. It asks db about a key no one has, whose
// mismatch lists every key known for the host.
func knownAlgorithms(db ssh.HostKeyCallback, hostport string) []string {
	probe, err := ssh.NewPublicKey(ed25519.PublicKey(make([]byte, ed25519.PublicKeySize)))
	if err != nil {
		return nil
	}
	host, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return nil
	}
	p, _ := strconv.Atoi(port)
	var keyErr *knownhosts.KeyError
	if !errors.As(db(hostport, &net.TCPAddr{IP: net.ParseIP(host), Port: p}, probe), &keyErr) {
		return nil
	}
	var algos []string
	seen := map[string]bool{}
	for _, w := range keyErr.Want {
		for _, a := range algorithmsFor(w.Key.Type()) {
			if !seen[a] {
				seen[a] = true
				algos = append(algos, a)
			}
		}
	}
	return algos
}

// algorithmsFor returns the signature algorithms a host key of keyType is shown with: an
// RSA key signs with SHA-2 today, and with SHA-1 on old servers.
func algorithmsFor(keyType string) []string {
	if keyType == ssh.KeyAlgoRSA {
		return []string{ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA}
	}
	return []string{keyType}
}
