package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/repo/limit"
	"github.com/brr-dev/brr/internal/repo/location"
	"github.com/brr-dev/brr/internal/repo/natsobj"
	"github.com/brr-dev/brr/internal/repo/s3"
	"github.com/brr-dev/brr/internal/repo/sftp"
)

// openBackend opens the storage of repo name where its URL says, with the options of its
// config block.
func openBackend(ctx context.Context, cfg Config, name string, rc RepoConfig, js jetstream.JetStream) (repo.Backend, error) {
	loc, err := location.Parse(rc.URL)
	if err != nil {
		return nil, fmt.Errorf("repos.%s.url: %w", name, err)
	}
	var be repo.Backend
	switch loc.Scheme {
	case "file":
		be, err = file.Open(loc.Path)
	case "nats":
		// Ranges of packs are read as the object store's chunks; where the bucket's
		// stream cannot be read so, packs read in parts (a restore, a replication) are
		// kept whole in a cache of their own per repo.
		be, err = natsobj.OpenWithOptions(ctx, js, loc.Bucket, natsobj.Options{
			Replicas: cfg.Streams.Replicas,
			CacheDir: filepath.Join(cfg.DataDir, "cache", "nats", name),
		})
	case "s3":
		var sc s3.Config
		if sc, err = s3Config(loc, rc); err == nil {
			be, err = s3.Open(ctx, sc)
		}
	case "sftp":
		be, err = sftp.Open(ctx, sftp.Config{
			User: loc.User, Host: loc.Host, Port: loc.Port, Path: loc.Path,
			KeyFile: rc.SSHKeyFile, UseAgent: rc.SSHKeyFile == "" && os.Getenv("SSH_AUTH_SOCK") != "", KnownHostsFile: rc.KnownHosts,
		})
	default:
		err = fmt.Errorf("%s:// repositories are not supported by this worker", loc.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("open repo %s at %s: %w", name, loc, err)
	}
	return limit.Wrap(be, rc.LimitUpload, rc.LimitDownload), nil
}

// s3Config is the s3 backend's config for a repo: where from its URL, the keys from the
// environment variables or the credentials file its config names.
func s3Config(loc location.Location, rc RepoConfig) (s3.Config, error) {
	sc := s3.Config{
		Endpoint: loc.Host, Bucket: loc.Bucket, Prefix: loc.Path, TLS: loc.TLS,
		Region: rc.Region, PathStyle: rc.PathStyle, CredentialsFile: rc.CredentialsFile, Profile: rc.Profile,
	}
	if loc.Port != 0 {
		sc.Endpoint = net.JoinHostPort(loc.Host, strconv.Itoa(loc.Port))
	} else if strings.Contains(loc.Host, ":") {
		sc.Endpoint = "[" + loc.Host + "]"
	}
	if rc.AccessKeyEnv != "" {
		creds, err := s3.CredentialsFromEnv(rc.AccessKeyEnv, rc.SecretKeyEnv, rc.SessionTokenEnv)
		if err != nil {
			return s3.Config{}, err
		}
		sc.Credentials = creds
	}
	return sc, nil
}
