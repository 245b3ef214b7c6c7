package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"maps"
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
	"github.com/brr-dev/brr/internal/health"
	"github.com/brr-dev/brr/internal/jobs"
	"github.com/brr-dev/brr/internal/metrics"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/brr-dev/brr/internal/repo/natsobj"
	"github.com/brr-dev/brr/internal/state"
	"github.com/brr-dev/brr/internal/watch"
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
	_ events.Browser      = (*jobs.Engine)(nil)
	_ jobs.PointIndex     = (*state.DB)(nil)
)

// worker is a running brr-worker: what startWorker opened and started, closed in
// reverse by close (component.go).
type worker struct {
	cfg     Config
	log     zerolog.Logger
	id      string
	host    string
	version string

	ready    *readiness
	http     *httpServer
	store    *storeGuard // the embedded server's store; nil with an external NATS
	db       *state.DB
	nc       *nats.Conn
	repos    *repoManager                    // the repos it serves and refuses
	consumer atomic.Pointer[events.Consumer] // read by the metrics handler
	metrics  *metrics.Metrics
	started  time.Time
	watching atomic.Pointer[[]*watch.Watcher] // the source watches, once started

	components []*component // in the order started
	resources  []resource   // in the order opened

	// failed gets the error of the first component that stops on its own.
	failed    chan error
	closeOnce sync.Once
	closeErr  error
}

// startWorker opens and starts everything in order: state (which locks the data dir),
// HTTP, NATS (embedded or remote), the streams, the repositories, the job engine, the
// dashboard, the outbox, the sweeper and query service, the consumer and the health
// checks. On error it returns what it started so far, for close.
func startWorker(ctx context.Context, cfg Config, version string, log zerolog.Logger) (*worker, error) {
	w := &worker{cfg: cfg, log: log, version: version, ready: &readiness{}, failed: make(chan error, 1), started: time.Now()}
	baseLog := log
	// Components run on contexts of their own, detached from ctx: close stops them one
	// by one, health checks first, HTTP last, so that no event is lost on the way out.
	base := context.WithoutCancel(ctx)

	// Everything the config names is checked before anything is made: a bad API key file
	// must not leave a new repository and key behind.
	if err := preflight(cfg); err != nil {
		return w, err
	}
	// The webhooks' secrets first: a worker that could not sign its notifications stops
	// before it takes any job.
	notifyTargets, err := cfg.notifyTargets()
	if err != nil {
		return w, err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return w, fmt.Errorf("create data dir: %w", err)
	}
	// State first: it locks the data dir, so a second worker on it stops here.
	db, err := openState(filepath.Join(cfg.DataDir, "state.db"), log)
	if err != nil {
		return w, err
	}
	w.db = db
	w.keep("state", db.Close)

	w.host = hostName()
	w.id, err = loadWorkerID(cfg.DataDir, w.host)
	if err != nil {
		return w, err
	}
	w.log = log.With().Str("worker", w.id).Logger()
	log = w.log
	log.Info().Str("version", w.version).Str("data_dir", cfg.DataDir).Strs("pools", cfg.Pools).Msg("starting worker")
	for _, warning := range cfg.rpoWarnings() {
		log.Warn().Msg(warning)
	}

	w.metrics = w.newMetrics()
	w.http, err = newHTTPServer(cfg.HTTP.Listen, w.id, w.version, w.ready, w.metrics.Handler())
	if err != nil {
		return w, err
	}
	w.start(base, component{name: "http", run: w.http.Run, stop: w.http.Shutdown, timeout: 5 * time.Second})
	log.Info().Str("addr", w.http.Addr()).Msg("serving http")

	var embedded *server.Server
	if cfg.NATS.URL == "" {
		embedded, err = startEmbedded(cfg.DataDir, cfg.NATS.Listen, w.host, log)
		if err != nil {
			return w, err
		}
		w.keep("embedded nats-server", shutdownEmbedded(embedded))
		log.Info().Str("url", embedded.ClientURL()).Str("store", filepath.Join(cfg.DataDir, "jetstream")).Msg("started embedded nats-server")
		w.store = newStoreGuard(embedded, filepath.Join(cfg.DataDir, "jetstream"), log)
	}
	w.nc, err = connectNATS(cfg.NATS, embedded, "brr-worker "+w.id, log)
	if err != nil {
		return w, err
	}
	w.keep("nats", closeNATS(w.nc, log))
	w.ready.nc.Store(w.nc)
	if embedded == nil {
		log.Info().Str("url", redactURL(w.nc.ConnectedUrl())).Msg("connected to nats")
	}
	js, err := jetstream.New(w.nc)
	if err != nil {
		return w, fmt.Errorf("jetstream: %w", err)
	}

	ecfg := w.eventsConfig()
	ecfg.Problem = w.store.Problem
	if err := ensureStreams(ctx, js, ecfg, log); err != nil {
		if w.store != nil {
			w.store.check(time.Now())
			if p := w.store.Problem(); p != "" {
				err = fmt.Errorf("%w: %s", err, p)
			}
		}
		return w, fmt.Errorf("ensure streams: %w", err)
	}

	leases, err := events.NewLeases(ctx, js, ecfg)
	if err != nil {
		return w, fmt.Errorf("open leases: %w", err)
	}
	registry, err := events.OpenRegistry(ctx, js, ecfg)
	if err != nil {
		return w, err
	}
	claims := &repoClaims{registry: registry, pools: cfg.Pools, worker: w.id, host: w.host, seed: cfg.Replicate}
	repos, refused, err := openRepos(ctx, cfg, js, leases, claims, log)
	if err != nil {
		return w, err
	}
	for _, ref := range refused {
		w.logRefused(ref)
	}
	sources, err := cfg.engineSources()
	if err != nil {
		return w, err
	}
	engine := w.newEngine(repos, refused, leases)
	engine.Sources = sources
	engine.Log = log
	w.repos = newRepoManager(w, registry, claims, js, leases, repos, refused)
	ecfg.Refused = func() map[string]string { return refusedWhy(w.repos.Refused()) }
	w.repos.engine = engine
	w.keep("repos", w.repos.Close) // with their backends
	// The repos the pool's registry has beyond the worker's config are opened by the
	// "repos" component, started below; a job on one taken before it is open waits.
	if err := w.repos.pending(ctx); err != nil {
		return w, fmt.Errorf("read the pool's repo registry: %w", err)
	}
	if err := jobs.ClearScratch(engine.ScratchDir); err != nil {
		return w, err
	}

	// The dashboard starts before the parts whose events it streams, so that it stops
	// after them; it shows the pool's health as the monitor, started below, sees it.
	hcfg := w.healthConfig()
	monitor := health.NewMonitor(js, hcfg, log)
	engine.KeyUsers = func(repo string) map[string][]string { return keyUsers(monitor.Workers(), repo) }
	if w.store != nil {
		w.store.changed = w.storeChanged(monitor)
		w.ready.store.Store(w.store)
		w.start(base, component{name: "jetstream store", run: w.store.Run, timeout: 10 * time.Second})
	}
	if err := w.startWeb(base, engine, monitor); err != nil {
		return w, err
	}

	outbox := events.NewOutbox(js, w.db, log)
	w.start(base, component{name: "outbox", run: outbox.Run, stop: flushOutbox(outbox, log), timeout: 10 * time.Second})
	// The consumer and sweeper add the worker field themselves.
	sweeper := events.NewSweeper(js, w.db, ecfg, baseLog)
	w.start(base, component{name: "sweeper", run: sweeper.Run, timeout: 10 * time.Second})
	w.start(base, component{name: "repos", run: w.repos.Run, timeout: 10 * time.Second})
	w.start(base, component{name: "query service", run: func(ctx context.Context) error {
		return events.ServeAPI(ctx, w.nc, ecfg, engine, log)
	}, timeout: 10 * time.Second})
	// The consumer starts after the query service and sweeper, so that both serve while
	// it drains at shutdown.
	// The worker's presence tells the others of the pool that a job it started is still
	// its own when they get it again (its ack or InProgress was lost).
	w.start(base, component{name: "presence", run: leases.KeepPresence, timeout: 10 * time.Second})
	w.start(base, component{name: "watch", run: w.watchSources(leases), timeout: 10 * time.Second})
	consumer := events.NewConsumer(js, w.db, floorGate{engine}, outbox, ecfg, baseLog)
	consumer.Observe(w.metrics)
	consumer.UsePresence(leases)
	w.consumer.Store(consumer)
	w.start(base, component{name: "consumer", run: consumer.Run, stop: func(context.Context) error {
		log.Info().Dur("drain_timeout", cfg.Jobs.DrainTimeout).Msg("stopping consumer; letting running jobs finish")
		return nil
	}, timeout: cfg.Jobs.DrainTimeout + 10*time.Second})

	if err := w.startNotify(base, js, notifyTargets); err != nil {
		return w, err
	}
	if err := w.watchAndCheck(base, js, engine, hcfg, monitor); err != nil {
		return w, err
	}

	w.ready.started.Store(true)
	ready := log.Info().Int("concurrency", cfg.Concurrency).Strs("repos", engine.RepoNames())
	if refused := w.repos.Refused(); len(refused) > 0 {
		ready = ready.Strs("refused_repos", sortedKeys(refusedWhy(refused)))
	}
	ready.Msg("worker ready")
	return w, nil
}

// logRefused logs a repo the worker refuses, with what the pool registered and the fix;
// the same text is in /readyz, the heartbeats and the repo_registry health check.
func (w *worker) logRefused(ref brr.RefusedRepo) {
	reg := ref.Registered
	w.log.Error().Str("repo", ref.Repo).Str("pool", ref.Pool).Str("id", ref.ID).Str("location", ref.Location).
		Str("registered_id", reg.ID).Str("registered_location", reg.Location).Str("registered_by", reg.Worker).
		Str("registered_host", reg.Host).Time("registered_at", reg.Time).Msg(ref.Message)
}

// refusedWhy is why each of refused is refused, by repo name.
func refusedWhy(refused []brr.RefusedRepo) map[string]string {
	if len(refused) == 0 {
		return nil
	}
	why := make(map[string]string, len(refused))
	for _, ref := range refused {
		why[ref.Repo] = ref.Message
	}
	return why
}

// eventsConfig is the worker's config for the events package.
func (w *worker) eventsConfig() events.Config {
	cfg := w.cfg
	return events.Config{
		Subjects:       brr.Subjects{Prefix: cfg.Prefix},
		Pools:          cfg.Pools,
		Worker:         w.id,
		Host:           w.host,
		Concurrency:    cfg.Concurrency,
		AckWait:        cfg.Jobs.AckWait,
		MaxDeliver:     cfg.Jobs.MaxDeliver,
		DrainTimeout:   cfg.Jobs.DrainTimeout,
		LeaseTTL:       cfg.Jobs.LeaseTTL,
		StreamReplicas: cfg.Streams.Replicas,
		EventsMaxAge:   cfg.Streams.EventsMaxAge,
	}
}

// newEngine returns the job engine on the worker's repositories and state.
func (w *worker) newEngine(repos map[string]*repo.Repository, refused []brr.RefusedRepo, leases jobs.Leaser) *jobs.Engine {
	cfg := w.cfg
	return &jobs.Engine{
		Repos:        maps.Clone(repos),
		DefaultRepo:  cfg.DefaultRepo,
		Cache:        w.db,
		Leases:       leases,
		AllowedRoots: cfg.AllowedRoots,
		Host:         w.host,
		Worker:       w.id,
		ReplicateTo:  cfg.Replicate,
		BlobMap:      w.db,
		Retention:    cfg.Retention,
		PruneGrace:   cfg.Prune.Grace,
		ScratchDir:   cfg.ScratchDir(),
		KeyDir:       filepath.Join(cfg.DataDir, "keys"),
		Points:       w.db,
		Refused:      refusedWhy(refused),
	}
}

// flushOutbox is the outbox's stop: it publishes what the outbox holds, for as long as
// ctx allows; what it cannot publish stays in state and goes out at the next start.
func flushOutbox(outbox *events.Outbox, log zerolog.Logger) func(context.Context) error {
	return func(ctx context.Context) error {
		if err := outbox.Flush(ctx); err != nil {
			log.Warn().Err(err).Msg("flush outbox; unpublished events stay in state and go out at next start")
		}
		return nil
	}
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

// openState opens the state database. One that is damaged (truncated by a full disk, cut
// by a bad copy) is moved aside, kept for inspection, and replaced by an empty one: the
// state is rebuildable (the file cache refills at the next backups, finished jobs are
// known from BRR_RESULTS), and a worker that does not start protects nothing.
func openState(path string, log zerolog.Logger) (*state.DB, error) {
	db, err := state.Open(path, state.Options{})
	if errors.Is(err, state.ErrDamaged) {
		aside, merr := state.MoveAside(path)
		if merr != nil {
			return nil, fmt.Errorf("%w; and %w: stop the worker, move %s away by hand and start it again", err, merr, path)
		}
		log.Error().Str("moved_to", aside).Msgf("%v: moved it aside and starting with an empty one; the next backups read every file again, events it had not published are lost", err)
		db, err = state.Open(path, state.Options{})
	}
	if err != nil {
		return nil, fmt.Errorf("open state: %w", err)
	}
	return db, nil
}
