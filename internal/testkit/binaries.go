package testkit

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/brr-dev/brr/internal/natstest"
)

// Binaries are brr-worker and brr built from this tree, for tests that run them as
// processes. A test binary builds them once, in TestMain:
//
//	var bins testkit.Binaries
//
//	func TestMain(m *testing.M) { os.Exit(bins.Main(m)) }
type Binaries struct {
	// Race builds them with the race detector: slower, for a package's own few process
	// tests rather than suites that run many workers.
	Race bool
	// NATS builds nats-server too (natstest.ServerPackage, from the module cache), for
	// tests that run NATS nodes as processes to kill them with SIGKILL.
	NATS bool
	// Worker and CLI are the paths of brr-worker and brr, set by Main; NATSServer the
	// path of nats-server when NATS is set.
	Worker, CLI, NATSServer string
}

// Main builds the binaries into a temporary directory, runs the tests of m and removes
// the directory. It returns the exit code for os.Exit: m's, or 1 when a build failed.
func (b *Binaries) Main(m *testing.M) int {
	dir, err := os.MkdirTemp("", "brr-test-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := b.build(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// build builds brr-worker and brr (and nats-server) into dir by import path, so that it
// works from any package's directory.
func (b *Binaries) build(dir string) error {
	b.Worker = filepath.Join(dir, "brr-worker")
	b.CLI = filepath.Join(dir, "brr")
	type target struct {
		out, pkg string
		race     bool
	}
	targets := []target{
		{b.Worker, "github.com/brr-dev/brr/cmd/worker", b.Race},
		{b.CLI, "github.com/brr-dev/brr/cmd/publisher", b.Race},
	}
	if b.NATS {
		b.NATSServer = filepath.Join(dir, "nats-server")
		targets = append(targets, target{b.NATSServer, natstest.ServerPackage, false})
	}
	for _, bin := range targets {
		args := []string{"build", "-o", bin.out}
		if bin.race {
			args = append(args, "-race")
		}
		out, err := exec.Command("go", append(args, bin.pkg)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("build %s: %v\n%s", bin.pkg, err, out)
		}
	}
	return nil
}

// RunCLI runs brr with args until it exits and returns its stdout, stderr and exit code.
// Its environment is the test's without BRR_* variables, plus env.
func (b *Binaries) RunCLI(t testing.TB, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(b.CLI, args...)
	cmd.Env = Environ(env...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("run brr %s: %v", strings.Join(args, " "), err)
	}
	return out.String(), errOut.String(), code
}

// Environ returns the test process's environment without BRR_* variables, so that the
// developer's settings do not leak into a process under test, with extra added.
func Environ(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BRR_") {
			env = append(env, kv)
		}
	}
	return append(env, extra...)
}
