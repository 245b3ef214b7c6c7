package main

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/repo/location"
	"github.com/brr-dev/brr/internal/repo/natsobj"
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
		be, err = natsobj.Open(ctx, js, loc.Bucket, cfg.Streams.Replicas)
	default:
		err = fmt.Errorf("%s:// repositories are not supported by this worker yet", loc.Scheme)
	}
	if err != nil {
		return nil, fmt.Errorf("open repo %s at %s: %w", name, loc, err)
	}
	return be, nil
}
