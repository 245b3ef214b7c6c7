package main

import (
	"bytes"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"go.yaml.in/yaml/v3"
)

// Config is the worker's configuration. Its YAML keys are the contract documented in
// ARCHITECTURE.md; every field is read from the file, then BRR_* environment variables,
// then flags, in that order of precedence.
type Config struct {
	DataDir      string                `yaml:"data_dir"`
	NATS         NATSConfig            `yaml:"nats"`
	HTTP         HTTPConfig            `yaml:"http"`
	Pools        []string              `yaml:"pools"`
	Concurrency  int                   `yaml:"concurrency"`
	AllowedRoots []string              `yaml:"allowed_roots"`
	Repos        map[string]RepoConfig `yaml:"repos"`
	DefaultRepo  string                `yaml:"default_repo"`
	// Replicate maps a repo to the repos each of its new snapshots is replicated to.
	Replicate map[string][]string `yaml:"replicate"`
	Health    HealthConfig        `yaml:"health"`
	Prefix    string              `yaml:"prefix"`
	Log       LogConfig           `yaml:"log"`
	Jobs      JobsConfig          `yaml:"jobs"`
	Streams   StreamsConfig       `yaml:"streams"`
	// GCPercent is the Go runtime's GOGC (see applyMemorySettings); 0 leaves the
	// runtime's own, GOGC when that is set.
	GCPercent int `yaml:"gc_percent"`
	// MemoryLimit is the Go runtime's soft memory limit (see applyMemorySettings); 0
	// (off) leaves the runtime's own, GOMEMLIMIT when that is set.
	MemoryLimit ByteSize `yaml:"memory_limit"`

	// Sources are the named sources a backup job may name instead of a path
	// (sources.go, docs/sources.md).
	Sources map[string]SourceConfig `yaml:"sources"`

	// Retention is each repo's retention policy, by repo name: what a prune of it
	// keeps. A repo without one keeps every snapshot.
	Retention map[string]brr.RetentionPolicy `yaml:"retention"`
	Prune     PruneConfig                    `yaml:"prune"`

	// Notify are the webhooks that get events (notify.go, docs/operations.md).
	Notify []NotifyConfig `yaml:"notify"`
}

// NATSConfig says which NATS to use: an external one at URL, or (URL empty) an embedded
// server listening on Listen.
type NATSConfig struct {
	URL      string    `yaml:"url"`
	Listen   string    `yaml:"listen"`
	Creds    string    `yaml:"creds"`
	User     string    `yaml:"user"`
	Password string    `yaml:"password"`
	Token    string    `yaml:"token"`
	TLS      TLSConfig `yaml:"tls"`
	// InboxPrefix is where replies to the worker's requests come; empty: "_INBOX_<user>"
	// with a user, nats.go's "_INBOX" otherwise (see inboxPrefix).
	InboxPrefix string `yaml:"inbox_prefix"`
}

// TLSConfig names the PEM files for a TLS connection to NATS.
type TLSConfig struct {
	CA   string `yaml:"ca"`
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
}

// HTTPConfig is the worker's HTTP endpoint.
type HTTPConfig struct {
	Listen string `yaml:"listen"`
	// APIKeyFile holds the key the HTTP API wants as a Bearer token for every mutation;
	// without it the API takes no jobs.
	APIKeyFile string `yaml:"api_key_file"`
	// ProtectReads makes the API want the key for reads too (the dashboard then asks for it).
	ProtectReads bool `yaml:"protect_reads"`
}

// RepoConfig locates one repository and its key; the key itself is never in the config.
type RepoConfig brr.RepoSpec

// HealthConfig sets how often health is checked, the recovery point objective of
// sources and the thresholds of the pool's health checks (docs/health.md).
type HealthConfig struct {
	Interval time.Duration            `yaml:"interval"`
	RPO      map[string]time.Duration `yaml:"rpo"`
	// SummaryEvery makes every SummaryEvery-th turn of a check publish all its results,
	// not only those whose status changed.
	SummaryEvery int `yaml:"summary_every"`
	// Canary sends a ping job through each pool every interval; CanaryWarn is the
	// latency above which it warns.
	Canary     bool          `yaml:"canary"`
	CanaryWarn time.Duration `yaml:"canary_warn"`
	// LagWarn and LagCritical bound the age of the oldest snapshot a replication target
	// lacks.
	LagWarn     time.Duration `yaml:"lag_warn"`
	LagCritical time.Duration `yaml:"lag_critical"`
	// VerifyMaxAge is how old a repo's last verify may be before its check warns.
	VerifyMaxAge time.Duration `yaml:"verify_max_age"`
	// DiskWarn and DiskCritical are the percentages of free space of a worker's data
	// dir below which the disk check warns and turns critical.
	DiskWarn     int `yaml:"disk_warn"`
	DiskCritical int `yaml:"disk_critical"`
}

// PruneConfig tunes prune jobs.
type PruneConfig struct {
	// Grace is how long data a prune found unused is kept before a later prune deletes
	// it, so that a backup running meanwhile, which may come to use it, never loses it.
	Grace time.Duration `yaml:"grace"`
}

// LogConfig sets the log level and format.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// JobsConfig tunes how jobs are consumed.
type JobsConfig struct {
	AckWait      time.Duration `yaml:"ack_wait"`
	MaxDeliver   int           `yaml:"max_deliver"`
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// LeaseTTL is how long a source or repo lease outlives a worker that stopped renewing
	// it; all workers on one NATS share the bucket, so give them the same value.
	LeaseTTL time.Duration `yaml:"lease_ttl"`
}

// StreamsConfig sets how the streams are created.
type StreamsConfig struct {
	Replicas     int           `yaml:"replicas"`
	EventsMaxAge time.Duration `yaml:"events_max_age"`
}

// LocalRepo is the name of the repository a worker creates under its data dir when no
// repository is configured.
const LocalRepo = "local"

// DefaultConfig returns the configuration with every default set except DataDir and
// Repos, which depend on the environment and are filled in by Load.
func DefaultConfig() Config {
	return Config{
		NATS:        NATSConfig{Listen: "127.0.0.1:4222"},
		HTTP:        HTTPConfig{Listen: "127.0.0.1:8080"},
		Pools:       []string{brr.DefaultPool},
		Concurrency: 4,
		Health:      defaultHealthConfig(),
		Prune:       PruneConfig{Grace: time.Hour},
		Prefix:      brr.DefaultPrefix,
		Log:         LogConfig{Level: "info", Format: "auto"},
		Jobs:        JobsConfig{AckWait: events.DefaultAckWait, MaxDeliver: 10, DrainTimeout: 30 * time.Second, LeaseTTL: events.DefaultLeaseTTL},
		Streams:     StreamsConfig{Replicas: 1, EventsMaxAge: 7 * 24 * time.Hour},
		GCPercent:   DefaultGCPercent,
	}
}

// readConfigFile decodes a YAML config file over cfg. Unknown keys and values of the
// wrong type are errors that name the key and its line.
func readConfigFile(path string, cfg *Config) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read config file: %w", err)
	}
	return parseConfigYAML(path, data, cfg)
}

func parseConfigYAML(name string, data []byte, cfg *Config) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", name, err)
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil // empty file: all defaults
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.Tag == "!!null" {
		return nil
	}
	if err := checkNode(root, reflect.TypeOf(Config{}), ""); err != nil {
		return fmt.Errorf("config file %s: %w", name, err)
	}
	if err := root.Decode(cfg); err != nil {
		return fmt.Errorf("config file %s: %w", name, err)
	}
	return nil
}

// checkNode walks a YAML node against the Go type it decodes into and reports the first
// unknown key or ill-typed value by its dotted key path.
func checkNode(n *yaml.Node, t reflect.Type, path string) error {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	at := func() string {
		if path == "" {
			return fmt.Sprintf("line %d", n.Line)
		}
		return fmt.Sprintf("%s (line %d)", path, n.Line)
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: want a mapping of keys, got %s", at(), describeNode(n))
		}
		fields := map[string]reflect.Type{}
		var known []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
			known = append(known, name)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				return fmt.Errorf("line %d: unknown key %q (known keys%s: %s)", k.Line, joinPath(path, k.Value), inPath(path), strings.Join(known, ", "))
			}
			if err := checkNode(v, ft, joinPath(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return fmt.Errorf("%s: want a mapping, got %s", at(), describeNode(n))
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if err := checkNode(v, t.Elem(), joinPath(path, k.Value)); err != nil {
				return err
			}
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return fmt.Errorf("%s: want a list, got %s", at(), describeNode(n))
		}
		for i, v := range n.Content {
			if err := checkNode(v, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	default:
		if n.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: want a single value, got %s", at(), describeNode(n))
		}
		if err := n.Decode(reflect.New(t).Interface()); err != nil {
			want := "a string"
			switch {
			case t == reflect.TypeOf(time.Duration(0)):
				want = "a duration such as 30s, 15m or 26h"
			case t.Kind() == reflect.Int:
				want = "a whole number"
			case t.Kind() == reflect.Bool:
				want = "true or false"
			case t == reflect.TypeOf(ByteSize(0)):
				want = "a size such as 192MiB or 1GiB, or off"
			}
			return fmt.Errorf("%s: want %s, got %q", at(), want, n.Value)
		}
	}
	return nil
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func inPath(path string) string {
	if path == "" {
		return ""
	}
	return " in " + path
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return strconv.Quote(n.Value)
	}
}

// finish fills in what depends on other settings: the data dir, absolute paths and the
// local repository when none is configured.
func (c *Config) finish(env Environment) error {
	if c.DataDir == "" {
		d, err := defaultDataDir(env)
		if err != nil {
			return err
		}
		c.DataDir = d
	}
	abs, err := filepath.Abs(c.DataDir)
	if err != nil {
		return fmt.Errorf("data_dir: %w", err)
	}
	c.DataDir = abs
	if len(c.Repos) == 0 {
		c.Repos = map[string]RepoConfig{LocalRepo: c.localRepo()}
	}
	return nil
}

// ScratchDir is where restore drills restore to: a directory per drill, removed after.
func (c *Config) ScratchDir() string { return filepath.Join(c.DataDir, "scratch") }

// localRepo is the repository created under the data dir when none is configured.
func (c *Config) localRepo() RepoConfig {
	return RepoConfig{
		URL:     "file://" + filepath.Join(c.DataDir, "repo"),
		KeyFile: filepath.Join(c.DataDir, "local.key"),
	}
}

const redacted = "<redacted>"

// Redacted returns a copy of c fit to print: passwords and tokens are replaced.
func (c Config) Redacted() Config {
	out := c
	if out.NATS.Password != "" {
		out.NATS.Password = redacted
	}
	if out.NATS.Token != "" {
		out.NATS.Token = redacted
	}
	if out.NATS.URL != "" {
		var urls []string
		for _, u := range strings.Split(out.NATS.URL, ",") {
			urls = append(urls, redactURL(strings.TrimSpace(u)))
		}
		out.NATS.URL = strings.Join(urls, ",")
	}
	out.Notify = redactNotify(c.Notify)
	return out
}

// redactURL hides the password or token in a URL's user info.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), redacted)
	} else {
		u.User = url.User(redacted)
	}
	return strings.Replace(u.String(), url.QueryEscape(redacted), redacted, 1)
}

// YAML renders the configuration, secrets redacted, as a config file would hold it.
func (c Config) YAML() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c.Redacted()); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}
