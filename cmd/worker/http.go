package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/health"
)

// readiness is what /readyz reports: the worker is ready when its NATS connection is up
// and it has ensured the streams and started consuming.
type readiness struct {
	started  atomic.Bool
	stopping atomic.Bool
	nc       atomic.Pointer[nats.Conn] // nil until NATS is connected
	// pool is the health monitor, nil until it runs.
	pool atomic.Pointer[health.Monitor]
	// refused are the repos the worker refuses, nil until its repos are open.
	refused atomic.Pointer[[]brr.RefusedRepo]
	// store watches the embedded server's JetStream store; nil with an external NATS.
	store atomic.Pointer[storeGuard]
}

// refusedRepos are the repos the worker has and does not serve, for /readyz: the worker
// is ready all the same, since it serves the pool's other jobs, but says so.
func (r *readiness) refusedRepos() []brr.RefusedRepo {
	if p := r.refused.Load(); p != nil {
		return *p
	}
	return nil
}

// poolHealth is the aggregate status of the pool's health checks, or "unknown" while
// the monitor has not read them.
func (r *readiness) poolHealth() string {
	m := r.pool.Load()
	if m == nil || !m.Loaded() {
		return "unknown"
	}
	return string(m.Report().Status)
}

// reason is why the worker is not ready, or "" when it is.
func (r *readiness) reason() string {
	switch {
	case r.stopping.Load():
		return "worker is shutting down"
	case !r.started.Load():
		return "worker is starting: streams not ensured or consumers not running yet"
	case r.nc.Load() != nil && !r.nc.Load().IsConnected():
		return "disconnected from nats; reconnecting"
	case r.store.Load().Problem() != "":
		return r.store.Load().Problem()
	}
	return ""
}

// httpServer serves the worker's health, readiness and metrics, and once mounted (see
// web.go) the dashboard at / and the API under /api/v1/.
type httpServer struct {
	srv *http.Server
	ln  net.Listener
	app *appMount
}

// newHTTPServer listens on addr at once, so that an address in use fails start-up, and
// serves once Serve is called.
func newHTTPServer(addr, worker, version string, ready *readiness, metrics http.Handler) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen on %s: %w (set http.listen, BRR_HTTP_LISTEN or --http to a free address)", addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "worker": worker, "version": version})
	})
	// /readyz is about this worker only: whether it can take jobs. The pool's health
	// (health) is there to read, but a critical check (an RPO missed, a full disk
	// elsewhere) must not take a worker that works out of a load balancer.
	// A worker that refuses a repo stays ready: it runs the pool's other jobs and leaves
	// those on the refused repo to the workers that serve it; refused_repos says why.
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		body := map[string]any{"status": "ready", "worker": worker, "health": ready.poolHealth()}
		if refused := ready.refusedRepos(); len(refused) > 0 {
			body["refused_repos"] = refused
		}
		if reason := ready.reason(); reason != "" {
			body["status"], body["reason"] = "unavailable", reason
			writeJSON(w, http.StatusServiceUnavailable, body)
			return
		}
		writeJSON(w, http.StatusOK, body)
	})
	mux.Handle("GET /metrics", metrics)
	app := &appMount{}
	mux.Handle("/", app)

	return &httpServer{
		ln:  ln,
		app: app,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
		},
	}, nil
}

// Addr is the address the server listens on.
func (s *httpServer) Addr() string { return s.ln.Addr().String() }

// Run serves until Shutdown, whatever ctx; it returns nil after a shutdown.
func (s *httpServer) Run(context.Context) error {
	if err := s.srv.Serve(s.ln); err != http.ErrServerClosed {
		return fmt.Errorf("serve http: %w", err)
	}
	return nil
}

// Shutdown stops the server gracefully: it stops listening and waits, as long as ctx
// allows, for the requests being served.
func (s *httpServer) Shutdown(ctx context.Context) error {
	if err := s.srv.Shutdown(ctx); err != nil {
		return fmt.Errorf("shut down http: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
