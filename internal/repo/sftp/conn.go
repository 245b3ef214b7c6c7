package sftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	pkgsftp "github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/agent"

	"github.com/brr-dev/brr"
)

// Config says where a repository is and how to log in; the worker's configuration fills
// it from an sftp://[USER@]HOST[:PORT]/PATH URL and the repository's settings.
type Config struct {
	// User is the account to log in as; empty means the current user.
	User string
	// Host is the server's name or address; Port its port, 0 meaning 22.
	Host string
	Port int
	// Path is the repository's directory on the server, created where missing: absolute,
	// or relative to the login directory.
	Path string
	// KeyFile is an OpenSSH private key without a passphrase. Empty, and without UseAgent,
	// means the first of ~/.ssh/id_ed25519, id_ecdsa and id_rsa that exists.
	KeyFile string
	// UseAgent offers the keys of the ssh-agent at $SSH_AUTH_SOCK too, after KeyFile's.
	UseAgent bool
	// KnownHostsFile holds the server's host key; empty means ~/.ssh/known_hosts. A key
	// missing or different is an error: no key is ever trusted on first use.
	KnownHostsFile string
	// Timeout bounds connecting and logging in, and how long a connection may leave a
	// keepalive unanswered before it is taken for dead; 0 means 30 s.
	Timeout time.Duration
}

// ErrAuth says that the server refused every key offered.
var ErrAuth = errors.New("ssh authentication failed")

// keepaliveEvery is how often an idle or busy connection is checked: a connection
// that dies without a reset (a NAT forgets it, a server freezes) would otherwise hang
// every request on it for good, since sftp requests have no deadline. Tests shorten it.
var keepaliveEvery = 15 * time.Second

// withDefaults returns c with its defaults filled in.
func (c Config) withDefaults() (Config, error) {
	if c.Host == "" {
		return c, errors.New("open sftp repository: no host given (want sftp://[USER@]HOST[:PORT]/PATH)")
	}
	if c.Path == "" {
		return c, errors.New("open sftp repository: no path given (want sftp://[USER@]HOST[:PORT]/PATH)")
	}
	if c.Port == 0 {
		c.Port = 22
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.User == "" {
		u, err := user.Current()
		if err != nil {
			return c, fmt.Errorf("open sftp repository: no user given, and the current one is unknown: %w", err)
		}
		c.User = u.Username
	}
	if c.KnownHostsFile == "" || c.KeyFile == "" && !c.UseAgent {
		home, err := os.UserHomeDir()
		if err != nil {
			return c, fmt.Errorf("open sftp repository: no known_hosts file or key file given, and no home directory to look in: %w", err)
		}
		if c.KnownHostsFile == "" {
			c.KnownHostsFile = filepath.Join(home, ".ssh", "known_hosts")
		}
		if c.KeyFile == "" && !c.UseAgent {
			for _, name := range []string{"id_ed25519", "id_ecdsa", "id_rsa"} {
				if p := filepath.Join(home, ".ssh", name); fileExists(p) {
					c.KeyFile = p
					break
				}
			}
			if c.KeyFile == "" {
				return c, fmt.Errorf("open sftp repository: no key file given, no ssh-agent asked, and no key in %s", filepath.Join(home, ".ssh"))
			}
		}
	}
	return c, nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (c Config) addr() string { return net.JoinHostPort(c.Host, strconv.Itoa(c.Port)) }

// url is the repository's URL without secrets, for logs and errors.
func (c Config) url() string {
	p := c.Path
	if !strings.HasPrefix(p, "/") {
		p = "/~/" + p
	}
	return "sftp://" + c.User + "@" + c.addr() + p
}

// conn is one ssh connection and the sftp session on it.
type conn struct {
	ssh  *ssh.Client
	sftp *pkgsftp.Client
	// dead is closed once the sftp session has ended, for whatever reason.
	dead chan struct{}
	// The server's optional operations (OpenSSH has both).
	fsync, posixRename bool
}

func (c *conn) close() {
	_ = c.ssh.Close() // first, so that the sftp client's reader stops at once
	_ = c.sftp.Close()
}

func (c *conn) isDead() bool {
	select {
	case <-c.dead:
		return true
	default:
		return false
	}
}

// dial connects and logs in, checks the host key, and starts an sftp session; it
// gives up after cfg.Timeout or when ctx ends.
func dial(ctx context.Context, cfg Config) (*conn, error) {
	auth, done, err := authMethod(cfg)
	if err != nil {
		return nil, err
	}
	defer done()
	hk := &hostKeys{file: cfg.KnownHostsFile, hostport: cfg.addr()}
	check, algos, err := hk.callback()
	if err != nil {
		return nil, brr.Permanent(err)
	}
	d := net.Dialer{Timeout: cfg.Timeout}
	nc, err := d.DialContext(ctx, "tcp", cfg.addr())
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", cfg.addr(), err)
	}
	deadline := time.Now().Add(cfg.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = nc.SetDeadline(deadline)
	// The handshake takes no context: ending ctx makes its reads fail instead.
	stop := context.AfterFunc(ctx, func() { _ = nc.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	sc, chans, reqs, err := ssh.NewClientConn(nc, cfg.addr(), &ssh.ClientConfig{
		User:              cfg.User,
		Auth:              []ssh.AuthMethod{auth},
		HostKeyCallback:   check,
		HostKeyAlgorithms: algos,
	})
	switch {
	case err != nil && hk.err != nil:
		nc.Close()
		return nil, brr.Permanent(hk.err)
	case err != nil && strings.Contains(err.Error(), "unable to authenticate"):
		nc.Close()
		return nil, brr.Permanent(authError(cfg, err))
	case err != nil && ctx.Err() != nil:
		nc.Close()
		return nil, fmt.Errorf("log in to %s: %w", cfg.addr(), ctx.Err())
	case err != nil:
		nc.Close()
		return nil, fmt.Errorf("log in to %s: %w", cfg.addr(), err)
	}
	client := ssh.NewClient(sc, chans, reqs)
	s, err := pkgsftp.NewClient(client,
		// Many requests in flight per file: over a link with latency, a pack's bytes move
		// at the window's pace (64 × 32 KiB), not one round trip's. A failed write leaves
		// holes only in a temporary file, which Save removes.
		pkgsftp.UseConcurrentWrites(true),
		pkgsftp.UseConcurrentReads(true),
		pkgsftp.MaxConcurrentRequestsPerFile(64),
	)
	if err != nil {
		client.Close()
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		if strings.Contains(err.Error(), "subsystem request failed") {
			return nil, brr.Permanent(fmt.Errorf("start sftp on %s: the server has no sftp subsystem (sshd_config: Subsystem sftp internal-sftp): %w", cfg.addr(), err))
		}
		return nil, fmt.Errorf("start sftp on %s: %w", cfg.addr(), err)
	}
	if !stop() { // ctx ended just now: the deadline is in the past
		s.Close()
		client.Close()
		return nil, fmt.Errorf("start sftp on %s: %w", cfg.addr(), ctx.Err())
	}
	_ = nc.SetDeadline(time.Time{})
	c := &conn{ssh: client, sftp: s, dead: make(chan struct{})}
	c.fsync = extension(s, "fsync@openssh.com")
	c.posixRename = extension(s, "posix-rename@openssh.com")
	go func() {
		_ = s.Wait()
		close(c.dead)
	}()
	go c.keepalive(keepaliveEvery, cfg.Timeout)
	return c, nil
}

// extension reports whether the server supports version "1" of an OpenSSH extension.
func extension(s *pkgsftp.Client, name string) bool {
	v, ok := s.HasExtension(name)
	return ok && v == "1"
}

// keepalive asks the server for a reply every interval until the connection ends, and
// closes it when a reply takes longer than timeout: requests waiting on it then fail
// and are tried again on a new connection.
func (c *conn) keepalive(interval, timeout time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-c.dead:
			return
		case <-tick.C:
		}
		replied := make(chan error, 1)
		go func() {
			_, _, err := c.ssh.SendRequest("keepalive@openssh.com", true, nil)
			replied <- err
		}()
		select {
		case <-c.dead:
			return
		case err := <-replied:
			if err == nil {
				continue
			}
		case <-time.After(timeout):
		}
		c.close()
		return
	}
}

// authMethod returns the public keys to offer, from cfg.KeyFile and then the agent, as
// one method: ssh tries each method once, by name, so a second "publickey" would never
// be asked. done closes the agent connection.
func authMethod(cfg Config) (ssh.AuthMethod, func(), error) {
	var signers []ssh.Signer
	if cfg.KeyFile != "" {
		pem, err := os.ReadFile(cfg.KeyFile)
		if err != nil {
			return nil, nil, brr.Permanent(fmt.Errorf("read ssh key: %w", err))
		}
		s, err := ssh.ParsePrivateKey(pem)
		var pp *ssh.PassphraseMissingError
		if errors.As(err, &pp) {
			return nil, nil, brr.Permanent(fmt.Errorf("ssh key %s has a passphrase: add it to ssh-agent and use the agent instead", cfg.KeyFile))
		}
		if err != nil {
			return nil, nil, brr.Permanent(fmt.Errorf("read ssh key %s: %w", cfg.KeyFile, err))
		}
		signers = append(signers, s)
	}
	done := func() {}
	var ag agent.ExtendedAgent
	if cfg.UseAgent {
		sock := os.Getenv("SSH_AUTH_SOCK")
		if sock == "" && len(signers) == 0 {
			return nil, nil, brr.Permanent(errors.New("use ssh-agent: SSH_AUTH_SOCK is not set (start an agent, or give a key file)"))
		}
		if sock != "" {
			ac, err := net.Dial("unix", sock)
			if err != nil && len(signers) == 0 {
				return nil, nil, fmt.Errorf("connect to ssh-agent at %s: %w", sock, err)
			}
			if err == nil {
				ag, done = agent.NewClient(ac), func() { ac.Close() }
			}
		}
	}
	return ssh.PublicKeysCallback(func() ([]ssh.Signer, error) {
		if ag == nil {
			return signers, nil
		}
		more, err := ag.Signers()
		if err != nil && len(signers) == 0 {
			return nil, fmt.Errorf("ask ssh-agent for keys: %w", err)
		}
		return append(signers, more...), nil
	}), done, nil
}

// authError says which keys the server refused, and how to make it accept one.
func authError(cfg Config, err error) error {
	var offered []string
	if cfg.KeyFile != "" {
		offered = append(offered, "key file "+cfg.KeyFile)
	}
	if cfg.UseAgent {
		offered = append(offered, "the keys of ssh-agent")
	}
	hint := "add the public key to ~/.ssh/authorized_keys of " + cfg.User + " on " + cfg.Host
	if cfg.KeyFile != "" {
		hint += fmt.Sprintf(" (ssh-copy-id -i %s -p %d %s@%s)", cfg.KeyFile, cfg.Port, cfg.User, cfg.Host)
	}
	return fmt.Errorf("%w: %s refused %s for user %q; %s (%v)",
		ErrAuth, cfg.addr(), strings.Join(offered, " and "), cfg.User, hint, err)
}

// connError reports whether err is how a request fails when its connection is gone.
func connError(err error) bool {
	return errors.Is(err, pkgsftp.ErrSSHFxConnectionLost) ||
		errors.Is(err, pkgsftp.ErrSSHFxNoConnection) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, os.ErrClosed) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
