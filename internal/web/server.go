package web

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

// Health is the pool's health as the worker's health monitor sees it.
type Health interface {
	Report() brr.HealthReport
}

// Records is this worker's own memory of the jobs it ran (its bbolt job records).
// *state.DB implements it.
type Records interface {
	Job(id string) (*state.JobRecord, error)
	Jobs(limit int) ([]*state.JobRecord, error)
}

// Config is what a Server serves and how.
type Config struct {
	// NC is the worker's NATS connection: jobs are published, queries asked and live
	// events received over it.
	NC *nats.Conn
	// Prefix is the subject prefix of the workers (empty: brr.DefaultPrefix).
	Prefix string
	// Pools are the pools of this worker; the first is where jobs go and queries are
	// asked when a request names none.
	Pools []string
	// Records are this worker's job records; nil means analytics use events only.
	Records Records
	// Health is the health monitor; nil makes /health and /workers answer 503.
	Health Health
	// APIKey is the key that mutations (and with ProtectReads, reads) need as a Bearer
	// token. Empty disables mutations: they answer 403.
	APIKey []byte
	// ProtectReads requires the key for reads too; it needs an APIKey.
	ProtectReads bool

	// Worker, Host and Version identify this worker in /info and the dashboard.
	Worker, Host, Version string
	// Repos names every repo the worker knows of now: those it serves, those it refuses
	// and those its pools registered. It is called at each request, since repos come and
	// go with the pool's registry while the worker runs; nil means none, and then any
	// repo name is taken. DefaultRepo is the one a job without a repo uses.
	Repos       func() []string
	DefaultRepo string
	// RPO is the recovery point objective of each source: /sources compares the age of
	// its newest snapshot with it.
	RPO map[string]time.Duration
	// Replicate is the replication policy now (repo → its replicas), for /replication
	// and /info; called at each request. Nil means no policy.
	Replicate func() map[string][]string
	// RepoInfos are the repos of the worker's pools, as their registry holds them and
	// their workers' heartbeats serve or refuse them, for /repos; nil makes /repos
	// answer 503. Refused are the repos this worker refuses now, and why (nil: none).
	RepoInfos func(ctx context.Context) ([]brr.RepoInfo, error)
	Refused   func() []brr.RefusedRepo

	// Limits are the per-client request rates; zero fields take DefaultLimits'.
	Limits Limits
	// KeepAlive is how often a live event stream sends a comment to keep proxies from
	// closing it; 0 means 15 s.
	KeepAlive time.Duration
	// Log gets one line per mutation and per server error; the key never goes there.
	Log zerolog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// MaxBodySize is the largest request body the API reads, in bytes; a larger one is
// answered 413.
const MaxBodySize = 64 << 10

// Server serves the API and the dashboard. Run feeds its live event streams; the rest
// works without it.
type Server struct {
	cfg     Config
	client  *brr.Client
	js      jetstream.JetStream
	keyHash *[sha256.Size]byte // nil: no key configured
	reads   *limiter
	writes  *limiter
	hub     *hub
	mux     *http.ServeMux
	log     zerolog.Logger
}

// access is what a route needs from the caller.
type access int

const (
	read   access = iota // the key when reads are protected
	mutate               // the key, always
)

// route is one endpoint of the API. The route table is also what the auth test and the
// OpenAPI check walk, so that no route escapes either.
type route struct {
	method, path string
	access       access
	handle       func(w http.ResponseWriter, r *http.Request) error
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.NC == nil {
		return nil, errors.New("web: no NATS connection")
	}
	if len(cfg.Pools) == 0 {
		cfg.Pools = []string{brr.DefaultPool}
	}
	if cfg.Prefix == "" {
		cfg.Prefix = brr.DefaultPrefix
	}
	if cfg.ProtectReads && len(cfg.APIKey) == 0 {
		return nil, errors.New("web: protect_reads needs an API key; set http.api_key_file")
	}
	if cfg.KeepAlive <= 0 {
		cfg.KeepAlive = 15 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	client, err := brr.NewClient(cfg.NC, brr.WithPrefix(cfg.Prefix), brr.WithPool(cfg.Pools[0]))
	if err != nil {
		return nil, fmt.Errorf("web: %w", err)
	}
	js, err := jetstream.New(cfg.NC)
	if err != nil {
		return nil, fmt.Errorf("web: jetstream: %w", err)
	}
	s := &Server{
		cfg:    cfg,
		client: client,
		js:     js,
		reads:  newLimiter(cfg.Limits.withDefaults().Reads, cfg.Now),
		writes: newLimiter(cfg.Limits.withDefaults().Writes, cfg.Now),
		hub:    newHub(),
		log:    cfg.Log,
	}
	if len(cfg.APIKey) > 0 {
		h := sha256.Sum256(cfg.APIKey)
		s.keyHash = &h
	}
	s.mux = s.newMux()
	return s, nil
}

func (s *Server) routes() []route {
	return []route{
		{"GET", "/api/v1/info", read, s.info},
		{"GET", "/api/v1/health", read, s.health},
		{"GET", "/api/v1/workers", read, s.workers},
		{"GET", "/api/v1/queue", read, s.queue},
		{"GET", "/api/v1/jobs", read, s.listJobs},
		{"POST", "/api/v1/jobs", mutate, s.postJob},
		{"GET", "/api/v1/jobs/{id}", read, s.getJob},
		{"DELETE", "/api/v1/jobs/{id}", mutate, s.cancelJob},
		{"GET", "/api/v1/snapshots", read, s.snapshots},
		{"GET", "/api/v1/sources", read, s.sources},
		{"GET", "/api/v1/checkpoints", read, s.checkpoints},
		{"GET", "/api/v1/replication", read, s.replication},
		{"GET", "/api/v1/repos", read, s.listRepos},
		{"GET", "/api/v1/events", read, s.events},
		{"GET", "/api/v1/events/stream", read, s.stream},
		{"GET", "/api/v1/analytics", read, s.analytics},

		// The jobs no worker has taken yet (queued.go).
		{"GET", "/api/v1/queue/jobs", read, s.queuedJobs},

		// The dead-letter stream (internal/web/dlq.go).
		{"GET", "/api/v1/dlq", read, s.listDead},
		{"DELETE", "/api/v1/dlq", mutate, s.purgeDead},
		{"POST", "/api/v1/dlq/{id}/retry", mutate, s.retryDead},
		{"DELETE", "/api/v1/dlq/{id}", mutate, s.removeDead},

		// Browsing a snapshot (browse.go).
		{"GET", "/api/v1/snapshots/{id}/tree", read, s.snapshotTree},
		{"GET", "/api/v1/snapshots/{a}/diff/{b}", read, s.snapshotDiff},
		{"GET", "/api/v1/snapshots/{id}/file", read, s.snapshotFile},
	}
}

func (s *Server) newMux() *http.ServeMux {
	mux := http.NewServeMux()
	// paths knows every API path whatever the method, to tell 405 from 404.
	paths := http.NewServeMux()
	allowed := map[string][]string{}
	for _, rt := range s.routes() {
		mux.Handle(rt.method+" "+rt.path, s.endpoint(rt))
		if allowed[rt.path] == nil {
			paths.Handle(rt.path, http.NotFoundHandler())
		}
		allowed[rt.path] = append(allowed[rt.path], rt.method)
	}
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := paths.Handler(r); pattern != "" {
			methods := allowed[pattern]
			w.Header().Set("Allow", strings.Join(methods, ", "))
			writeError(w, errorf(http.StatusMethodNotAllowed, "%s %s is not allowed; use %s", r.Method, r.URL.Path, strings.Join(methods, " or ")))
			return
		}
		writeError(w, errorf(http.StatusNotFound, "no API route %s %s; the routes are listed in docs/api.md", r.Method, r.URL.Path))
	})
	s.mountDashboard(mux)
	return mux
}

// ServeHTTP serves the API under /api/v1/ and the dashboard at /.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	s.mux.ServeHTTP(w, r)
}

// Run feeds the live event streams from NATS until ctx is done, then ends every open
// stream, so that the HTTP server can shut down.
func (s *Server) Run(ctx context.Context) error {
	return s.hub.run(ctx, s.cfg.NC, s.client.Subjects().Events(""))
}

// endpoint wraps a route's handler with the rate limit, the key check and the error
// answer, in that order: a caller that guesses keys is slowed down like any other.
func (s *Server) endpoint(rt route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		err := s.limit(sw, r, rt.access)
		if err == nil {
			err = s.authorize(sw, r, rt.access)
		}
		if err == nil {
			err = rt.handle(sw, r)
		}
		if err != nil {
			s.writeErr(sw, r, err)
		}
		s.logRequest(r, rt, sw.status)
	})
}

func (s *Server) logRequest(r *http.Request, rt route, status int) {
	ev := s.log.Debug()
	if rt.access == mutate || status >= 500 {
		ev = s.log.Info()
	}
	ev.Str("method", r.Method).Str("path", r.URL.Path).Int("status", status).Str("client", clientIP(r)).Msg("http api")
}

// statusWriter remembers the status a handler wrote, for the log line. It passes
// Flush and the rest through Unwrap, which http.ResponseController uses.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// apiError is an error answer with its HTTP status.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// errorBody is every error answer: what went wrong, said for people, and the status.
type errorBody struct {
	Error  string `json:"error"`
	Status int    `json:"status"`
}

func writeError(w http.ResponseWriter, err *apiError) {
	writeJSON(w, err.status, errorBody{Error: err.msg, Status: err.status})
}

// writeErr answers err with the status it deserves. Errors that are not the caller's
// fault and not a known state of the system are logged.
func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		ae = &apiError{status: statusOf(err), msg: err.Error()}
		if ae.status == http.StatusInternalServerError {
			s.log.Error().Err(err).Str("method", r.Method).Str("path", r.URL.Path).Msg("http api")
		}
	}
	writeError(w, ae)
}

// statusOf maps the errors of brr.Client to HTTP statuses.
func statusOf(err error) int {
	switch {
	case errors.Is(err, brr.ErrInvalid), errors.Is(err, brr.ErrUnknownKind), errors.Is(err, brr.ErrUnknownVersion):
		return http.StatusBadRequest
	case errors.Is(err, brr.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, brr.ErrNoWorker), errors.Is(err, brr.ErrNoStream), errors.Is(err, brr.ErrNotConnected),
		errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrNoResponders):
		return http.StatusServiceUnavailable
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrTimeout):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Info is this worker and its configuration, as far as the API and dashboard need it.
type Info struct {
	Worker      string   `json:"worker"`
	Host        string   `json:"host"`
	Version     string   `json:"version"`
	Pools       []string `json:"pools"`
	Repos       []string `json:"repos"`
	DefaultRepo string   `json:"default_repo,omitempty"`
	// RPOSeconds is the recovery point objective of each configured source.
	RPOSeconds map[string]float64  `json:"rpo_seconds"`
	Replicate  map[string][]string `json:"replicate"`
	// ProtectReads says whether reads need the key; Mutations whether POSTs are
	// possible at all (an API key is configured).
	ProtectReads bool      `json:"protect_reads"`
	Mutations    bool      `json:"mutations"`
	Health       bool      `json:"health"`
	Time         time.Time `json:"time"`
}

func (s *Server) info(w http.ResponseWriter, _ *http.Request) error {
	rpo := map[string]float64{}
	for src, d := range s.cfg.RPO {
		rpo[src] = d.Seconds()
	}
	repl := s.replicate()
	if repl == nil {
		repl = map[string][]string{}
	}
	writeJSON(w, http.StatusOK, Info{
		Worker: s.cfg.Worker, Host: s.cfg.Host, Version: s.cfg.Version,
		Pools: s.cfg.Pools, Repos: s.sortedRepos(), DefaultRepo: s.cfg.DefaultRepo,
		RPOSeconds: rpo, Replicate: repl,
		ProtectReads: s.cfg.ProtectReads, Mutations: s.keyHash != nil, Health: s.cfg.Health != nil,
		Time: s.cfg.Now().UTC(),
	})
	return nil
}
