package main

import (
	"math"
	"os"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"testing"
	"time"
)

func writeConfig(t *testing.T, yaml string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "brr.yaml")
	if err := os.WriteFile(p, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func parse(t *testing.T, args []string, vars map[string]string) (*Main, error) {
	t.Helper()
	m := NewMain()
	m.LogOutput = &strings.Builder{}
	if vars == nil {
		vars = map[string]string{}
	}
	if _, ok := vars["HOME"]; !ok {
		vars["HOME"] = "/home/test"
	}
	return m, m.ParseFlags(args, testEnv(vars))
}

func TestParseFlagsPrecedence(t *testing.T) {
	file := writeConfig(t, `
data_dir: /from/file
concurrency: 2
pools: [file-pool]
nats:
  listen: 127.0.0.1:5000
log:
  level: debug
`)
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want func(c Config) (got, want any)
	}{
		{"file", []string{"--config", file}, nil,
			func(c Config) (any, any) { return c.Concurrency, 2 }},
		{"env over file", []string{"--config", file}, map[string]string{"BRR_CONCURRENCY": "3"},
			func(c Config) (any, any) { return c.Concurrency, 3 }},
		{"flag over env", []string{"--config", file, "--concurrency", "5"}, map[string]string{"BRR_CONCURRENCY": "3"},
			func(c Config) (any, any) { return c.Concurrency, 5 }},
		{"file data dir", []string{"--config", file}, nil,
			func(c Config) (any, any) { return c.DataDir, "/from/file" }},
		{"env data dir", []string{"--config", file}, map[string]string{"BRR_DATA_DIR": "/from/env"},
			func(c Config) (any, any) { return c.DataDir, "/from/env" }},
		{"flag data dir", []string{"--config", file, "--data-dir", "/from/flag"}, map[string]string{"BRR_DATA_DIR": "/from/env"},
			func(c Config) (any, any) { return c.DataDir, "/from/flag" }},
		{"config from env", nil, map[string]string{"BRR_CONFIG": file},
			func(c Config) (any, any) { return c.NATS.Listen, "127.0.0.1:5000" }},
		{"listen flag", []string{"--config", file, "--listen", "127.0.0.1:4300"}, map[string]string{"BRR_NATS_LISTEN": "127.0.0.1:4200"},
			func(c Config) (any, any) { return c.NATS.Listen, "127.0.0.1:4300" }},
		{"pools from file", []string{"--config", file}, nil,
			func(c Config) (any, any) { return c.Pools, []string{"file-pool"} }},
		{"pools from env", []string{"--config", file}, map[string]string{"BRR_POOLS": "a, b,,c"},
			func(c Config) (any, any) { return c.Pools, []string{"a", "b", "c"} }},
		{"pools from repeated flag", []string{"--config", file, "--pool", "x", "--pool", "y,z"}, map[string]string{"BRR_POOLS": "a"},
			func(c Config) (any, any) { return c.Pools, []string{"x", "y", "z"} }},
		{"allowed roots env", nil, map[string]string{"BRR_ALLOWED_ROOTS": "/srv,/home"},
			func(c Config) (any, any) { return c.AllowedRoots, []string{"/srv", "/home"} }},
		{"allowed roots flag", []string{"--allowed-root", "/data"}, map[string]string{"BRR_ALLOWED_ROOTS": "/srv"},
			func(c Config) (any, any) { return c.AllowedRoots, []string{"/data"} }},
		{"log level file", []string{"--config", file}, nil,
			func(c Config) (any, any) { return c.Log.Level, "debug" }},
		{"log level flag", []string{"--config", file, "--log-level", "warn"}, map[string]string{"BRR_LOG_LEVEL": "error"},
			func(c Config) (any, any) { return c.Log.Level, "warn" }},
		{"http default", nil, nil,
			func(c Config) (any, any) { return c.HTTP.Listen, "127.0.0.1:8080" }},
		{"http flag", []string{"--http", "127.0.0.1:9000"}, map[string]string{"BRR_HTTP_LISTEN": "127.0.0.1:9001"},
			func(c Config) (any, any) { return c.HTTP.Listen, "127.0.0.1:9000" }},
		{"nats url env", nil, map[string]string{"BRR_NATS_URL": "nats://10.0.0.1:4222"},
			func(c Config) (any, any) { return c.NATS.URL, "nats://10.0.0.1:4222" }},
		{"nats url flag", []string{"--nats", "nats://10.0.0.2:4222"}, map[string]string{"BRR_NATS_URL": "nats://10.0.0.1:4222"},
			func(c Config) (any, any) { return c.NATS.URL, "nats://10.0.0.2:4222" }},
		{"health interval env", nil, map[string]string{"BRR_HEALTH_INTERVAL": "1m"},
			func(c Config) (any, any) { return c.Health.Interval, time.Minute }},
		{"prefix env", nil, map[string]string{"BRR_PREFIX": "acme.brr"},
			func(c Config) (any, any) { return c.Prefix, "acme.brr" }},
		{"defaults", nil, nil,
			func(c Config) (any, any) {
				return []any{c.Concurrency, c.Pools, c.Jobs.AckWait, c.Jobs.MaxDeliver, c.Jobs.DrainTimeout, c.Streams.Replicas, c.Streams.EventsMaxAge, c.Health.Interval, c.Prefix, c.Log.Format},
					[]any{4, []string{"default"}, 5 * time.Second, 10, 30 * time.Second, 1, 168 * time.Hour, 15 * time.Second, "brr", "auto"}
			}},
		{"config command", []string{"config"}, nil,
			func(c Config) (any, any) { return c.DataDir, "/home/test/.local/share/brr" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parse(t, tt.args, tt.env)
			if err != nil {
				t.Fatalf("ParseFlags: %v", err)
			}
			if got, want := tt.want(m.Config); !reflect.DeepEqual(got, want) {
				t.Fatalf("got %v, want %v", got, want)
			}
		})
	}
}

func TestParseFlagsCommand(t *testing.T) {
	m, err := parse(t, []string{"config", "--data-dir", "/d"}, nil)
	if err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	if got, want := m.Command, "config"; got != want {
		t.Fatalf("Command = %q, want %q", got, want)
	}
	if got, want := m.Config.DataDir, "/d"; got != want {
		t.Fatalf("DataDir = %q, want %q (flags after the command count)", got, want)
	}
	if _, err := parse(t, []string{"serve"}, nil); err == nil || !strings.Contains(err.Error(), `unknown command "serve"`) {
		t.Fatalf("ParseFlags(serve) = %v, want unknown command", err)
	}
	if _, err := parse(t, []string{"--no-such-flag"}, nil); err == nil || !strings.Contains(err.Error(), "no-such-flag") {
		t.Fatalf("ParseFlags(--no-such-flag) = %v, want an error naming the flag", err)
	}
}

func TestParseFlagsVersion(t *testing.T) {
	m, err := parse(t, []string{"--version", "--concurrency", "0"}, map[string]string{"BRR_CONFIG": "/no/such/brr.yaml"})
	if err != nil {
		t.Fatalf("ParseFlags(--version) = %v, want nil: the config is not read", err)
	}
	if got, want := m.Command, "version"; got != want {
		t.Fatalf("Command = %q, want %q", got, want)
	}
	if got, want := m.Version, "dev"; got != want {
		t.Fatalf("Version = %q, want %q (the default without -ldflags)", got, want)
	}
}

func TestConfigFileErrors(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown top-level key", "concurency: 4\n", `line 1: unknown key "concurency"`},
		{"unknown nested key", "nats:\n  url: \"\"\n  tlss: {}\n", `line 3: unknown key "nats.tlss"`},
		{"unknown key in a repo", "repos:\n  local: {url: \"file:///r\", keyfile: /k}\n", `unknown key "repos.local.keyfile"`},
		{"wrong type int", "concurrency: many\n", `concurrency (line 1): want a whole number, got "many"`},
		{"wrong type duration", "jobs:\n  ack_wait: soon\n", `jobs.ack_wait (line 2): want a duration`},
		{"rpo duration", "health:\n  rpo: {/srv: 3days}\n", `health.rpo./srv (line 2): want a duration`},
		{"list expected", "pools: default\n", `pools (line 1): want a list`},
		{"mapping expected", "nats: nats://x\n", `nats (line 1): want a mapping`},
		{"bad yaml", "nats: [\n", "config file"},
		{"wrong type size", "memory_limit: lots\n", `memory_limit (line 1): want a size such as 192MiB or 1GiB, or off, got "lots"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, []string{"--config", writeConfig(t, tt.yaml)}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("ParseFlags = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	if _, err := parse(t, []string{"--config", filepath.Join(t.TempDir(), "missing.yaml")}, nil); err == nil || !strings.Contains(err.Error(), "read config file") {
		t.Fatalf("missing file: %v, want read config file error", err)
	}
	if _, err := parse(t, nil, map[string]string{"BRR_CONCURRENCY": "lots"}); err == nil || !strings.Contains(err.Error(), `BRR_CONCURRENCY: want a whole number, got "lots"`) {
		t.Fatalf("bad BRR_CONCURRENCY: %v", err)
	}
	if _, err := parse(t, nil, map[string]string{"BRR_HEALTH_INTERVAL": "often"}); err == nil || !strings.Contains(err.Error(), "BRR_HEALTH_INTERVAL") {
		t.Fatalf("bad BRR_HEALTH_INTERVAL: %v", err)
	}
}

func TestConfigFileFull(t *testing.T) {
	file := writeConfig(t, `
data_dir: /var/lib/brr
nats:
  url: nats://10.0.0.1:4222,nats://10.0.0.2:4222
  creds: /etc/brr/worker.creds
  tls: {ca: /etc/brr/ca.pem}
http:
  listen: 0.0.0.0:8080
  api_key_file: /etc/brr/api.key
pools: [default, host-a]
concurrency: 8
allowed_roots: [/srv, /home]
repos:
  local:   {url: "file:///var/lib/brr/repo", key_file: /var/lib/brr/local.key}
  offsite: {url: "nats://brr-offsite", password_env: BRR_OFFSITE_PASSWORD}
default_repo: local
replicate:
  local: [offsite]
health:
  interval: 30s
  rpo: {"/srv/app": 26h}
prefix: brr
log: {level: warn, format: json}
jobs: {ack_wait: 10s, max_deliver: 5, drain_timeout: 1m, lease_ttl: 45s}
streams: {replicas: 3, events_max_age: 72h}
memory_limit: 512MiB
gc_percent: 40
`)
	m, err := parse(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	c := m.Config
	health := defaultHealthConfig()
	health.Interval, health.RPO = 30*time.Second, map[string]time.Duration{"/srv/app": 26 * time.Hour}
	want := Config{
		DataDir: "/var/lib/brr",
		NATS: NATSConfig{
			URL:   "nats://10.0.0.1:4222,nats://10.0.0.2:4222",
			Creds: "/etc/brr/worker.creds", TLS: TLSConfig{CA: "/etc/brr/ca.pem"},
			Listen: "127.0.0.1:4222",
		},
		HTTP:         HTTPConfig{Listen: "0.0.0.0:8080", APIKeyFile: "/etc/brr/api.key"},
		Pools:        []string{"default", "host-a"},
		Concurrency:  8,
		AllowedRoots: []string{"/srv", "/home"},
		Repos: map[string]RepoConfig{
			"local":   {URL: "file:///var/lib/brr/repo", KeyFile: "/var/lib/brr/local.key"},
			"offsite": {URL: "nats://brr-offsite", PasswordEnv: "BRR_OFFSITE_PASSWORD"},
		},
		DefaultRepo: "local",
		Replicate:   map[string][]string{"local": {"offsite"}},
		Health:      health,
		Prefix:      "brr",
		Log:         LogConfig{Level: "warn", Format: "json"},
		Jobs:        JobsConfig{AckWait: 10 * time.Second, MaxDeliver: 5, DrainTimeout: time.Minute, LeaseTTL: 45 * time.Second},
		Streams:     StreamsConfig{Replicas: 3, EventsMaxAge: 72 * time.Hour},
		MemoryLimit: 512 << 20,
		GCPercent:   40,
		Prune:       PruneConfig{Grace: time.Hour},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("config =\n%+v\nwant\n%+v", c, want)
	}
}

func TestValidate(t *testing.T) {
	valid := func() Config {
		c := DefaultConfig()
		c.DataDir = "/var/lib/brr"
		c.Repos = map[string]RepoConfig{"local": c.localRepo()}
		return c
	}
	if err := func() error { c := valid(); return c.Validate() }(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"concurrency zero", func(c *Config) { c.Concurrency = 0 }, "concurrency: must be 1-256, got 0"},
		{"concurrency high", func(c *Config) { c.Concurrency = 257 }, "concurrency: must be 1-256, got 257"},
		{"repo s3 no bucket", func(c *Config) { c.Repos["offsite"] = RepoConfig{URL: "s3://host", PasswordEnv: "X"} },
			`repos.offsite.url: "s3://host": no bucket; want s3://HOST[:PORT]/BUCKET[/PREFIX]`},
		{"repo typo scheme", func(c *Config) { c.Repos["offsite"] = RepoConfig{URL: "s4://host/b-1", PasswordEnv: "X"} },
			`repos.offsite.url: unknown scheme "s4" (supported: file://, nats://, s3://, sftp://); did you mean s3://?`},
		{"repo s3 key on file", func(c *Config) {
			c.Repos["x"] = RepoConfig{URL: "file:///srv/repo", KeyFile: "/k", Region: "eu-west-1"}
		},
			"repos.x.region: only an s3:// repo takes it; this repo's url is file://…"},
		{"repo sftp key on s3", func(c *Config) { c.Repos["x"] = RepoConfig{URL: "s3://h/b-1", KeyFile: "/k", KnownHosts: "/kh"} },
			"repos.x.known_hosts: only an sftp:// repo takes it; this repo's url is s3://…"},
		{"repo s3 half keys", func(c *Config) { c.Repos["x"] = RepoConfig{URL: "s3://h/b-1", KeyFile: "/k", AccessKeyEnv: "A"} },
			"repos.x: set access_key_env and secret_key_env together"},
		{"repo s3 path style", func(c *Config) { c.Repos["x"] = RepoConfig{URL: "s3://h/b-1", KeyFile: "/k", PathStyle: "dns"} },
			`repos.x.path_style: "dns" is not auto, path or virtual`},
		{"repo sftp relative key", func(c *Config) {
			c.Repos["x"] = RepoConfig{URL: "sftp://h/srv", KeyFile: "/k", SSHKeyFile: "id_ed25519"}
		},
			`repos.x.ssh_key_file: must be an absolute path`},
		{"repo negative limit", func(c *Config) { c.Repos["x"] = RepoConfig{URL: "nats://x", KeyFile: "/k", LimitUpload: -1} },
			"repos.x: limit_upload and limit_download are KiB/s"},
		{"repo relative file", func(c *Config) { c.Repos["x"] = RepoConfig{URL: "file://repo", KeyFile: "/k"} }, `repos.x.url: "file://repo": want file:///ABSOLUTE/PATH`},
		{"repo no scheme", func(c *Config) { c.Repos["x"] = RepoConfig{URL: "/srv/repo", KeyFile: "/k"} }, `repos.x.url: "/srv/repo": want one of file:///ABSOLUTE/PATH, nats://BUCKET, s3://`},
		{"repo bad bucket", func(c *Config) { c.Repos["x"] = RepoConfig{URL: "nats://a.b", KeyFile: "/k"} }, `repos.x.url: "nats://a.b": want nats://BUCKET`},
		{"repo no url", func(c *Config) { c.Repos["x"] = RepoConfig{KeyFile: "/k"} }, "repos.x.url: no repository URL"},
		{"repo no key", func(c *Config) { c.Repos["x"] = RepoConfig{URL: "nats://x"} }, "repos.x: set key_file"},
		{"repo two keys", func(c *Config) { c.Repos["x"] = RepoConfig{URL: "nats://x", KeyFile: "/k", PasswordEnv: "P"} }, "repos.x: set key_file or password_env, not both"},
		{"repo relative key", func(c *Config) { c.Repos["x"] = RepoConfig{URL: "nats://x", KeyFile: "k"} }, `repos.x.key_file: must be an absolute path, got "k"`},
		{"repo bad env name", func(c *Config) { c.Repos["x"] = RepoConfig{URL: "nats://x", PasswordEnv: "MY-PASS"} }, `repos.x.password_env: "MY-PASS" is not an environment variable name`},
		{"repo bad name", func(c *Config) { c.Repos["a b"] = RepoConfig{URL: "nats://x", KeyFile: "/k"} }, `repos.a b: repo name "a b"`},
		{"repo empty name", func(c *Config) { c.Repos[""] = RepoConfig{URL: "nats://x", KeyFile: "/k"} }, `repos.: repo name ""`},
		{"default repo", func(c *Config) { c.DefaultRepo = "x" }, `default_repo: "x" is not configured (configured: local)`},
		{"replicate from", func(c *Config) { c.Replicate = map[string][]string{"nope": {"local"}} }, `replicate: "nope" is not configured (configured: local)`},
		{"replicate to", func(c *Config) { c.Replicate = map[string][]string{"local": {"offsite"}} }, `replicate.local: "offsite" is not configured (configured: local)`},
		{"replicate self", func(c *Config) { c.Replicate = map[string][]string{"local": {"local"}} }, "replicate.local: a repo cannot replicate to itself"},
		{"no pools", func(c *Config) { c.Pools = nil }, "pools: name at least one pool"},
		{"bad pool", func(c *Config) { c.Pools = []string{"a.b"} }, `pools: "a.b"`},
		{"dup pool", func(c *Config) { c.Pools = []string{"a", "a"} }, `pools: "a" is listed twice`},
		{"relative data dir", func(c *Config) { c.DataDir = "brr" }, `data_dir: must be an absolute path, got "brr"`},
		{"listen", func(c *Config) { c.NATS.Listen = "4222" }, `nats.listen: "4222": want HOST:PORT`},
		{"http listen", func(c *Config) { c.HTTP.Listen = "localhost" }, `http.listen: "localhost": want HOST:PORT`},
		{"http port", func(c *Config) { c.HTTP.Listen = "127.0.0.1:99999" }, `http.listen: "127.0.0.1:99999": port must be 0-65535`},
		{"nats url scheme", func(c *Config) { c.NATS.URL = "http://x:4222" }, `nats.url: "http://x:4222": unknown scheme "http"`},
		{"nats two auths", func(c *Config) { c.NATS.URL = "nats://x:4222"; c.NATS.Token = "t"; c.NATS.Creds = "/c" }, "nats: set only one of creds, user/password or token"},
		{"nats user without password", func(c *Config) { c.NATS.URL = "nats://x:4222"; c.NATS.User = "u" }, "nats: user and password go together"},
		{"nats tls cert without key", func(c *Config) { c.NATS.URL = "nats://x:4222"; c.NATS.TLS.Cert = "/c" }, "nats.tls: cert and key go together"},
		{"embedded with auth", func(c *Config) { c.NATS.Token = "t" }, "the embedded server (no nats.url) takes none"},
		{"inbox prefix", func(c *Config) { c.NATS.InboxPrefix = "_INBOX.>" }, `nats.inbox_prefix: inbox prefix "_INBOX.>": use dot-separated tokens`},
		{"inbox prefix of the user", func(c *Config) { c.NATS.URL = "nats://x:4222"; c.NATS.User = "my worker"; c.NATS.Password = "p" }, `nats.inbox_prefix: inbox prefix "_INBOX_my worker"`},
		{"allowed root relative", func(c *Config) { c.AllowedRoots = []string{"srv"} }, `allowed_roots: "srv": must be an absolute, clean path`},
		{"allowed root unclean", func(c *Config) { c.AllowedRoots = []string{"/srv/../etc"} }, `allowed_roots: "/srv/../etc"`},
		{"health interval", func(c *Config) { c.Health.Interval = 0 }, "health.interval: must be a positive duration"},
		{"rpo path", func(c *Config) { c.Health.RPO = map[string]time.Duration{"srv": time.Hour} }, `health.rpo: "srv": must be an absolute`},
		{"rpo duration", func(c *Config) { c.Health.RPO = map[string]time.Duration{"/srv": 0} }, "health.rpo./srv: must be a positive duration"},
		{"prefix", func(c *Config) { c.Prefix = "brr.>" }, `prefix: "brr.>"`},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, `log.level: "loud": must be one of trace, debug, info, warn, error`},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, `log.format: "xml": must be one of auto, json, console`},
		{"ack wait", func(c *Config) { c.Jobs.AckWait = 10 * time.Millisecond }, "jobs.ack_wait: must be at least 1s, got 10ms"},
		{"max deliver", func(c *Config) { c.Jobs.MaxDeliver = 0 }, "jobs.max_deliver: must be 1-1000, got 0"},
		{"drain timeout", func(c *Config) { c.Jobs.DrainTimeout = -time.Second }, "jobs.drain_timeout: must be a positive duration"},
		{"lease ttl", func(c *Config) { c.Jobs.LeaseTTL = 0 }, "jobs.lease_ttl: must be at least 1s"},
		{"replicas", func(c *Config) { c.Streams.Replicas = 7 }, "streams.replicas: must be 1-5"},
		{"events max age", func(c *Config) { c.Streams.EventsMaxAge = 0 }, "streams.events_max_age: must be a positive duration"},
		{"memory limit", func(c *Config) { c.MemoryLimit = 16 << 20 }, "memory_limit: must be off or at least 64MiB, got 16MiB"},
		{"gc percent", func(c *Config) { c.GCPercent = 5 }, "gc_percent: must be 10-1000, or 0 for the Go runtime's (GOGC), got 5"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := valid()
			tt.change(&c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want an error containing %q", err, tt.want)
			}
		})
	}

	c := valid()
	c.Concurrency = 0
	c.Log.Level = "loud"
	err := c.Validate()
	if err == nil || !strings.Contains(err.Error(), "concurrency:") || !strings.Contains(err.Error(), "log.level:") {
		t.Fatalf("Validate with two problems = %v, want both reported", err)
	}
}

func TestLocalRepoWhenNoneConfigured(t *testing.T) {
	m, err := parse(t, []string{"--data-dir", "/d"}, nil)
	if err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	want := map[string]RepoConfig{"local": {URL: "file:///d/repo", KeyFile: "/d/local.key"}}
	if !reflect.DeepEqual(m.Config.Repos, want) {
		t.Fatalf("Repos = %v, want %v", m.Config.Repos, want)
	}

	file := writeConfig(t, "repos:\n  offsite: {url: \"nats://off\", password_env: OFF}\n")
	m, err = parse(t, []string{"--config", file, "--data-dir", "/d"}, nil)
	if err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	if _, ok := m.Config.Repos["local"]; ok || len(m.Config.Repos) != 1 {
		t.Fatalf("Repos = %v, want only offsite: local is added only when no repo is configured", m.Config.Repos)
	}

	// Naming local after adding repos: is refused with exactly what to add.
	file = writeConfig(t, "repos:\n  offsite: {url: \"nats://off\", password_env: OFF}\nreplicate:\n  local: [offsite]\ndefault_repo: local\n")
	_, err = parse(t, []string{"--config", file, "--data-dir", "/d"}, nil)
	const add = `add under repos:  local: {url: "file:///d/repo", key_file: "/d/local.key"}`
	if err == nil || !strings.Contains(err.Error(), `replicate: "local" is not configured (configured: offsite); the repo local exists by itself only while repos: is empty`) ||
		strings.Count(err.Error(), add) != 2 {
		t.Fatalf("replicate from local without it: %v, want both problems saying %q", err, add)
	}
}

func TestRedactedYAML(t *testing.T) {
	m, err := parse(t, []string{"--data-dir", "/d"}, map[string]string{
		"BRR_NATS_URL":      "nats://alice:hunter2@10.0.0.1:4222",
		"BRR_NATS_USER":     "alice",
		"BRR_NATS_PASSWORD": "s3cret-pass",
	})
	if err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	out, err := m.Config.YAML()
	if err != nil {
		t.Fatalf("YAML: %v", err)
	}
	s := string(out)
	for _, secret := range []string{"s3cret-pass", "hunter2"} {
		if strings.Contains(s, secret) {
			t.Fatalf("YAML shows secret %q:\n%s", secret, s)
		}
	}
	for _, want := range []string{"password: <redacted>", "url: nats://alice:<redacted>@10.0.0.1:4222", "user: alice", "data_dir: /d"} {
		if !strings.Contains(s, want) {
			t.Fatalf("YAML lacks %q:\n%s", want, s)
		}
	}
	if got := m.Config.NATS.Password; got != "s3cret-pass" {
		t.Fatalf("Redacted changed the config itself: password = %q", got)
	}

	// The printed config reads back as the same configuration.
	var back Config = DefaultConfig()
	if err := parseConfigYAML("printed", out, &back); err != nil {
		t.Fatalf("read printed config back: %v", err)
	}
	if back.Concurrency != m.Config.Concurrency || back.DataDir != m.Config.DataDir || !reflect.DeepEqual(back.Repos, m.Config.Repos) {
		t.Fatalf("printed config reads back as %+v, want %+v", back, m.Config)
	}

	tok := Config{NATS: NATSConfig{Token: "tok-123", URL: "nats://tok-456@h:4222"}}.Redacted()
	if tok.NATS.Token != redacted || strings.Contains(tok.NATS.URL, "tok-456") {
		t.Fatalf("Redacted token = %q, url = %q", tok.NATS.Token, tok.NATS.URL)
	}
}

func TestMemorySettings(t *testing.T) {
	file := writeConfig(t, "memory_limit: 1GiB\ngc_percent: 50\n")
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		percent int
		limit   ByteSize
	}{
		{"default", nil, nil, DefaultGCPercent, 0},
		{"file", []string{"--config", file}, nil, 50, 1 << 30},
		{"env over file", []string{"--config", file}, map[string]string{"BRR_MEMORY_LIMIT": "256MiB", "BRR_GC_PERCENT": "75"}, 75, 256 << 20},
		{"flag over env", []string{"--memory-limit", "off", "--gc-percent", "100"}, map[string]string{"BRR_MEMORY_LIMIT": "256MiB", "BRR_GC_PERCENT": "75"}, 100, 0},
		{"GOGC replaces the default", nil, map[string]string{"GOGC": "200"}, 0, 0},
		{"GOGC does not replace the file's", []string{"--config", file}, map[string]string{"GOGC": "200"}, 50, 1 << 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := parse(t, tt.args, tt.env)
			if err != nil {
				t.Fatalf("ParseFlags: %v", err)
			}
			if got := m.Config.GCPercent; got != tt.percent {
				t.Errorf("GCPercent = %d, want %d", got, tt.percent)
			}
			if got := m.Config.MemoryLimit; got != tt.limit {
				t.Errorf("MemoryLimit = %s, want %s", got, tt.limit)
			}
		})
	}
	if _, err := parse(t, []string{"--memory-limit", "a lot"}, nil); err == nil || !strings.Contains(err.Error(), "--memory-limit: want a size") {
		t.Fatalf("bad --memory-limit: %v", err)
	}
	if _, err := parse(t, nil, map[string]string{"BRR_MEMORY_LIMIT": "12XB"}); err == nil || !strings.Contains(err.Error(), "BRR_MEMORY_LIMIT: want a size") {
		t.Fatalf("bad BRR_MEMORY_LIMIT: %v", err)
	}
	if _, err := parse(t, nil, map[string]string{"BRR_GC_PERCENT": "low"}); err == nil || !strings.Contains(err.Error(), `BRR_GC_PERCENT: want a whole number, got "low"`) {
		t.Fatalf("bad BRR_GC_PERCENT: %v", err)
	}
}

func TestApplyMemorySettings(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(math.MaxInt64))
	defer startHeapFloor(-1, 0) // the heap floor stops raising GOGC (memory_test.go)
	percent, limit := applyMemorySettings(30, 300<<20)
	if percent != 30 || limit != 300<<20 {
		t.Fatalf("applyMemorySettings(30, 300MiB) = %d, %d; want 30, %d", percent, limit, 300<<20)
	}
	percent, limit = applyMemorySettings(0, 0)
	if percent != 30 || limit != 300<<20 {
		t.Fatalf("applyMemorySettings(0, 0) = %d, %d; want the settings left as they were", percent, limit)
	}
}

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want ByteSize
		str  string
	}{
		{"0", 0, "off"},
		{"off", 0, "off"},
		{"4096", 4 << 10, "4KiB"},
		{"100B", 100, "100B"},
		{"192MiB", 192 << 20, "192MiB"},
		{" 2GiB ", 2 << 30, "2GiB"},
		{"1TiB", 1 << 40, "1TiB"},
		{"1536MiB", 1536 << 20, "1536MiB"},
	}
	for _, tt := range tests {
		got, err := ParseByteSize(tt.in)
		if err != nil || got != tt.want {
			t.Errorf("ParseByteSize(%q) = %d, %v; want %d", tt.in, got, err, tt.want)
		}
		if s := got.String(); s != tt.str {
			t.Errorf("ByteSize(%d).String() = %q, want %q", got, s, tt.str)
		}
	}
	for _, in := range []string{"", "MiB", "-1MiB", "1.5GiB", "12MB", "9999999999TiB"} {
		if _, err := ParseByteSize(in); err == nil {
			t.Errorf("ParseByteSize(%q) = nil error, want one", in)
		}
	}
}
