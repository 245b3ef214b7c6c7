package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/metrics"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/repo/natsobj"
	"github.com/brr-dev/brr/internal/state"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
)

// The fits between the packages this command wires together.
var (
	_ jobs.FileCache     = (*state.DB)(nil)
	_ jobs.BlobMap       = (*state.DB)(nil)
	_ jobs.Leaser        = (*events.Leases)(nil)
	_ events.Handler     = (*jobs.Engine)(nil)
	_ events.Queries     = (*jobs.Engine)(nil)
	_ events.Store       = (*state.DB)(nil)
	_ events.OutboxStore = (*state.DB)(nil)
	_ events.Announcer   = (*events.Outbox)(nil)
	_ repo.Backend       = (*file.Backend)(nil)
	_ repo.Backend       = (*natsobj.Backend)(nil)

	_ events.PointQueries = (*jobs.Engine)(nil)
	_ jobs.PointIndex     = (*state.DB)(nil)
)

// worker is a running brr-worker: what startWorker opened, closed in reverse by close.
type worker struct {
	cfg     Config
	log     zerolog.Logger
	id      string
	host    string
	version string

	ready    *readiness
	http     *httpServer
	db       *state.DB
	embedded *server.Server
	nc       *nats.Conn
	repos    map[string]*repo.Repository
	outbox   *events.Outbox
	consumer atomic.Pointer[events.Consumer] // read by the metrics handler
	metrics  *metrics.Metrics
	health   healthParts
	started  time.Time

	// stopConsumer ends the consume loop, stopAPI the query service and the sweeper, stopOutbox the
	// outbox after its last flush; each done channel closes when that Run has returned.
	stopConsumer, stopAPI, stopOutbox              context.CancelFunc
	consumerDone, apiDone, sweeperDone, outboxDone chan struct{}
	httpDone                                       chan struct{}
	// stopWeb ends the dashboard's live event streams; webDone closes when they have.
	stopWeb context.CancelFunc
	webDone chan struct{}

	// failed gets the error of the first component that stops on its own.
	failed    chan error
	closeOnce sync.Once
	closeErr  error
}

// startWorker opens and starts everything in order: state (which locks the data dir),
// HTTP, NATS (embedded or remote), the streams, the repositories, the job engine, the
// outbox, the consumers and the query service. On error it returns what it started so
// far, for close.
func startWorker(ctx context.Context, cfg Config, version string, log zerolog.Logger) (*worker, error) {
	w := &worker{cfg: cfg, log: log, version: version, ready: &readiness{}, failed: make(chan error, 1), started: time.Now()}
	baseLog := log

	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return w, fmt.Errorf("create data dir: %w", err)
	}

	// State first: it locks the data dir, so a second worker on it stops here.
	db, err := state.Open(filepath.Join(cfg.DataDir, "state.db"), state.Options{})
	if err != nil {
		return w, fmt.Errorf("open state: %w", err)
	}
	w.db = db

	w.host = hostName()
	w.id, err = loadWorkerID(cfg.DataDir, w.host)
	if err != nil {
		return w, err
	}
	w.log = log.With().Str("worker", w.id).Logger()
	log = w.log
	log.Info().Str("version", w.version).Str("data_dir", cfg.DataDir).Strs("pools", cfg.Pools).Msg("starting worker")

	w.metrics = w.newMetrics()
	w.http, err = newHTTPServer(cfg.HTTP.Listen, w.id, w.version, w.ready, w.metrics.Handler())
	if err != nil {
		return w, err
	}
	w.httpDone = make(chan struct{})
	go func() {
		defer close(w.httpDone)
		w.report("http", w.http.Serve())
	}()
	log.Info().Str("addr", w.http.Addr()).Msg("serving http")

	if cfg.NATS.URL == "" {
		w.embedded, err = startEmbedded(cfg.DataDir, cfg.NATS.Listen, w.host, log)
		if err != nil {
			return w, err
		}
		log.Info().Str("url", w.embedded.ClientURL()).Str("store", filepath.Join(cfg.DataDir, "jetstream")).Msg("started embedded nats-server")
	}
	w.nc, err = connectNATS(cfg.NATS, w.embedded, "brr-worker "+w.id, log)
	if err != nil {
		return w, err
	}
	w.ready.nc.Store(w.nc)
	if w.embedded == nil {
		log.Info().Str("url", redactURL(w.nc.ConnectedUrl())).Msg("connected to nats")
	}
	js, err := jetstream.New(w.nc)
	if err != nil {
		return w, fmt.Errorf("jetstream: %w", err)
	}

	ecfg := events.Config{
		Subjects:     brr.Subjects{Prefix: cfg.Prefix},
		Pools:        cfg.Pools,
		Worker:       w.id,
		Host:         w.host,
		Concurrency:  cfg.Concurrency,
		AckWait:      cfg.Jobs.AckWait,
		MaxDeliver:   cfg.Jobs.MaxDeliver,
		DrainTimeout: cfg.Jobs.DrainTimeout,
		LeaseTTL:     cfg.Jobs.LeaseTTL,
		Replicas:     cfg.Streams.Replicas,
		EventsMaxAge: cfg.Streams.EventsMaxAge,
		Replicate:    cfg.Replicate,
	}
	if err := ensureStreams(ctx, js, ecfg, log); err != nil {
		return w, fmt.Errorf("ensure streams: %w", err)
	}

	leases, err := events.NewLeases(ctx, js, ecfg)
	if err != nil {
		return w, fmt.Errorf("open leases: %w", err)
	}
	w.repos, err = openRepos(ctx, cfg, js, leases, log)
	if err != nil {
		return w, err
	}
	engine := &jobs.Engine{
		Repos:        w.repos,
		DefaultRepo:  cfg.DefaultRepo,
		Cache:        w.db,
		Leases:       leases,
		AllowedRoots: cfg.AllowedRoots,
		Host:         w.host,
		Worker:       w.id,
		Replicas:     cfg.Replicate,
		BlobMap:      w.db,
		Retention:    cfg.Retention,
		PruneGrace:   cfg.Prune.Grace,
		ScratchDir:   cfg.ScratchDir(),
		Points:       w.db,
	}
	if err := jobs.ClearScratch(engine.ScratchDir); err != nil {
		return w, err
	}

	// Components run on contexts of their own, detached from ctx: close stops them one
	// by one, consumer first, outbox last, so that no event is lost on the way out.
	base := context.WithoutCancel(ctx)

	w.outbox = events.NewOutbox(js, w.db, log)
	var outboxCtx context.Context
	outboxCtx, w.stopOutbox = context.WithCancel(base)
	w.outboxDone = make(chan struct{})
	go func() {
		defer close(w.outboxDone)
		w.report("outbox", w.outbox.Run(outboxCtx))
	}()

	// The consumer and sweeper add the worker field themselves.
	consumer := events.NewConsumer(js, w.db, engine, w.outbox, ecfg, baseLog)
	consumer.Observe(w.metrics)
	w.consumer.Store(consumer)
	var consumerCtx context.Context
	consumerCtx, w.stopConsumer = context.WithCancel(base)
	w.consumerDone = make(chan struct{})
	go func() {
		defer close(w.consumerDone)
		w.report("consumer", consumer.Run(consumerCtx))
	}()

	var apiCtx context.Context
	apiCtx, w.stopAPI = context.WithCancel(base)
	w.apiDone = make(chan struct{})
	go func() {
		defer close(w.apiDone)
		w.report("api", events.ServeAPI(apiCtx, w.nc, ecfg, engine, log))
	}()
	sweeper := events.NewSweeper(js, w.db, ecfg, baseLog)
	w.sweeperDone = make(chan struct{})
	go func() {
		defer close(w.sweeperDone)
		w.report("sweeper", sweeper.Run(apiCtx))
	}()

	if err := w.watchAndCheck(base, js, engine); err != nil {
		return w, err
	}

	if err := w.startWeb(base, engine); err != nil {
		return w, err
	}

	w.ready.started.Store(true)
	log.Info().Int("concurrency", cfg.Concurrency).Strs("repos", sortedKeys(w.repos)).Msg("worker ready")
	return w, nil
}

// report passes the error of a component that stopped while the worker was not shutting
// down to failed; a clean return at shutdown is not news.
func (w *worker) report(component string, err error) {
	if w.ready.stopping.Load() {
		if err != nil && !errors.Is(err, context.Canceled) {
			w.log.Warn().Err(err).Str("component", component).Msg("component stopped with an error")
		}
		return
	}
	if err == nil {
		err = errors.New("stopped unexpectedly")
	}
	select {
	case w.failed <- fmt.Errorf("%s: %w", component, err):
	default:
	}
}

// close stops the worker in order: stop taking jobs and let running ones drain, stop the
// query service, flush the outbox, then close HTTP, repositories, state and NATS.
func (w *worker) close() error {
	w.closeOnce.Do(func() { w.closeErr = w.doClose() })
	return w.closeErr
}

func (w *worker) doClose() error {
	w.ready.stopping.Store(true)
	var errs []error
	if err := w.stopHealth(); err != nil {
		errs = append(errs, err)
	}
	wait := func(what string, done chan struct{}, d time.Duration) {
		if done == nil {
			return
		}
		select {
		case <-done:
		case <-time.After(d):
			errs = append(errs, fmt.Errorf("%s did not stop within %s", what, d))
		}
	}

	if w.stopConsumer != nil {
		w.log.Info().Dur("drain_timeout", w.cfg.Jobs.DrainTimeout).Msg("stopping consumer; letting running jobs finish")
		w.stopConsumer()
		wait("consumer", w.consumerDone, w.cfg.Jobs.DrainTimeout+10*time.Second)
	}
	if w.stopAPI != nil {
		w.stopAPI()
		wait("query service", w.apiDone, 10*time.Second)
		wait("sweeper", w.sweeperDone, 10*time.Second)
	}
	if w.outbox != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := w.outbox.Flush(ctx); err != nil {
			w.log.Warn().Err(err).Msg("flush outbox; unpublished events stay in state and go out at next start")
		}
		cancel()
	}
	if w.stopOutbox != nil {
		w.stopOutbox()
		wait("outbox", w.outboxDone, 10*time.Second)
	}
	if w.stopWeb != nil {
		w.stopWeb() // ends the live event streams, which would hold up the HTTP shutdown
		wait("web", w.webDone, 5*time.Second)
	}
	if w.http != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := w.http.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("shut down http: %w", err))
		}
		cancel()
		wait("http", w.httpDone, 5*time.Second)
	}
	if err := closeRepos(w.repos); err != nil {
		errs = append(errs, err)
	}
	if w.db != nil {
		if err := w.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close state: %w", err))
		}
	}
	if w.nc != nil {
		if err := w.nc.FlushTimeout(5 * time.Second); err != nil && w.nc.IsConnected() {
			w.log.Warn().Err(err).Msg("flush nats connection")
		}
		w.nc.Close()
	}
	if w.embedded != nil {
		w.embedded.Shutdown()
		w.embedded.WaitForShutdown()
	}
	return errors.Join(errs...)
}

var (
	workerIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,127}$`)
	hostUnsafe      = regexp.MustCompile(`[^A-Za-z0-9_-]+`)
)

// hostName is the host's name, reduced to characters that are safe in ids and subjects.
func hostName() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	h, _, _ = strings.Cut(h, ".")
	h = strings.Trim(hostUnsafe.ReplaceAllString(h, "-"), "-")
	if h == "" {
		return "localhost"
	}
	return h
}

// loadWorkerID returns the id in dataDir/worker-id, creating "<host>-<8 hex>" there on
// first start, so that a restarted worker keeps its id.
func loadWorkerID(dataDir, host string) (string, error) {
	path := filepath.Join(dataDir, "worker-id")
	data, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(data))
		if !workerIDPattern.MatchString(id) {
			return "", fmt.Errorf("worker id in %s is %q: want letters, digits, '-' or '_'; fix or delete the file", path, id)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("read worker id: %w", err)
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("generate worker id: %w", err)
	}
	id := host + "-" + hex.EncodeToString(b[:])
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("write worker id: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return "", fmt.Errorf("write worker id: %w", err)
	}
	return id, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// ensureStreamsFor is how long start-up keeps trying to ensure the streams while
// JetStream is not ready: a cluster that has just (re)started has no meta leader for
// a few seconds and answers JetStream API requests with timeouts.
const ensureStreamsFor = time.Minute

// ensureStreams runs events.EnsureStreams, again with backoff for up to ensureStreamsFor
// while the error says JetStream is not ready yet (a timeout, no responders, "temporarily
// unavailable"); any other error, such as a stream configured differently, is returned
// at once.
func ensureStreams(ctx context.Context, js jetstream.JetStream, cfg events.Config, log zerolog.Logger) error {
	deadline := time.Now().Add(ensureStreamsFor)
	delay := 500 * time.Millisecond
	for {
		err := events.EnsureStreams(ctx, js, cfg)
		if err == nil || ctx.Err() != nil || !jetStreamNotReady(err) || time.Now().Add(delay).After(deadline) {
			return err
		}
		log.Warn().Err(err).Dur("retry_in", delay).Msg("jetstream is not ready; trying again")
		select {
		case <-ctx.Done():
			return err
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// jetStreamNotReady reports whether err is one that JetStream gives while it starts or
// elects a leader.
func jetStreamNotReady(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.Code == 503 || apiErr.ErrorCode == 10008 // JetStream system temporarily unavailable
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoStreamResponse)
}
