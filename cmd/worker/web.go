package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/health"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/web"
)

var (
	_ web.Records = (*state.DB)(nil)
	_ web.Health  = (*health.Monitor)(nil)
)

// appMount is where the HTTP server sends / and /api/v1/: to the dashboard and API once
// startWeb has mounted them, and until then (the worker is still connecting to NATS) to
// a 503 that says so.
type appMount struct {
	srv atomic.Pointer[web.Server]
}

func (a *appMount) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if s := a.srv.Load(); s != nil {
		s.ServeHTTP(w, r)
		return
	}
	writeJSON(w, http.StatusServiceUnavailable, map[string]any{
		"error":  "the worker is starting: the dashboard and API are served once it is connected to NATS; see /readyz",
		"status": http.StatusServiceUnavailable,
	})
}

// startWeb reads the API key, mounts the dashboard and API on the worker's HTTP server
// and starts feeding their live event streams. The API shows the pool's health as
// monitor sees it.
func (w *worker) startWeb(ctx context.Context, engine *jobs.Engine, monitor *health.Monitor) error {
	key, err := loadAPIKey(w.cfg.HTTP.APIKeyFile, w.log)
	if err != nil {
		return err
	}
	_, defaultRepo, _ := engine.Repo("")
	srv, err := web.New(web.Config{
		NC:           w.nc,
		Prefix:       w.cfg.Prefix,
		Pools:        w.cfg.Pools,
		Records:      w.db,
		Health:       monitor,
		APIKey:       key,
		ProtectReads: w.cfg.HTTP.ProtectReads,
		Worker:       w.id,
		Host:         w.host,
		Version:      w.version,
		Repos:        w.repos.Names, // refused and registered ones too: the pool answers for them
		DefaultRepo:  defaultRepo,
		RPO:          w.cfg.Health.RPO,
		Replicate:    engine.Policy,
		RepoInfos: func(ctx context.Context) ([]brr.RepoInfo, error) {
			return w.repoInfos(ctx, monitor)
		},
		Refused: w.repos.Refused,
		Log:     w.log,
	})
	if err != nil {
		return err
	}
	// 5s: its stop ends the live event streams, which would hold up the HTTP shutdown.
	w.start(ctx, component{name: "web", run: srv.Run, timeout: 5 * time.Second})
	w.http.app.srv.Store(srv)
	w.log.Info().Bool("jobs_over_http", key != nil).Bool("protect_reads", w.cfg.HTTP.ProtectReads).
		Str("limits", web.Limits{}.String()).Str("dashboard", "http://"+w.http.Addr()+"/").Msg("serving dashboard and api")
	return nil
}

// repoInfos are the repos that the registry of each of the worker's pools holds, joined
// with the heartbeats monitor has seen: who serves each and who refuses it. A repo
// registered in two pools is listed once for each, by name and then pool.
func (w *worker) repoInfos(ctx context.Context, monitor *health.Monitor) ([]brr.RepoInfo, error) {
	var regs []brr.RepoRegistration
	for _, pool := range w.cfg.Pools {
		list, err := w.repos.registry.List(ctx, pool)
		if err != nil {
			return nil, fmt.Errorf("read the repo registry of pool %s: %w", pool, err)
		}
		regs = append(regs, list...)
	}
	infos := brr.RepoInfos(regs, monitor.Workers())
	slices.SortFunc(infos, func(a, b brr.RepoInfo) int {
		return cmp.Or(strings.Compare(a.Name, b.Name), strings.Compare(a.Pool, b.Pool))
	})
	return infos, nil
}

// minAPIKeyLen is the shortest API key accepted: 16 characters, so that a key cannot be
// guessed within the rate limit's lifetime.
const minAPIKeyLen = 16

// loadAPIKey reads the API key from path: its contents, trimmed. No path means no key
// (the API then takes no jobs). A key file that other users can read is used, with a
// warning: some secret stores mount files that way. The key itself is never logged.
func loadAPIKey(path string, log zerolog.Logger) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("http.api_key_file %s does not exist; put a long random key in it, e.g. (umask 077; openssl rand -hex 32 > %s)", path, path)
	}
	if err != nil {
		return nil, fmt.Errorf("http.api_key_file: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("http.api_key_file %s is not a regular file; point it at a file holding the key", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("http.api_key_file: %w", err)
	}
	key := strings.TrimSpace(string(data))
	switch {
	case key == "":
		return nil, fmt.Errorf("http.api_key_file %s is empty; put a long random key in it, e.g. openssl rand -hex 32", path)
	case len(key) < minAPIKeyLen:
		return nil, fmt.Errorf("http.api_key_file %s holds a key of %d characters; use at least %d, e.g. openssl rand -hex 32", path, len(key), minAPIKeyLen)
	case strings.ContainsAny(key, " \t\r\n"):
		return nil, fmt.Errorf("http.api_key_file %s holds more than one word; put the key alone in it", path)
	}
	if perm := info.Mode().Perm(); perm&0o077 != 0 {
		log.Warn().Str("key_file", path).Str("mode", fmt.Sprintf("%04o", perm)).
			Msg("the API key file can be read by other users; chmod 600 it (in Kubernetes, defaultMode: 0400)")
	}
	return []byte(key), nil
}
