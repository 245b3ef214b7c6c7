package brr

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"

	"github.com/brr-dev/brr/internal/repo/location"
)

var envNamePattern = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// problems collects what is wrong, one line each.
type problems []error

func (p *problems) bad(format string, args ...any) { *p = append(*p, fmt.Errorf(format, args...)) }

// Validate reports everything wrong with the spec, one problem per line, each naming its
// key under key (repos.NAME in a worker's config).
func (rc RepoSpec) Validate(key string) error {
	var p problems
	loc, err := location.Parse(rc.URL)
	if err != nil {
		p.bad("%s.url: %v", key, err)
	}
	if err == nil {
		rc.validateScheme(key, loc.Scheme, &p)
	}
	if rc.LimitUpload < 0 || rc.LimitDownload < 0 {
		p.bad("%s: limit_upload and limit_download are KiB/s, 0 (no limit) or more", key)
	}
	switch {
	case rc.KeyFile == "" && rc.PasswordEnv == "":
		p.bad("%s: set key_file (a file holding the key) or password_env (the name of an environment variable holding it)", key)
	case rc.KeyFile != "" && rc.PasswordEnv != "":
		p.bad("%s: set key_file or password_env, not both", key)
	case rc.KeyFile != "" && !filepath.IsAbs(rc.KeyFile):
		p.bad("%s.key_file: must be an absolute path, got %q", key, rc.KeyFile)
	case rc.PasswordEnv != "" && !envNamePattern.MatchString(rc.PasswordEnv):
		p.bad("%s.password_env: %q is not an environment variable name (want e.g. BRR_OFFSITE_PASSWORD)", key, rc.PasswordEnv)
	}
	return errors.Join(p...)
}

// validateScheme checks the keys that belong to one scheme: they are set only on a repo
// of that scheme, and well-formed.
func (rc RepoSpec) validateScheme(key, scheme string, p *problems) {
	s3Keys := map[string]string{"region": rc.Region, "path_style": rc.PathStyle, "access_key_env": rc.AccessKeyEnv,
		"secret_key_env": rc.SecretKeyEnv, "session_token_env": rc.SessionTokenEnv, "credentials_file": rc.CredentialsFile, "profile": rc.Profile}
	sftpKeys := map[string]string{"ssh_key_file": rc.SSHKeyFile, "known_hosts": rc.KnownHosts}
	for _, only := range []struct {
		scheme string
		keys   map[string]string
	}{{"s3", s3Keys}, {"sftp", sftpKeys}} {
		if only.scheme == scheme {
			continue
		}
		for _, k := range slices.Sorted(maps.Keys(only.keys)) {
			if only.keys[k] != "" {
				p.bad("%s.%s: only an %s:// repo takes it; this repo's url is %s://…", key, k, only.scheme, scheme)
			}
		}
	}
	switch rc.PathStyle {
	case "", "auto", "path", "virtual":
	default:
		p.bad("%s.path_style: %q is not auto, path or virtual", key, rc.PathStyle)
	}
	for _, k := range []string{"access_key_env", "secret_key_env", "session_token_env"} {
		if v := s3Keys[k]; v != "" && !envNamePattern.MatchString(v) {
			p.bad("%s.%s: %q is not an environment variable name (want e.g. OFFSITE_AWS_ACCESS_KEY_ID)", key, k, v)
		}
	}
	if (rc.AccessKeyEnv == "") != (rc.SecretKeyEnv == "") {
		p.bad("%s: set access_key_env and secret_key_env together", key)
	}
	if rc.Profile != "" && rc.CredentialsFile == "" {
		p.bad("%s.profile: names a section of credentials_file; set credentials_file too", key)
	}
	for _, k := range []string{"credentials_file", "ssh_key_file", "known_hosts"} {
		v := s3Keys[k] + sftpKeys[k]
		if v != "" && !filepath.IsAbs(v) {
			p.bad("%s.%s: must be an absolute path, got %q", key, k, v)
		}
	}
}
