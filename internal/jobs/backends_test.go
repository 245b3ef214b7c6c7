package jobs_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/repo/natsobj"
	"github.com/brr-dev/brr/internal/repo/s3"
	"github.com/brr-dev/brr/internal/repo/sftp"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestReplicateAcrossBackends replicates one snapshot around a ring of the four
// backends, file → nats → s3 → sftp → another file repo, each repository with its own
// key, against real servers on loopback (an embedded NATS, versitygw, OpenSSH's sshd):
// every backend is a source once and a target once, and the last copy restores the
// bytes of the first.
func TestReplicateAcrossBackends(t *testing.T) {
	ctx := context.Background()
	backends := map[string]repo.Backend{}

	fb, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	backends["file"] = fb

	srv := natstest.Start(t)
	_, js := srv.JetStream(t)
	if backends["nats"], err = natsobj.Open(ctx, js, "brr-ring", 1); err != nil {
		t.Fatal(err)
	}

	s3srv := testkit.StartS3(t)
	if backends["s3"], err = s3.Open(ctx, s3.Config{
		Endpoint: s3srv.Endpoint, Bucket: s3srv.Bucket(t, "brr-ring"), Prefix: "repo", PathStyle: "path",
		Credentials: s3.Credentials{AccessKey: s3srv.AccessKey, SecretKey: s3srv.SecretKey},
	}); err != nil {
		t.Fatal(err)
	}

	sshd := testkit.StartSSHD(t)
	if backends["sftp"], err = sftp.Open(ctx, sftp.Config{
		User: sshd.User, Host: sshd.Host, Port: sshd.Port, Path: filepath.Join(t.TempDir(), "repo"),
		KeyFile: sshd.UserKeyFile, KnownHostsFile: sshd.KnownHosts(t),
	}); err != nil {
		t.Fatal(err)
	}

	fb2, err := file.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	backends["file2"] = fb2

	repos := map[string]*repo.Repository{}
	for name, be := range backends {
		r, err := repo.Init(ctx, be, []byte("password of "+name), testkit.RepoOptions())
		if err != nil {
			t.Fatalf("init %s repo at %s: %v", name, be.Location(), err)
		}
		t.Cleanup(func() { r.Close() })
		repos[name] = r
	}
	e := &jobs.Engine{Repos: repos, Host: "testhost", Worker: "worker-1"}

	src := t.TempDir()
	testkit.WriteTree(t, src, testkit.Tree{Seed: 21, Sizes: []int{3 << 20, 700 << 10, 40 << 10, 0, 1}})
	res, err := e.Backup(ctx, "backup-ring", brr.BackupJob{Path: src, Repo: "file"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ring := []string{"file", "nats", "s3", "sftp", "file2"}
	for i := 1; i < len(ring); i++ {
		from, to := ring[i-1], ring[i]
		r := replicate(t, e, "repl-"+to, brr.ReplicateJob{Snapshot: res.Snapshot, From: from, To: to})
		if len(r.Snapshots) != 1 || r.Snapshots[0] != res.Snapshot || r.BlobsSent == 0 {
			t.Fatalf("replicate %s → %s: copied %v with %d blobs, want %s", from, to, r.Snapshots, r.BlobsSent, res.Snapshot)
		}
	}
	target := filepath.Join(t.TempDir(), "out")
	restoreFrom(t, e, "file2", res.Snapshot, target)
	testkit.SameTree(t, src, target)
	for _, name := range ring {
		if rep := testkit.CheckClean(t, repos[name]); rep.Snapshots != 1 {
			t.Errorf("check %s: %d snapshots, want 1", name, rep.Snapshots)
		}
	}
}
