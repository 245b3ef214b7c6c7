package s3

import (
	"fmt"
	"net/url"
	"strings"
)

// ParseURL returns the Config of a repository URL, the form Location returns:
// s3://HOST[:PORT]/BUCKET[/PREFIX] (https), s3:https://… or s3:http://… (plain http).
// The Config has no keys yet. A URL with keys in it is refused, so that none ends up in
// a configuration file or a log.
func ParseURL(s string) (Config, error) {
	var cfg Config
	rest, ok := strings.CutPrefix(s, "s3:")
	if !ok {
		return cfg, fmt.Errorf("repository URL %q is not s3://HOST/BUCKET[/PREFIX]", s)
	}
	switch {
	case strings.HasPrefix(rest, "//"):
		cfg.TLS, rest = true, "https:"+rest
	case strings.HasPrefix(rest, "https://"):
		cfg.TLS = true
	case strings.HasPrefix(rest, "http://"):
	default:
		return cfg, fmt.Errorf("repository URL %q is none of s3://HOST/BUCKET, s3:https://HOST/BUCKET, s3:http://HOST/BUCKET", s)
	}
	u, err := url.Parse(rest)
	if err != nil {
		return cfg, fmt.Errorf("repository URL %q: %w", s, err)
	}
	if u.User != nil {
		return cfg, fmt.Errorf("repository URL s3://%s%s holds keys: give them in the repository's key variables instead", u.Host, u.Path)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return cfg, fmt.Errorf("repository URL %q: a query or fragment means nothing here", s)
	}
	cfg.Endpoint = u.Host
	cfg.Bucket, cfg.Prefix, _ = strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	cfg.Prefix = strings.Trim(cfg.Prefix, "/")
	if cfg.Endpoint == "" || cfg.Bucket == "" {
		return cfg, fmt.Errorf("repository URL %q has no host or no bucket (want s3://HOST[:PORT]/BUCKET[/PREFIX])", s)
	}
	return cfg, nil
}
