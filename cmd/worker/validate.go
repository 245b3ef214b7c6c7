package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/brr-dev/brr"
)

var (
	repoNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)
	bucketPattern   = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	envNamePattern  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	prefixPattern   = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)
)

// Validate reports everything wrong with the configuration, one problem per line; each
// names the key and says what is allowed.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if !filepath.IsAbs(c.DataDir) {
		bad("data_dir: must be an absolute path, got %q", c.DataDir)
	}

	if c.NATS.URL == "" {
		if err := checkHostPort(c.NATS.Listen); err != nil {
			bad("nats.listen: %v", err)
		}
	} else {
		for _, u := range strings.Split(c.NATS.URL, ",") {
			if err := checkNATSURL(strings.TrimSpace(u)); err != nil {
				bad("nats.url: %v", err)
			}
		}
	}
	auth := 0
	for _, set := range []bool{c.NATS.Creds != "", c.NATS.User != "" || c.NATS.Password != "", c.NATS.Token != ""} {
		if set {
			auth++
		}
	}
	if auth > 1 {
		bad("nats: set only one of creds, user/password or token")
	}
	if (c.NATS.User == "") != (c.NATS.Password == "") {
		bad("nats: user and password go together; set both or neither")
	}
	if (c.NATS.TLS.Cert == "") != (c.NATS.TLS.Key == "") {
		bad("nats.tls: cert and key go together; set both or neither")
	}
	if c.NATS.URL == "" && (auth > 0 || c.NATS.TLS != (TLSConfig{})) {
		bad("nats: creds, user, password, token and tls are for connecting to nats.url; the embedded server (no nats.url) takes none")
	}

	if err := checkHostPort(c.HTTP.Listen); err != nil {
		bad("http.listen: %v", err)
	}
	if c.HTTP.APIKeyFile != "" && !filepath.IsAbs(c.HTTP.APIKeyFile) {
		bad("http.api_key_file: must be an absolute path, got %q", c.HTTP.APIKeyFile)
	}
	if c.HTTP.ProtectReads && c.HTTP.APIKeyFile == "" {
		bad("http.protect_reads: reads can only be protected with a key; set http.api_key_file (or BRR_HTTP_API_KEY_FILE) too")
	}

	if len(c.Pools) == 0 {
		bad("pools: name at least one pool (default: [%s])", brr.DefaultPool)
	}
	seenPool := map[string]bool{}
	for _, p := range c.Pools {
		if err := brr.ValidatePool(p); err != nil {
			bad("pools: %q: use 1-64 letters, digits, '-' or '_'", p)
		}
		if seenPool[p] {
			bad("pools: %q is listed twice", p)
		}
		seenPool[p] = true
	}

	if c.Concurrency < 1 || c.Concurrency > 256 {
		bad("concurrency: must be 1-256, got %d", c.Concurrency)
	}

	for _, r := range c.AllowedRoots {
		if !filepath.IsAbs(r) || filepath.Clean(r) != r {
			bad("allowed_roots: %q: must be an absolute, clean path such as /srv", r)
		}
	}

	names := c.repoNames()
	for _, name := range names {
		rc := c.Repos[name]
		key := "repos." + name
		if !repoNamePattern.MatchString(name) {
			bad("%s: repo name %q: use 1-64 letters, digits, '-' or '_'", key, name)
		}
		if err := checkRepoURL(rc.URL); err != nil {
			bad("%s.url: %v", key, err)
		}
		switch {
		case rc.KeyFile == "" && rc.PasswordEnv == "":
			bad("%s: set key_file (a file holding the key) or password_env (the name of an environment variable holding it)", key)
		case rc.KeyFile != "" && rc.PasswordEnv != "":
			bad("%s: set key_file or password_env, not both", key)
		case rc.KeyFile != "" && !filepath.IsAbs(rc.KeyFile):
			bad("%s.key_file: must be an absolute path, got %q", key, rc.KeyFile)
		case rc.PasswordEnv != "" && !envNamePattern.MatchString(rc.PasswordEnv):
			bad("%s.password_env: %q is not an environment variable name (want e.g. BRR_OFFSITE_PASSWORD)", key, rc.PasswordEnv)
		}
	}

	if c.DefaultRepo != "" {
		if _, ok := c.Repos[c.DefaultRepo]; !ok {
			bad("default_repo: %q is not configured (configured: %s)", c.DefaultRepo, strings.Join(names, ", "))
		}
	}

	froms := make([]string, 0, len(c.Replicate))
	for from := range c.Replicate {
		froms = append(froms, from)
	}
	sort.Strings(froms)
	for _, from := range froms {
		if _, ok := c.Repos[from]; !ok {
			bad("replicate: %q is not configured (configured: %s)", from, strings.Join(names, ", "))
		}
		for _, to := range c.Replicate[from] {
			switch _, ok := c.Repos[to]; {
			case !ok:
				bad("replicate.%s: %q is not configured (configured: %s)", from, to, strings.Join(names, ", "))
			case to == from:
				bad("replicate.%s: a repo cannot replicate to itself", from)
			}
		}
	}

	repos := make([]string, 0, len(c.Retention))
	for name := range c.Retention {
		repos = append(repos, name)
	}
	sort.Strings(repos)
	for _, name := range repos {
		if _, ok := c.Repos[name]; !ok {
			bad("retention: %q is not configured (configured: %s)", name, strings.Join(names, ", "))
			continue
		}
		if err := c.Retention[name].Validate(); err != nil {
			bad("retention.%s: %s", name, strings.TrimPrefix(err.Error(), brr.ErrInvalid.Error()+": "))
		}
	}
	if c.Prune.Grace <= 0 {
		bad("prune.grace: must be a positive duration such as 1h (longer than a backup may take to commit what it writes), got %s", c.Prune.Grace)
	}

	if c.Health.Interval <= 0 {
		bad("health.interval: must be a positive duration such as 15s, got %s", c.Health.Interval)
	}
	for p, d := range c.Health.RPO {
		if !filepath.IsAbs(p) || filepath.Clean(p) != p {
			bad("health.rpo: %q: must be an absolute, clean source path", p)
		}
		if d <= 0 {
			bad("health.rpo.%s: must be a positive duration such as 26h, got %s", p, d)
		}
	}
	if err := c.Health.validateThresholds(); err != nil {
		errs = append(errs, err)
	}

	if !prefixPattern.MatchString(c.Prefix) {
		bad("prefix: %q: use letters, digits, '-' or '_' (dots between tokens allowed), e.g. brr", c.Prefix)
	}

	switch c.Log.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		bad("log.level: %q: must be one of trace, debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "json", "console":
	default:
		bad("log.format: %q: must be one of auto, json, console", c.Log.Format)
	}

	if c.Jobs.AckWait < time.Second {
		bad("jobs.ack_wait: must be at least 1s, got %s", c.Jobs.AckWait)
	}
	if c.Jobs.MaxDeliver < 1 || c.Jobs.MaxDeliver > 1000 {
		bad("jobs.max_deliver: must be 1-1000, got %d", c.Jobs.MaxDeliver)
	}
	if c.Jobs.LeaseTTL < time.Second {
		bad("jobs.lease_ttl: must be at least 1s, got %s", c.Jobs.LeaseTTL)
	}
	if c.Jobs.DrainTimeout <= 0 {
		bad("jobs.drain_timeout: must be a positive duration such as 30s, got %s", c.Jobs.DrainTimeout)
	}

	if c.GCPercent != 0 && (c.GCPercent < minGCPercent || c.GCPercent > maxGCPercent) {
		bad("gc_percent: must be %d-%d, or 0 for the Go runtime's (GOGC), got %d", minGCPercent, maxGCPercent, c.GCPercent)
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < minMemoryLimit {
		bad("memory_limit: must be off or at least %s, got %s: below that the worker would do little but collect garbage", minMemoryLimit, c.MemoryLimit)
	}

	if c.Streams.Replicas < 1 || c.Streams.Replicas > 5 {
		bad("streams.replicas: must be 1-5 (1 for one server, 3 for a cluster), got %d", c.Streams.Replicas)
	}
	if c.Streams.EventsMaxAge <= 0 {
		bad("streams.events_max_age: must be a positive duration such as 168h, got %s", c.Streams.EventsMaxAge)
	}
	return errors.Join(errs...)
}

func (c *Config) repoNames() []string {
	names := make([]string, 0, len(c.Repos))
	for name := range c.Repos {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

func checkHostPort(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q: want HOST:PORT such as 127.0.0.1:8080", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port must be 0-65535", addr)
	}
	return nil
}

func checkNATSURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("%q: want a URL such as nats://127.0.0.1:4222", redactURL(s))
	}
	switch u.Scheme {
	case "nats", "tls", "ws", "wss":
		return nil
	}
	return fmt.Errorf("%q: unknown scheme %q (supported: nats://, tls://, ws://, wss://)", redactURL(s), u.Scheme)
}

// repoLocation is a parsed repository URL.
type repoLocation struct {
	Scheme string // "file" or "nats"
	Path   string // file: the absolute directory
	Bucket string // nats: the object store bucket
}

func parseRepoURL(s string) (repoLocation, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || scheme == "" {
		return repoLocation{}, fmt.Errorf("%q: want file:///ABSOLUTE/PATH or nats://BUCKET", s)
	}
	switch scheme {
	case "file":
		if !strings.HasPrefix(rest, "/") {
			return repoLocation{}, fmt.Errorf("%q: want file:///ABSOLUTE/PATH (three slashes, then an absolute path)", s)
		}
		return repoLocation{Scheme: "file", Path: filepath.Clean(rest)}, nil
	case "nats":
		if !bucketPattern.MatchString(rest) {
			return repoLocation{}, fmt.Errorf("%q: want nats://BUCKET, a bucket name of letters, digits, '-' or '_'", s)
		}
		return repoLocation{Scheme: "nats", Bucket: rest}, nil
	}
	return repoLocation{}, fmt.Errorf("unknown scheme %q (supported: file://, nats://)", scheme)
}

func checkRepoURL(s string) error {
	if s == "" {
		return errors.New("missing; want file:///ABSOLUTE/PATH or nats://BUCKET")
	}
	_, err := parseRepoURL(s)
	return err
}
