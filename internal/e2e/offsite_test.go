package e2e_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestOffsiteS3 runs a worker with a file repo and an offsite repo in a real S3 server
// (versitygw on loopback), and the policy local → offsite: a backup replicates by
// itself and the offsite copy restores the same bytes. Then the S3 server is stopped
// in the middle of a larger replication and started again: the replication ends, the
// offsite holds no more data than the source (nothing it had was sent again), and a
// verify reading every byte of it is clean.
func TestOffsiteS3(t *testing.T) {
	s3 := testkit.StartS3(t)
	bucket := s3.Bucket(t, "brr-offsite")
	dir := t.TempDir()
	writeKeys(t, dir, "local", "offsite")
	cfg := fmt.Sprintf(`repos:
  local:   {url: "file://%[1]s/repo", key_file: %[1]s/local.key}
  offsite: {url: "s3:http://%[2]s/%[3]s/brr", key_file: %[1]s/offsite.key, path_style: path,
            access_key_env: OFFSITE_KEY_ID, secret_key_env: OFFSITE_SECRET}
replicate: {local: [offsite]}
`, dir, s3.Endpoint, bucket)
	w := bins.StartWorker(t, testkit.WorkerOptions{Config: cfg, Env: []string{
		"OFFSITE_KEY_ID=" + s3.AccessKey, "OFFSITE_SECRET=" + s3.SecretKey}})
	_, c := testkit.Connect(t, w.NATSURL)
	ctx := testkit.Context(t, 3*time.Minute)
	if logs := w.Logs(); strings.Contains(logs, s3.SecretKey) {
		t.Fatalf("the worker logged the S3 secret key")
	}

	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 3, Sizes: []int{700 << 10, 30 << 10, 0, 5}})
	first := backupWait(t, w, src)
	waitReplicated(ctx, t, c, first)
	target := filepath.Join(t.TempDir(), "from-offsite")
	if stdout, stderr, code := bins.RunCLI(t, nil, "--nats", w.NATSURL, "restore", first, target, "--from", "offsite", "--wait"); code != 0 {
		t.Fatalf("brr restore --from offsite: exit %d\n%s\n%s", code, stdout, stderr)
	}
	testkit.SameTree(t, src, target)

	// A larger backup, whose replication finds the S3 server gone for a while.
	big := t.TempDir()
	testkit.WriteTree(t, big, testkit.Tree{Seed: 4, Sizes: []int{20 << 20, 14 << 20, 9 << 20, 3 << 20, 100 << 10}})
	var once sync.Once
	var stoppedAt time.Time
	restarted := make(chan struct{})
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	err := c.Subscribe(sctx, brr.Subjects{}.Events(brr.EventReplication), func(e *brr.Event) {
		if e.Status == brr.StatusProgress || e.Status == brr.StatusStarted {
			once.Do(func() {
				go func() {
					s3.Stop()
					stoppedAt = time.Now()
					time.Sleep(2 * time.Second)
					s3.Start()
					close(restarted)
				}()
			})
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	second := backupWait(t, w, big)
	done := waitReplicated(ctx, t, c, second)
	select {
	case <-restarted:
	case <-ctx.Done():
		t.Fatal("the S3 server was never stopped: no replication event came")
	}
	if !done.Time.After(stoppedAt) {
		t.Fatalf("the replication ended at %s, before the S3 server was stopped at %s: the test proved nothing", done.Time, stoppedAt)
	}
	t.Logf("replication after the restart: %d blobs sent, attempt %d", done.Replication.BlobsSent, done.Attempt)

	localData, offsiteData := dirBytes(t, filepath.Join(dir, "repo", "data")), dirBytes(t, filepath.Join(s3.Dir, bucket, "brr", "data"))
	if offsiteData > localData+localData/10 {
		t.Errorf("offsite holds %d bytes of packs, the source %d: data was sent twice", offsiteData, localData)
	}
	if stdout, stderr, code := bins.RunCLI(t, nil, "--nats", w.NATSURL, "verify", "--repo", "offsite", "--read-data", "--wait"); code != 0 {
		t.Fatalf("brr verify --repo offsite --read-data: exit %d\n%s\n%s", code, stdout, stderr)
	}
	target = filepath.Join(t.TempDir(), "big-from-offsite")
	if stdout, stderr, code := bins.RunCLI(t, nil, "--nats", w.NATSURL, "restore", second, target, "--from", "offsite", "--wait"); code != 0 {
		t.Fatalf("brr restore --from offsite: exit %d\n%s\n%s", code, stdout, stderr)
	}
	testkit.SameTree(t, big, target)
}

// writeKeys writes the key file dir/NAME.key of each repo named.
func writeKeys(t *testing.T, dir string, names ...string) {
	t.Helper()
	for _, name := range names {
		testkit.WriteFile(t, filepath.Join(dir, name+".key"), []byte("key of "+name+"\n"), 0o600)
	}
}

// backupWait backs src up through the CLI and returns the snapshot's id.
func backupWait(t *testing.T, w *testkit.Worker, src string) string {
	t.Helper()
	stdout, stderr, code := bins.RunCLI(t, nil, "--nats", w.NATSURL, "--json", "backup", src, "--wait")
	if code != 0 {
		t.Fatalf("brr backup: exit %d\n%s\n%s", code, stdout, stderr)
	}
	e, err := brr.DecodeEvent([]byte(strings.TrimSpace(stdout)))
	if err != nil || e.Result == nil || e.Result.Backup == nil {
		t.Fatalf("backup --json printed %q: %v", stdout, err)
	}
	return e.Result.Backup.Snapshot
}

// waitReplicated waits for the replication.completed event that copied snapshot.
func waitReplicated(ctx context.Context, t *testing.T, c *brr.Client, snapshot string) *brr.Event {
	t.Helper()
	var done *brr.Event
	var events []*brr.Event
	ok := testkit.WaitFor(2*time.Minute, func() bool {
		var err error
		if events, err = c.Events(ctx, brr.Subjects{}.Events(brr.EventReplication), time.Time{}, 0); err != nil {
			return false
		}
		for _, e := range events {
			if e.Status == brr.StatusCompleted && e.Replication != nil && len(e.Replication.Snapshots) == 1 && e.Replication.Snapshots[0] == snapshot {
				done = e
			}
		}
		return done != nil
	})
	if !ok {
		t.Fatalf("no replication.completed event for %s after 2 minutes; replication events: %+v", snapshot, events)
	}
	return done
}

// dirBytes is the size of the regular files under dir.
func dirBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// TestOffsiteSFTP runs a worker with a repo on a real sshd (OpenSSH on loopback),
// reached with a key file and a known_hosts file, append-only and with an upload limit:
// a backup into it restores the same bytes, a prune is refused and changes nothing, and
// a worker whose known_hosts lacks the server's key refuses to start, with the
// line that adds it.
func TestOffsiteSFTP(t *testing.T) {
	sshd := testkit.StartSSHD(t)
	dir := t.TempDir()
	writeKeys(t, dir, "vault")
	repoURL := fmt.Sprintf("sftp://%s@%s/%s", sshd.User, sshd.Addr, filepath.Join(dir, "vault-repo"))
	knownHosts := sshd.KnownHosts(t)
	cfg := fmt.Sprintf(`repos:
  vault: {url: %q, key_file: %s/vault.key, ssh_key_file: %s, known_hosts: %s, append_only: true, limit_upload: 8192}
`, repoURL, dir, sshd.UserKeyFile, knownHosts)
	w := bins.StartWorker(t, testkit.WorkerOptions{Config: cfg})

	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 5, Sizes: []int{2 << 20, 60 << 10, 0, 7}})
	snap := backupWait(t, w, src)
	target := filepath.Join(t.TempDir(), "from-vault")
	if stdout, stderr, code := bins.RunCLI(t, nil, "--nats", w.NATSURL, "restore", snap, target, "--wait"); code != 0 {
		t.Fatalf("brr restore: exit %d\n%s\n%s", code, stdout, stderr)
	}
	testkit.SameTree(t, src, target)
	if _, err := os.Stat(filepath.Join(dir, "vault-repo", "config")); err != nil {
		t.Fatalf("the repository is not on the sftp server's disk: %v", err)
	}

	// The repo is append_only: a prune is refused, naming the option, and removes nothing.
	before := dirBytes(t, filepath.Join(dir, "vault-repo"))
	stdout, stderr, code := bins.RunCLI(t, nil, "--nats", w.NATSURL, "prune", "--repo", "vault", "--keep-last", "0", "--wait")
	if code == 0 || !strings.Contains(stdout+stderr, "append_only") {
		t.Fatalf("brr prune of an append-only repo: exit %d, want a refusal naming append_only\n%s\n%s", code, stdout, stderr)
	}
	if after := dirBytes(t, filepath.Join(dir, "vault-repo")); after != before {
		t.Fatalf("the refused prune changed the repository: %d bytes before, %d after", before, after)
	}

	// A known_hosts without the server's key: the worker refuses the repo at start.
	empty := filepath.Join(dir, "known_hosts.empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = strings.Replace(cfg, knownHosts, empty, 1)
	cfgPath := filepath.Join(dir, "unknown-host.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(cctx, bins.Worker, "--config", cfgPath, "--data-dir", t.TempDir(),
		"--listen", testkit.FreeAddr(t), "--http", testkit.FreeAddr(t))
	cmd.Env = testkit.Environ()
	out, err := cmd.CombinedOutput()
	if err == nil || cctx.Err() != nil || !strings.Contains(string(out), "ssh-keyscan") {
		t.Fatalf("brr-worker with an unknown host key: %v, want a refusal naming ssh-keyscan:\n%s", err, out)
	}
}
