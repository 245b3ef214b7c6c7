package e2e_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/testkit"
)

func waitWorkers(t *testing.T, ctx context.Context, c *brr.Client, n int) {
	t.Helper()
	for {
		ws, err := c.Workers(ctx)
		if err != nil {
			t.Fatalf("list workers: %v", err)
		}
		if len(ws) >= n {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%d workers listed, want %d", len(ws), n)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// runWorkerToExit runs brr-worker with args and env until it exits, for a start-up that
// must fail, and returns its exit code and output.
func runWorkerToExit(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(bins.Worker, args...)
	cmd.Env = testkit.Environ(env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), out.String()
		}
		return 0, out.String()
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("brr-worker %v still running after 90s:\n%s", args, out.String())
	}
	return 0, ""
}

// authFlow runs what every way of logging in must allow: a worker takes backup job id,
// published and waited for by the CLI (with cliEnv and cliArgs), and a Go client on nc
// reads its result.
func authFlow(t *testing.T, w *testkit.Worker, id string, cliEnv []string, cliArgs []string, nc *nats.Conn) {
	t.Helper()
	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 11, Sizes: []int{64 << 10, 1000}})
	args := append(append([]string{}, cliArgs...), "--timeout", "60s", "backup", src, "--wait", "--id", id)
	if out, errOut, code := bins.RunCLI(t, cliEnv, args...); code != 0 {
		t.Fatalf("brr backup --wait exited %d: %s%s\nworker logs:\n%s", code, out, errOut, w.Logs())
	}
	c, err := brr.NewClient(nc)
	if err != nil {
		t.Fatal(err)
	}
	e, err := c.Job(testkit.Context(t, 30*time.Second), id)
	if err != nil || e.Status != brr.StatusSucceeded || e.Result == nil || e.Result.Backup == nil {
		t.Fatalf("Go client: job %s = %+v, %v; want it succeeded with a snapshot", id, e, err)
	}
}

// TestTokenAuth: a server that wants a token; the worker, the CLI and the Go client each
// log in with it, and a wrong one is refused with a message that says what to set.
func TestTokenAuth(t *testing.T) {
	const token = "brr_tok_5e8c2a1f9b3d7e60"
	opts := natstest.Options(t.TempDir())
	opts.DontListen, opts.Host, opts.Port = false, "127.0.0.1", server.RANDOM_PORT
	opts.Authorization = token
	ns := natstest.StartWith(t, opts)
	url := ns.ClientURL()

	w := bins.StartWorker(t, testkit.WorkerOptions{NATS: url, Env: []string{"BRR_NATS_TOKEN=" + token}})
	nc, err := nats.Connect(url, nats.Token(token))
	if err != nil {
		t.Fatalf("Go client with the token: %v", err)
	}
	t.Cleanup(nc.Close)
	authFlow(t, w, "token-1", []string{"BRR_NATS_URL=" + url, "BRR_NATS_TOKEN=" + token}, nil, nc)

	if _, err := nats.Connect(url, nats.Token("wrong")); !errors.Is(err, nats.ErrAuthorization) {
		t.Errorf("Go client with a wrong token: err = %v, want %v", err, nats.ErrAuthorization)
	}
	_, errOut, code := bins.RunCLI(t, []string{"BRR_NATS_URL=" + url, "BRR_NATS_TOKEN=wrong"}, "jobs")
	if code != 3 || !strings.Contains(errOut, "refused the login") || !strings.Contains(errOut, "BRR_NATS_TOKEN") {
		t.Errorf("brr with a wrong token exited %d, want 3 and what to set:\n%s", code, errOut)
	}
	code, out := runWorkerToExit(t, []string{"BRR_NATS_TOKEN=wrong"}, "--nats", url, "--data-dir", t.TempDir(), "--http", testkit.FreeAddr(t), "--log-format", "json")
	if code == 0 || !strings.Contains(out, "refused the login") || strings.Contains(out, "wrong\"") {
		t.Errorf("brr-worker with a wrong token exited %d, want non-zero, a reason and no token:\n%s", code, out)
	}
}

// TestUserPasswordFromEnvironment: the CLI takes its user, like its password, from the
// environment (BRR_NATS_USER), as the worker does.
func TestUserPasswordFromEnvironment(t *testing.T) {
	s := startDeployServer(t, "../../deploy/nats/single.conf", nil)
	w := bins.StartWorker(t, testkit.WorkerOptions{
		NATS: s.url,
		Env:  []string{"BRR_NATS_USER=worker", "BRR_NATS_PASSWORD=" + rolePasswords["worker"]},
	})
	nc, _ := connectAs(t, s, "publisher")
	authFlow(t, w, "user-env-1", []string{"BRR_NATS_URL=" + s.url, "BRR_NATS_USER=publisher", "BRR_NATS_PASSWORD=" + rolePasswords["publisher"]}, nil, nc)
	s.noViolations(t, "publisher", "backing up")

	_, errOut, code := bins.RunCLI(t, []string{"BRR_NATS_URL=" + s.url, "BRR_NATS_USER=publisher", "BRR_NATS_PASSWORD=not-it"}, "jobs")
	if code != 3 || !strings.Contains(errOut, "refused the login") || strings.Contains(errOut, "not-it") {
		t.Errorf("brr with a wrong password exited %d, want 3, what to set, and no password:\n%s", code, errOut)
	}
	// A password in the URL is not repeated in the error either.
	withPassword := strings.Replace(s.url, "nats://", "nats://publisher:not-it@", 1)
	_, errOut, code = bins.RunCLI(t, nil, "--nats", withPassword, "jobs")
	if code != 3 || !strings.Contains(errOut, "refused the login") || strings.Contains(errOut, "not-it") {
		t.Errorf("brr with a wrong password in the URL exited %d, want 3, what to set, and no password:\n%s", code, errOut)
	}
	code, out := runWorkerToExit(t, []string{"BRR_NATS_USER=worker", "BRR_NATS_PASSWORD=not-it"}, "--nats", s.url, "--data-dir", t.TempDir(), "--http", testkit.FreeAddr(t), "--log-format", "json")
	if code == 0 || !strings.Contains(out, "refused the login") || strings.Contains(out, "not-it") {
		t.Errorf("brr-worker with a wrong password exited %d, want non-zero, a reason and no password:\n%s", code, out)
	}
}

// writeCerts writes a CA, a server certificate for 127.0.0.1 and a client certificate,
// PEM files under dir named as deploy/nats/tls.conf and deploy/worker/tls.yaml name them.
func writeCerts(t *testing.T, dir string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	write := func(name, typ string, der []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeKey := func(name string, k *ecdsa.PrivateKey) {
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		write(name, "EC PRIVATE KEY", der)
	}
	now := time.Now()
	caKey := newKey()
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "brr test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	write("ca.pem", "CERTIFICATE", caDER)
	for i, c := range []struct {
		cert, key string
		usage     x509.ExtKeyUsage
	}{
		{"server.pem", "server-key.pem", x509.ExtKeyUsageServerAuth},
		{"worker.pem", "worker-key.pem", x509.ExtKeyUsageClientAuth},
	} {
		k := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(int64(i + 2)), Subject: pkix.Name{CommonName: strings.TrimSuffix(c.cert, ".pem")},
			NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{c.usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		write(c.cert, "CERTIFICATE", der)
		writeKey(c.key, k)
	}
}

// copyDeployFile copies deploy/<from> to dir, with each old string of replace replaced by
// its new one, and returns the copy's path.
func copyDeployFile(t *testing.T, dir, from string, replace ...string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("../../deploy", from))
	if err != nil {
		t.Fatal(err)
	}
	text := strings.NewReplacer(replace...).Replace(string(data))
	to := filepath.Join(dir, filepath.Base(from))
	if err := os.WriteFile(to, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return to
}

// TestTLS runs deploy/nats/tls.conf (mutual TLS and the role users) with certificates
// made here: the worker (deploy/worker/tls.yaml), the CLI and the Go client connect with
// the CA and a client certificate, and without them are refused with a clear reason.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	writeCerts(t, dir)
	copyDeployFile(t, dir, "nats/accounts.conf")
	conf := copyDeployFile(t, dir, "nats/tls.conf", "/etc/nats/tls/", dir+"/")
	s := startDeployServer(t, conf, nil)
	url := strings.Replace(s.url, "nats://", "tls://", 1)

	workerConf, err := os.ReadFile(copyDeployFile(t, dir, "worker/tls.yaml", "/etc/brr/tls/", dir+"/", "tls://nats.example.internal:4222", url))
	if err != nil {
		t.Fatal(err)
	}
	w := bins.StartWorker(t, testkit.WorkerOptions{NATS: url, Config: string(workerConf), Env: []string{"BRR_NATS_PASSWORD=" + rolePasswords["worker"]}})

	nc, err := nats.Connect(url, nats.RootCAs(filepath.Join(dir, "ca.pem")),
		nats.ClientCert(filepath.Join(dir, "worker.pem"), filepath.Join(dir, "worker-key.pem")),
		nats.UserInfo("publisher", rolePasswords["publisher"]), nats.CustomInboxPrefix(brr.InboxPrefix("publisher")))
	if err != nil {
		t.Fatalf("Go client over TLS: %v", err)
	}
	t.Cleanup(nc.Close)
	if !nc.TLSRequired() {
		t.Fatal("the server does not require TLS")
	}
	env := []string{"BRR_NATS_URL=" + url, "BRR_NATS_USER=publisher", "BRR_NATS_PASSWORD=" + rolePasswords["publisher"]}
	tlsFlags := []string{"--tls-ca", filepath.Join(dir, "ca.pem"), "--tls-cert", filepath.Join(dir, "worker.pem"), "--tls-key", filepath.Join(dir, "worker-key.pem")}
	authFlow(t, w, "tls-1", env, tlsFlags, nc)
	s.noViolations(t, "publisher", "backing up over TLS")

	// Without the CA the server is not trusted; without a client certificate the
	// server does not trust the client; a plain connection is refused.
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"no CA", []string{"--tls-cert", filepath.Join(dir, "worker.pem"), "--tls-key", filepath.Join(dir, "worker-key.pem")}, "--tls-ca"},
		{"no client certificate", []string{"--tls-ca", filepath.Join(dir, "ca.pem")}, "--tls-cert"},
		{"plain nats://", []string{"--nats", s.url}, "--tls-ca"},
	} {
		_, errOut, code := bins.RunCLI(t, env, append(c.args, "jobs")...)
		if code != 3 || !strings.Contains(errOut, "TLS with NATS") || !strings.Contains(errOut, c.want) {
			t.Errorf("brr with %s exited %d, want 3 and a hint at %s:\n%s", c.name, code, c.want, errOut)
		}
	}
}

// TestCredsAuth runs a server in operator mode (accounts and users as signed JWTs, the
// way nsc sets them up): the worker, the CLI and the Go client log in with .creds files.
func TestCredsAuth(t *testing.T) {
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	operator, err := nkeys.CreateOperator()
	must(err)
	opPub, err := operator.PublicKey()
	must(err)
	newAccount := func(name string, js bool) (nkeys.KeyPair, string, string) {
		kp, err := nkeys.CreateAccount()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		ac := jwt.NewAccountClaims(pub)
		ac.Name = name
		if js {
			ac.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
		}
		token, err := ac.Encode(operator)
		must(err)
		return kp, pub, token
	}
	_, sysPub, sysJWT := newAccount("SYS", false)
	account, accPub, accJWT := newAccount("BRR", true)
	oc := jwt.NewOperatorClaims(opPub)
	oc.SystemAccount = sysPub
	resolver := &server.MemAccResolver{}
	must(resolver.Store(sysPub, sysJWT))
	must(resolver.Store(accPub, accJWT))

	opts := natstest.Options(t.TempDir())
	opts.DontListen, opts.Host, opts.Port = false, "127.0.0.1", server.RANDOM_PORT
	opts.TrustedOperators = []*jwt.OperatorClaims{oc}
	opts.AccountResolver = resolver
	opts.SystemAccount = sysPub
	ns := natstest.StartWith(t, opts)
	url := ns.ClientURL()

	creds := func(name string) string {
		kp, err := nkeys.CreateUser()
		must(err)
		pub, err := kp.PublicKey()
		must(err)
		uc := jwt.NewUserClaims(pub)
		uc.Name = name
		token, err := uc.Encode(account)
		must(err)
		seed, err := kp.Seed()
		must(err)
		data, err := jwt.FormatUserConfig(token, seed)
		must(err)
		path := filepath.Join(t.TempDir(), name+".creds")
		must(os.WriteFile(path, data, 0o600))
		return path
	}
	workerCreds, cliCreds := creds("worker"), creds("publisher")

	w := bins.StartWorker(t, testkit.WorkerOptions{NATS: url, Env: []string{"BRR_NATS_CREDS=" + workerCreds}})
	nc, err := nats.Connect(url, nats.UserCredentials(cliCreds))
	if err != nil {
		t.Fatalf("Go client with creds: %v", err)
	}
	t.Cleanup(nc.Close)
	authFlow(t, w, "creds-flag-1", []string{"BRR_NATS_URL=" + url}, []string{"--creds", cliCreds}, nc)
	authFlow(t, w, "creds-env-1", []string{"BRR_NATS_URL=" + url, "BRR_NATS_CREDS=" + cliCreds}, nil, nc)

	if _, errOut, code := bins.RunCLI(t, []string{"BRR_NATS_URL=" + url}, "jobs"); code != 3 || !strings.Contains(errOut, "--creds") {
		t.Errorf("brr without creds exited %d, want 3 and what to set:\n%s", code, errOut)
	}
}
