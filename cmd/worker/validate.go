package main

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/brr-dev/brr"
)

// prefixPattern is the subject prefix: the root package checks it only inside
// brr.NewClient, and has no function of its own for it to call.
var prefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// problems collects what is wrong with a configuration, one problem per line; each
// names the key and says what is allowed.
type problems []error

func (p *problems) bad(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

// add appends err, if any: the problems of a section.
func (p *problems) add(err error) {
	if err != nil {
		*p = append(*p, err)
	}
}

func (p problems) err() error { return errors.Join(p...) }

// Validate reports everything wrong with the configuration, one problem per line; each
// names the key and says what is allowed. Each section checks itself; Validate adds the
// top-level keys and the rules across sections (repos named by default_repo, replicate
// and retention).
func (c *Config) Validate() error {
	var p problems
	if !filepath.IsAbs(c.DataDir) {
		p.bad("data_dir: must be an absolute path, got %q", c.DataDir)
	}
	p.add(c.NATS.validate())
	p.add(c.HTTP.validate())
	if len(c.Pools) == 0 {
		p.bad("pools: name at least one pool (default: [%s])", brr.DefaultPool)
	}
	seenPool := map[string]bool{}
	for _, pool := range c.Pools {
		if err := brr.ValidatePool(pool); err != nil {
			p.bad("pools: %q: use 1-64 letters, digits, '-' or '_'", pool)
		}
		if seenPool[pool] {
			p.bad("pools: %q is listed twice", pool)
		}
		seenPool[pool] = true
	}
	if c.Concurrency < 1 || c.Concurrency > 256 {
		p.bad("concurrency: must be 1-256, got %d", c.Concurrency)
	}
	for _, r := range c.AllowedRoots {
		if !filepath.IsAbs(r) || filepath.Clean(r) != r {
			p.bad("allowed_roots: %q: must be an absolute, clean path such as /srv", r)
		}
	}
	p.add(c.validateRepos())
	p.add(c.validateSources())
	p.add(c.Prune.validate())
	p.add(c.Health.validate())
	p.add(c.validateRPOSources())
	if !prefixPattern.MatchString(c.Prefix) {
		p.bad("prefix: %q: use letters, digits, '-' or '_' (dots between tokens allowed), e.g. brr", c.Prefix)
	}
	p.add(c.Log.validate())
	p.add(c.Jobs.validate())
	if c.GCPercent != 0 && (c.GCPercent < minGCPercent || c.GCPercent > maxGCPercent) {
		p.bad("gc_percent: must be %d-%d, or 0 for the Go runtime's (GOGC), got %d", minGCPercent, maxGCPercent, c.GCPercent)
	}
	if c.MemoryLimit != 0 && c.MemoryLimit < minMemoryLimit {
		p.bad("memory_limit: must be off or at least %s, got %s: below that the worker would do little but collect garbage", minMemoryLimit, c.MemoryLimit)
	}
	p.add(c.Streams.validate())
	p.add(c.validateNotify())
	return p.err()
}

// validateRepos checks each repo, and that default_repo, replicate and retention name
// configured repos only.
func (c *Config) validateRepos() error {
	var p problems
	names := c.repoNames()
	configured := strings.Join(names, ", ")
	for _, name := range names {
		key := "repos." + name
		if err := brr.ValidateRepoName(name); err != nil || name == "" {
			p.bad("%s: repo name %q: use 1-64 letters, digits, '-' or '_'", key, name)
		}
		p.add(c.Repos[name].validate(key))
	}
	if c.DefaultRepo != "" {
		if _, ok := c.Repos[c.DefaultRepo]; !ok {
			p.bad("default_repo: %q is not configured (configured: %s)%s", c.DefaultRepo, configured, c.addLocal(c.DefaultRepo))
		}
	}
	for _, from := range sortedKeys(c.Replicate) {
		if _, ok := c.Repos[from]; !ok {
			p.bad("replicate: %q is not configured (configured: %s)%s", from, configured, c.addLocal(from))
		}
		for _, to := range c.Replicate[from] {
			switch _, ok := c.Repos[to]; {
			case !ok:
				p.bad("replicate.%s: %q is not configured (configured: %s)%s", from, to, configured, c.addLocal(to))
			case to == from:
				p.bad("replicate.%s: a repo cannot replicate to itself", from)
			}
		}
	}
	for _, name := range sortedKeys(c.Retention) {
		if _, ok := c.Repos[name]; !ok {
			p.bad("retention: %q is not configured (configured: %s)%s", name, configured, c.addLocal(name))
			continue
		}
		if err := c.Retention[name].Validate(); err != nil {
			p.bad("retention.%s: %s", name, strings.TrimPrefix(err.Error(), brr.ErrInvalid.Error()+": "))
		}
	}
	return p.err()
}

// addLocal is what a problem about repo name adds when name is the repo "local", which
// the worker makes under the data dir only while repos: is empty: a config that adds
// repos: and still names local must declare it, and this says exactly how.
func (c *Config) addLocal(name string) string {
	if name != LocalRepo {
		return ""
	}
	l := c.localRepo()
	return fmt.Sprintf(`; the repo local exists by itself only while repos: is empty; to keep it, add under repos:  local: {url: "%s", key_file: "%s"}`, l.URL, l.KeyFile)
}

func (n NATSConfig) validate() error {
	var p problems
	if n.URL == "" {
		if err := checkHostPort(n.Listen); err != nil {
			p.bad("nats.listen: %v", err)
		}
	} else {
		for _, u := range strings.Split(n.URL, ",") {
			if err := checkNATSURL(strings.TrimSpace(u)); err != nil {
				p.bad("nats.url: %v", err)
			}
		}
	}
	auth := 0
	for _, set := range []bool{n.Creds != "", n.User != "" || n.Password != "", n.Token != ""} {
		if set {
			auth++
		}
	}
	if auth > 1 {
		p.bad("nats: set only one of creds, user/password or token")
	}
	if (n.User == "") != (n.Password == "") {
		p.bad("nats: user and password go together; set both or neither")
	}
	if (n.TLS.Cert == "") != (n.TLS.Key == "") {
		p.bad("nats.tls: cert and key go together; set both or neither")
	}
	if prefix := n.inboxPrefix(); prefix != "" {
		if err := brr.ValidateInboxPrefix(prefix); err != nil {
			p.bad("nats.inbox_prefix: %s", strings.TrimPrefix(err.Error(), brr.ErrInvalid.Error()+": "))
		}
	}
	if n.URL == "" && (auth > 0 || n.TLS != (TLSConfig{})) {
		p.bad("nats: creds, user, password, token and tls are for connecting to nats.url; the embedded server (no nats.url) takes none")
	}
	return p.err()
}

func (h HTTPConfig) validate() error {
	var p problems
	if err := checkHostPort(h.Listen); err != nil {
		p.bad("http.listen: %v", err)
	}
	if h.APIKeyFile != "" && !filepath.IsAbs(h.APIKeyFile) {
		p.bad("http.api_key_file: must be an absolute path, got %q", h.APIKeyFile)
	}
	if h.ProtectReads && h.APIKeyFile == "" {
		p.bad("http.protect_reads: reads can only be protected with a key; set http.api_key_file (or BRR_HTTP_API_KEY_FILE) too")
	}
	return p.err()
}

// validate checks a repo's url and keys; key is its config key, repos.NAME.
func (rc RepoConfig) validate(key string) error { return brr.RepoSpec(rc).Validate(key) }

func (pc PruneConfig) validate() error {
	if pc.Grace <= 0 {
		return fmt.Errorf("prune.grace: must be a positive duration such as 1h (longer than a backup may take to commit what it writes), got %s", pc.Grace)
	}
	return nil
}

func (l LogConfig) validate() error {
	var p problems
	switch l.Level {
	case "trace", "debug", "info", "warn", "error":
	default:
		p.bad("log.level: %q: must be one of trace, debug, info, warn, error", l.Level)
	}
	switch l.Format {
	case "auto", "json", "console":
	default:
		p.bad("log.format: %q: must be one of auto, json, console", l.Format)
	}
	return p.err()
}

func (j JobsConfig) validate() error {
	var p problems
	if j.AckWait < time.Second {
		p.bad("jobs.ack_wait: must be at least 1s, got %s", j.AckWait)
	}
	if j.MaxDeliver < 1 || j.MaxDeliver > 1000 {
		p.bad("jobs.max_deliver: must be 1-1000, got %d", j.MaxDeliver)
	}
	if j.LeaseTTL < time.Second {
		p.bad("jobs.lease_ttl: must be at least 1s, got %s", j.LeaseTTL)
	}
	if j.DrainTimeout <= 0 {
		p.bad("jobs.drain_timeout: must be a positive duration such as 30s, got %s", j.DrainTimeout)
	}
	return p.err()
}

func (s StreamsConfig) validate() error {
	var p problems
	if s.Replicas < 1 || s.Replicas > 5 {
		p.bad("streams.replicas: must be 1-5 (1 for one server, 3 for a cluster), got %d", s.Replicas)
	}
	if s.EventsMaxAge <= 0 {
		p.bad("streams.events_max_age: must be a positive duration such as 168h, got %s", s.EventsMaxAge)
	}
	return p.err()
}

func (c *Config) repoNames() []string { return sortedKeys(c.Repos) }

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
