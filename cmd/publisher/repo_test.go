package main

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/natstest"
)

// repoServer is a server with the streams and buckets as the workers make them, the
// pool's repo registry among them; no worker runs.
func repoServer(t *testing.T) (string, jetstream.JetStream, *events.Registry) {
	t.Helper()
	srv := natstest.StartListening(t)
	_, js := srv.JetStream(t)
	ctx := context.Background()
	if err := events.EnsureStreams(ctx, js, events.Config{}); err != nil {
		t.Fatal(err)
	}
	registry, err := events.OpenRegistry(ctx, js, events.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), js, registry
}

// lookup is the registration of repo in pool, nil when there is none.
func lookup(t *testing.T, registry *events.Registry, pool, repo string) *brr.RepoRegistration {
	t.Helper()
	reg, err := registry.Lookup(context.Background(), pool, repo)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

// policy is the replication policy of repo in pool: nil when none was ever set.
func policy(t *testing.T, registry *events.Registry, pool, repo string) []string {
	t.Helper()
	reg := lookup(t, registry, pool, repo)
	if reg == nil {
		t.Fatalf("pool %s has no repo %s", pool, repo)
	}
	if reg.ReplicateTo == nil {
		return nil
	}
	return *reg.ReplicateTo
}

// repoBeat publishes a heartbeat of worker id of pools, sent at, that serves repos and
// refuses refused, as a worker does.
func repoBeat(t *testing.T, js jetstream.JetStream, id string, pools []string, at time.Time, repos []string, refused ...brr.RefusedRepo) {
	t.Helper()
	e := &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventHealth, Status: brr.Status(brr.CheckWorker), Time: at, Worker: id,
		Heartbeat: &brr.WorkerInfo{ID: id, Host: "host-" + id, Version: "v1", Pools: pools, Concurrency: 4,
			IntervalSeconds: 1, Started: at.Add(-time.Hour), Time: at, Repos: repos, RefusedRepos: refused}}
	data, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(context.Background(), brr.Subjects{}.Event(e), data); err != nil {
		t.Fatal(err)
	}
}

func TestRepoAdd(t *testing.T) {
	t.Parallel()
	url, js, registry := repoServer(t)

	r := brrCmd(t, url, "repo", "add", "offsite", "s3://s3.example.com/brr-backups/prod", "--password-env", "BRR_OFFSITE_PASSWORD",
		"--access-key-env", "OFFSITE_KEY_ID", "--secret-key-env", "OFFSITE_SECRET", "--region", "eu-west-1", "--path-style", "path",
		"--append-only", "--limit-upload", "1024", "--limit-download", "2048")
	if r.code != 0 {
		t.Fatalf("repo add: %v", r)
	}
	for _, want := range []string{
		"repo offsite added to pool default: s3://s3.example.com/brr-backups/prod\n",
		"open it within seconds",
		"the environment variable BRR_OFFSITE_PASSWORD, holding the repository's password",
		"the S3 credentials in the environment variables OFFSITE_KEY_ID and OFFSITE_SECRET",
		"brr repo ls\n",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("repo add: stdout lacks %q:\n%v", want, r)
		}
	}
	// No worker answers the pool's ping here.
	if !strings.Contains(r.stderr, "warning:") || !strings.Contains(r.stderr, "the first worker of pool default to start opens repo offsite") {
		t.Errorf("repo add with no worker: stderr lacks the warning:\n%v", r)
	}

	reg := lookup(t, registry, "default", "offsite")
	if reg == nil {
		t.Fatal("repo add registered nothing")
	}
	want := brr.RepoSpec{URL: "s3://s3.example.com/brr-backups/prod", PasswordEnv: "BRR_OFFSITE_PASSWORD", AppendOnly: true,
		LimitUpload: 1024, LimitDownload: 2048, Region: "eu-west-1", PathStyle: "path", AccessKeyEnv: "OFFSITE_KEY_ID", SecretKeyEnv: "OFFSITE_SECRET"}
	if reg.Spec == nil || *reg.Spec != want {
		t.Fatalf("registered spec = %+v, want %+v", reg.Spec, want)
	}
	if reg.ID != "" || reg.Location != "" || reg.ReplicateTo != nil || !strings.Contains(reg.Worker, "@") || reg.Host == "" || time.Since(reg.Time) > time.Minute {
		t.Errorf("registration = %+v, want no id, location or policy yet, and who added it when", reg)
	}
	// The stored value names where the secrets are and holds nothing else.
	kv, err := js.KeyValue(context.Background(), brr.Subjects{}.ReposBucket())
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(context.Background(), "default.offsite")
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		Spec map[string]any `json:"spec"`
	}
	if err := json.Unmarshal(entry.Value(), &raw); err != nil {
		t.Fatal(err)
	}
	for key := range raw.Spec {
		if !slices.Contains([]string{"url", "password_env", "append_only", "limit_upload", "limit_download", "region", "path_style",
			"access_key_env", "secret_key_env"}, key) {
			t.Errorf("the stored spec has %s: %s", key, entry.Value())
		}
	}

	// The same name again, even at another URL, is refused, and the registration kept.
	r = brrCmd(t, url, "repo", "add", "offsite", "file:///srv/other", "--key-file", "/etc/brr/other.key")
	if r.code != 1 || !strings.Contains(r.stderr, "pool default has a repo offsite; remove it first with `brr repo rm offsite`") {
		t.Fatalf("repo add of an existing name: %v", r)
	}
	if got := lookup(t, registry, "default", "offsite"); got.Spec == nil || got.Spec.URL != want.URL {
		t.Errorf("after a refused add, the spec is %+v", got.Spec)
	}

	// --pool registers it for another pool; --json prints the registration.
	r = brrCmd(t, url, "repo", "add", "offsite", "sftp://brr@vault.example.com/srv/brr", "--key-file", "/etc/brr/vault.key", "--pool", "edge", "--json")
	if r.code != 0 {
		t.Fatalf("repo add --pool edge --json: %v", r)
	}
	var printed brr.RepoRegistration
	if err := json.Unmarshal([]byte(r.stdout), &printed); err != nil || printed.Pool != "edge" || printed.Repo != "offsite" || printed.Spec.KeyFile != "/etc/brr/vault.key" {
		t.Fatalf("repo add --json printed %q (%v)", r.stdout, err)
	}
	if reg := lookup(t, registry, "edge", "offsite"); reg == nil || reg.Spec.URL != "sftp://brr@vault.example.com/srv/brr" {
		t.Fatalf("pool edge's offsite = %+v", reg)
	}
}

func TestRepoAddRefusedBeforeWriting(t *testing.T) {
	t.Parallel()
	url, _, registry := repoServer(t)
	for _, tt := range []struct {
		args    []string
		want    []string
		notWant string
	}{
		{[]string{"x", "file://srv/r", "--password-env", "P"}, []string{`repo add: repo x: URL: "file://srv/r": want file:///ABSOLUTE/PATH`}, ""},
		{[]string{"x", "ftp://h/r", "--password-env", "P"}, []string{"unknown scheme"}, ""},
		{[]string{"x", "file:///srv/r"}, []string{"repo add: repo x: set --key-file (a file holding the key) or --password-env (the name of an environment variable"}, ""},
		{[]string{"x", "file:///srv/r", "--key-file", "/k", "--password-env", "P"}, []string{"set --key-file or --password-env, not both"}, ""},
		{[]string{"x", "file:///srv/r", "--key-file", "keys/x.key"}, []string{`repo x: --key-file: must be an absolute path, got "keys/x.key"`}, ""},
		{[]string{"x", "file:///srv/r", "--password-env", "my password"}, []string{`--password-env: "my password" is not an environment variable name`}, ""},
		{[]string{"x", "s3://AKIAEXAMPLE:s3cr3t@s3.example.com/b", "--password-env", "P"}, []string{"an S3 URL holds no credentials"}, "s3cr3t"},
		{[]string{"x", "sftp://u:pa55word@h/srv/r", "--password-env", "P"}, []string{"an sftp URL holds no password"}, "pa55word"},
		{[]string{"x", "file:///srv/r", "--password-env", "P", "--region", "eu-west-1"}, []string{"repo x: --region: only an s3:// repo takes it; this repo's URL is file://"}, ""},
		{[]string{"x", "s3://h/bkt", "--password-env", "P", "--path-style", "sideways"}, []string{`--path-style: "sideways" is not auto, path or virtual`}, ""},
		{[]string{"x", "s3://h/bkt", "--password-env", "P", "--access-key-env", "K"}, []string{"set --access-key-env and --secret-key-env together"}, ""},
		{[]string{"x", "file:///srv/r", "--password-env", "P", "--limit-upload", "-1"}, []string{"--limit-upload and --limit-download are KiB/s"}, ""},
		{[]string{"x", "file://rel"}, []string{"repo add: 2 problems:\n  repo x: URL:", "\n  repo x: set --key-file"}, ""},
		{[]string{"a.b", "file:///srv/r", "--password-env", "P"}, []string{`repo name "a.b"`}, ""},
		{[]string{"", "file:///srv/r", "--password-env", "P"}, []string{"empty repo name"}, ""},
		{[]string{"x"}, []string{"repo add takes 2 arguments, got 1"}, ""},
	} {
		r := brrCmd(t, url, append([]string{"repo", "add"}, tt.args...)...)
		if r.code != 2 {
			t.Errorf("brr repo add %s: %v\nwant exit 2", strings.Join(tt.args, " "), r)
			continue
		}
		for _, want := range tt.want {
			if !strings.Contains(r.stderr, want) {
				t.Errorf("brr repo add %s: stderr lacks %q:\n%s", strings.Join(tt.args, " "), want, r.stderr)
			}
		}
		if tt.notWant != "" && strings.Contains(r.stderr, tt.notWant) {
			t.Errorf("brr repo add %s: stderr shows the secret:\n%s", strings.Join(tt.args, " "), r.stderr)
		}
	}
	regs, err := registry.List(context.Background(), "default")
	if err != nil || len(regs) != 0 {
		t.Fatalf("after refused adds the pool has %+v (%v), want nothing", regs, err)
	}
	if r := brrCmd(t, url, "repo", "ls"); r.code != 0 || r.stdout != "" || !strings.Contains(r.stderr, "pool default has no repos (add one with: brr repo add") {
		t.Fatalf("repo ls of no repos: %v", r)
	}
}

func TestSpecError(t *testing.T) {
	for _, tt := range []struct{ key, in, want string }{
		{"repo x", "repo x.key_file: must be an absolute path, got \"key_file\"", "add: repo x: --key-file: must be an absolute path, got \"key_file\""},
		{"repo x", "repo x: set access_key_env and secret_key_env together", "add: repo x: set --access-key-env and --secret-key-env together"},
		{"repo x", "repo x.profile: names a section of credentials_file; set credentials_file too", "add: repo x: --profile: names a section of --credentials-file; set --credentials-file too"},
		{"repo x", `repo x.url: "s3://h/b?key_file=1": no query`, `add: repo x: URL: "s3://h/b?key_file=1": no query`},
		{"repo key_file", `repo key_file: "a\"key_file" then key_file`, `add: repo key_file: "a\"key_file" then --key-file`},
	} {
		if got := specError("add", tt.key, errors.New(tt.in)).Error(); got != tt.want {
			t.Errorf("specError(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRepoLs(t *testing.T) {
	t.Parallel()
	url, js, registry := repoServer(t)
	for _, args := range [][]string{
		{"repo", "add", "local", "file:///srv/brr", "--key-file", "/etc/brr/local.key"},
		{"repo", "add", "offsite", "s3://s3.example.com/bkt", "--password-env", "BRR_OFFSITE_PASSWORD", "--append-only", "--limit-upload", "512"},
		{"replicate", "policy", "set", "local", "--to", "offsite"},
	} {
		if r := brrCmd(t, url, args...); r.code != 0 {
			t.Fatalf("brr %s: %v", strings.Join(args, " "), r)
		}
	}
	// A worker opens local and fills in its id, as a worker's claim does.
	const id = "9bc834ecd0e0245cb46a3c39d11e8b47"
	refused, err := registry.Claim(context.Background(), []string{"default"}, brr.RepoRegistration{Repo: "local", ID: id,
		Location: "file:///srv/brr", Worker: "w1", Host: "host-w1", Time: time.Now(), Spec: &brr.RepoSpec{URL: "file:///srv/brr", KeyFile: "/etc/brr/local.key"}})
	if err != nil || refused != nil {
		t.Fatalf("claim local: %v, %+v", err, refused)
	}
	const why = "repo offsite is in the pool's registry but this worker cannot open it: BRR_OFFSITE_PASSWORD is not set"
	now := time.Now().UTC()
	repoBeat(t, js, "w1", []string{"default"}, now, []string{"local", "offsite"})
	repoBeat(t, js, "w2", []string{"default"}, now, []string{"local"},
		brr.RefusedRepo{Repo: "offsite", Reason: brr.RefusedUnavailable, Pool: "default", Location: "s3://s3.example.com/bkt", Message: why})
	repoBeat(t, js, "w3", []string{"edge"}, now, []string{"local", "offsite"})                // another pool's
	repoBeat(t, js, "w4", []string{"default"}, now.Add(-10*time.Second), []string{"offsite"}) // missing

	r := brrCmd(t, url, "repo", "ls")
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if r.code != 0 || len(lines) != 3 {
		t.Fatalf("repo ls: %v", r)
	}
	if got := strings.Fields(lines[0]); !slices.Equal(got, []string{"NAME", "URL", "ID", "OPTIONS", "REPLICATE", "TO", "SERVED", "BY"}) {
		t.Errorf("repo ls header = %q", lines[0])
	}
	if got, want := strings.Fields(lines[1]), []string{"local", "file:///srv/brr", id[:12], "-", "offsite", "w1,w2"}; !slices.Equal(got, want) {
		t.Errorf("repo ls row of local = %q, want %q", got, want)
	}
	if got, want := strings.Fields(lines[2]), []string{"offsite", "s3://s3.example.com/bkt", "not", "opened", "yet", "append-only,limit-upload=512KiB/s", "-", "w1"}; !slices.Equal(got, want) {
		t.Errorf("repo ls row of offsite = %q, want %q", got, want)
	}
	if want := "worker w2 does not serve offsite: " + why + "\n"; r.stderr != want {
		t.Errorf("repo ls stderr = %q, want %q", r.stderr, want)
	}

	r = brrCmd(t, url, "repo", "--json")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("repo --json: %v", r)
	}
	var infos []brr.RepoInfo
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var info brr.RepoInfo
		if err := json.Unmarshal([]byte(line), &info); err != nil {
			t.Fatalf("repo --json line %q: %v", line, err)
		}
		infos = append(infos, info)
	}
	if len(infos) != 2 || infos[0].Name != "local" || infos[0].ID != id || !slices.Equal(infos[0].ReplicateTo, []string{"offsite"}) ||
		!slices.Equal(infos[0].ServedBy, []string{"w1", "w2"}) || infos[0].RefusedBy != nil {
		t.Fatalf("repo --json: %+v", infos)
	}
	if off := infos[1]; off.Name != "offsite" || off.ID != "" || off.Spec == nil || !off.Spec.AppendOnly || off.Spec.PasswordEnv != "BRR_OFFSITE_PASSWORD" ||
		!slices.Equal(off.ServedBy, []string{"w1"}) || off.RefusedBy["w2"] != why || len(off.RefusedBy) != 1 {
		t.Fatalf("repo --json of offsite: %+v", off)
	}

	if r := brrCmd(t, url, "repo", "ls", "--pool", "edge"); r.code != 0 || !strings.Contains(r.stderr, "pool edge has no repos (add one with: brr repo add NAME URL --password-env VAR --pool edge)") {
		t.Fatalf("repo ls --pool edge: %v", r)
	}
}

func TestRepoRm(t *testing.T) {
	t.Parallel()
	url, _, registry := repoServer(t)
	for _, args := range [][]string{
		{"repo", "add", "local", "file:///srv/brr", "--key-file", "/etc/brr/local.key"},
		{"repo", "add", "offsite", "s3://s3.example.com/bkt", "--password-env", "P"},
		{"repo", "add", "archive", "nats://archive", "--password-env", "P"},
		{"replicate", "policy", "set", "local", "--to", "offsite,archive"},
		{"replicate", "policy", "set", "archive", "--to", "offsite"},
	} {
		if r := brrCmd(t, url, args...); r.code != 0 {
			t.Fatalf("brr %s: %v", strings.Join(args, " "), r)
		}
	}

	r := brrCmd(t, url, "repo", "rm", "offsite")
	if r.code != 0 {
		t.Fatalf("repo rm: %v", r)
	}
	for _, want := range []string{
		"repo offsite removed from pool default\n",
		"stop serving it within seconds. Its data stays where it is (s3://s3.example.com/bkt).",
		"Snapshots of archive, local are no longer replicated to it.",
		"A worker whose config lists repos.offsite registers it again at its next start: remove it from those configs too.",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("repo rm: stdout lacks %q:\n%v", want, r)
		}
	}
	if reg := lookup(t, registry, "default", "offsite"); reg != nil {
		t.Fatalf("after repo rm, offsite is still registered: %+v", reg)
	}
	if got := policy(t, registry, "default", "local"); !slices.Equal(got, []string{"archive"}) {
		t.Errorf("local's policy after repo rm offsite = %q, want [archive]", got)
	}
	if got := policy(t, registry, "default", "archive"); got == nil || len(got) != 0 {
		t.Errorf("archive's policy after repo rm offsite = %#v, want empty", got)
	}

	r = brrCmd(t, url, "repo", "rm", "offsite")
	if r.code != 1 || !strings.Contains(r.stderr, "pool default has no repo offsite; list the pool's repos with: brr repo ls") {
		t.Fatalf("repo rm twice: %v", r)
	}
	r = brrCmd(t, url, "repo", "rm", "archive", "--json")
	if objs := jsonLines(t, "repo rm --json", r.stdout); r.code != 0 || len(objs) != 1 || objs[0]["repo"] != "archive" || objs[0]["removed"] != true {
		t.Fatalf("repo rm --json: %v", r)
	}
	for _, args := range [][]string{{"repo", "rm"}, {"repo", "rm", "a", "b"}, {"repo", "rm", "a/b"}} {
		if r := brrCmd(t, url, args...); r.code != 2 {
			t.Errorf("brr %s: %v\nwant exit 2", strings.Join(args, " "), r)
		}
	}
	if reg := lookup(t, registry, "default", "local"); reg == nil {
		t.Fatal("local was removed too")
	}
}

func TestRepoNeedsTheBucket(t *testing.T) {
	t.Parallel()
	srv := natstest.StartListening(t)
	startWorker(t, srv) // streams, but not the registry bucket
	for _, args := range [][]string{
		{"repo", "ls"},
		{"repo", "add", "x", "file:///srv/x", "--password-env", "P"},
		{"replicate", "policy", "set", "local", "--to", "offsite"},
	} {
		r := brrCmd(t, srv.ClientURL(), args...)
		if r.code != 3 || !strings.Contains(r.stderr, "bucket BRR_REPOS not found: is a brr-worker running") {
			t.Errorf("brr %s with no registry: %v\nwant exit 3", strings.Join(args, " "), r)
		}
	}
}

func TestRepoHelpSaysAdmin(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"repo", "add", "--help"}, {"repo", "rm", "--help"}, {"repo", "ls", "--help"},
		{"replicate", "policy", "--help"}, {"replicate", "policy", "set", "--help"}, {"replicate", "policy", "rm", "--help"},
	} {
		r := brrCmd(t, "nats://127.0.0.1:1", args...)
		if r.code != 0 || !strings.Contains(r.stdout, "admin role") || !strings.Contains(r.stdout, "Examples:") {
			t.Errorf("brr %s: %v\nwant help that names the admin role, with examples", strings.Join(args, " "), r)
		}
	}
}
