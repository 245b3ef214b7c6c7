// Command brr-worker is the brr daemon: it takes backup, restore and verify jobs from NATS
// JetStream, runs them against the repositories of its config, keeps its local state in
// bbolt and publishes events. This package is the only place that reads flags and the
// environment; it wires the internal packages together in plain code, read top to bottom
// in Main.Run, and owns start-up and shutdown.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// version is the build's version, set by the Makefile with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	zerolog.TimeFieldFormat = time.RFC3339Nano
	defer startTrace(os.Getenv("BRR_TRACE"))()
	defer startCPUProfile(os.Getenv("BRR_CPUPROFILE"))()
	m := NewMain()
	env := Environment{Getenv: os.Getenv, UID: os.Getuid()}
	if err := m.ParseFlags(os.Args[1:], env); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "brr-worker: %v\n", err)
		fmt.Fprintln(os.Stderr, "Run 'brr-worker --help' for the flags, variables and config keys.")
		os.Exit(2)
	}

	if m.Command == "version" {
		fmt.Fprintf(os.Stdout, "brr-worker %s\n", m.Version)
		return
	}

	if m.Command == "config" {
		if err := preflight(m.Config); err != nil {
			fmt.Fprintf(os.Stderr, "brr-worker: %v\n", err)
			os.Exit(2)
		}
		out, err := m.Config.YAML()
		if err != nil {
			fmt.Fprintf(os.Stderr, "brr-worker: %v\n", err)
			os.Exit(1)
		}
		os.Stdout.Write(out)
		return
	}

	if err := m.Run(ctx); err != nil {
		if ctx.Err() != nil && errors.Is(err, context.Canceled) {
			m.Log.Info().Msg("signal received while starting; stopped")
			m.Close()
			return
		}
		m.Log.Error().Err(err).Msg("start worker")
		m.Close()
		os.Exit(1)
	}

	var failed error
	select {
	case <-ctx.Done():
		m.Log.Info().Msg("signal received; shutting down")
	case failed = <-m.Failed():
		m.Log.Error().Err(failed).Msg("worker component stopped")
	}
	stop() // a second signal kills the process at once
	if err := m.Close(); err != nil {
		m.Log.Error().Err(err).Msg("shut down")
		os.Exit(1)
	}
	if failed != nil {
		os.Exit(1)
	}
	m.Log.Info().Msg("stopped")
}

// Main is the worker program: its configuration and, once Run has started it, the
// components it owns and closes in order.
type Main struct {
	Config Config
	// ConfigPath is the YAML file read, if any.
	ConfigPath string
	// Command is "" to run the worker, "config" to print the effective configuration, or
	// "version" to print the version.
	Command string
	// Version is the build's version, logged at start and reported by /healthz and the
	// brr_worker_info metric.
	Version string
	// Log is where the worker logs; ParseFlags sets it up from the config.
	Log zerolog.Logger
	// LogOutput is where logs go; stderr by default.
	LogOutput io.Writer

	w *worker
}

// NewMain returns a Main with the default configuration, logging to stderr.
func NewMain() *Main {
	return &Main{Config: DefaultConfig(), Version: version, LogOutput: os.Stderr, Log: zerolog.New(os.Stderr).With().Timestamp().Logger()}
}

// ParseFlags reads the configuration: the YAML file named by --config (or BRR_CONFIG),
// then BRR_* environment variables, then flags; later sources win. It validates the
// result and sets up logging. --help prints the usage and returns pflag.ErrHelp;
// --version sets Command to "version" and reads no configuration, so that it works
// whatever the config holds.
func (m *Main) ParseFlags(args []string, env Environment) error {
	fs := pflag.NewFlagSet("brr-worker", pflag.ContinueOnError)
	fs.SortFlags = false
	fs.SetOutput(io.Discard)
	var (
		configPath   = fs.String("config", "", "YAML config file (env BRR_CONFIG)")
		dataDir      = fs.String("data-dir", "", "state, embedded JetStream store and local repo (data_dir, BRR_DATA_DIR)")
		natsURL      = fs.String("nats", "", "NATS server URL; empty starts an embedded server (nats.url, BRR_NATS_URL)")
		listen       = fs.String("listen", "", "embedded server's client address (nats.listen, BRR_NATS_LISTEN; default 127.0.0.1:4222)")
		httpListen   = fs.String("http", "", "HTTP address for /healthz, /readyz, /metrics, the dashboard and /api/v1 (http.listen, BRR_HTTP_LISTEN; default 127.0.0.1:8080)")
		pools        = fs.StringArray("pool", nil, "pool to take jobs from; repeat for more (pools, BRR_POOLS; default default)")
		concurrency  = fs.Int("concurrency", 0, "jobs run at once, 1-256 (concurrency, BRR_CONCURRENCY; default 4)")
		allowedRoots = fs.StringArray("allowed-root", nil, "directory jobs may read or write; repeat for more (allowed_roots, BRR_ALLOWED_ROOTS)")
		logLevel     = fs.String("log-level", "", "trace, debug, info, warn or error (log.level, BRR_LOG_LEVEL; default info)")
		logFormat    = fs.String("log-format", "", "auto, json or console (log.format, BRR_LOG_FORMAT; default auto)")
		gcPercent    = fs.Int("gc-percent", 0, "heap growth over live memory that triggers a collection, 10-1000 (gc_percent, BRR_GC_PERCENT; default 25)")
		memoryLimit  = fs.String("memory-limit", "", "soft memory limit of the Go runtime, e.g. 512MiB, or off (memory_limit, BRR_MEMORY_LIMIT; default off)")
	)
	fs.BoolP("help", "h", false, "show this help")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(os.Stdout, usage(fs))
		}
		return err
	}
	if help, _ := fs.GetBool("help"); help {
		fmt.Fprint(os.Stdout, usage(fs))
		return pflag.ErrHelp
	}
	if *showVersion {
		m.Command = "version"
		return nil
	}
	switch rest := fs.Args(); {
	case len(rest) == 0:
	case len(rest) == 1 && rest[0] == "config":
		m.Command = "config"
	case len(rest) == 1 && rest[0] == "help":
		fmt.Fprint(os.Stdout, usage(fs))
		return pflag.ErrHelp
	default:
		return fmt.Errorf("unknown command %q (commands: config)", strings.Join(rest, " "))
	}

	cfg := DefaultConfig()
	m.ConfigPath = *configPath
	if m.ConfigPath == "" {
		m.ConfigPath = env.Getenv("BRR_CONFIG")
	}
	if m.ConfigPath != "" {
		if err := readConfigFile(m.ConfigPath, &cfg); err != nil {
			return err
		}
	}
	if err := applyEnv(&cfg, env.Getenv); err != nil {
		return err
	}
	set := func(name string, dst *string, v string) {
		if fs.Changed(name) {
			*dst = v
		}
	}
	set("data-dir", &cfg.DataDir, *dataDir)
	set("nats", &cfg.NATS.URL, *natsURL)
	set("listen", &cfg.NATS.Listen, *listen)
	set("http", &cfg.HTTP.Listen, *httpListen)
	set("log-level", &cfg.Log.Level, *logLevel)
	set("log-format", &cfg.Log.Format, *logFormat)
	if fs.Changed("pool") {
		cfg.Pools = splitAll(*pools)
	}
	if fs.Changed("allowed-root") {
		cfg.AllowedRoots = splitAll(*allowedRoots)
	}
	if fs.Changed("concurrency") {
		cfg.Concurrency = *concurrency
	}
	if fs.Changed("gc-percent") {
		cfg.GCPercent = *gcPercent
	}
	if fs.Changed("memory-limit") {
		n, err := ParseByteSize(*memoryLimit)
		if err != nil {
			return fmt.Errorf("--memory-limit: %w", err)
		}
		cfg.MemoryLimit = n
	}
	if err := cfg.finish(env); err != nil {
		return err
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("invalid configuration:\n%w", err)
	}
	m.Config = cfg
	m.Log = newLogger(cfg.Log, m.LogOutput)
	return nil
}

// splitAll flattens repeated flags that may each hold a comma-separated list.
func splitAll(vs []string) []string {
	var out []string
	for _, v := range vs {
		out = append(out, splitList(v)...)
	}
	return out
}

// newLogger returns a zerolog logger at cfg's level: JSON, or console when asked for or
// (format auto) when the output is a terminal.
func newLogger(cfg LogConfig, out io.Writer) zerolog.Logger {
	console := cfg.Format == "console"
	if cfg.Format == "auto" {
		if f, ok := out.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			console = true
		}
	}
	if console {
		out = zerolog.ConsoleWriter{Out: out, TimeFormat: "15:04:05.000"}
	}
	level, err := zerolog.ParseLevel(cfg.Level)
	if err != nil {
		level = zerolog.InfoLevel
	}
	return zerolog.New(out).Level(level).With().Timestamp().Logger()
}

// Run starts the worker and returns once it is running (or failed to start). Components
// that stop on their own later report on Failed; Close stops everything.
func (m *Main) Run(ctx context.Context) error {
	percent, limit := applyMemorySettings(m.Config.GCPercent, m.Config.MemoryLimit)
	ev := m.Log.Debug().Int("gc_percent", percent)
	if limit < math.MaxInt64 {
		ev = ev.Str("memory_limit", ByteSize(limit).String())
	}
	ev.Msg("go runtime memory settings")
	w, err := startWorker(ctx, m.Config, m.Version, m.Log)
	m.w = w
	if err != nil {
		return err
	}
	m.Log = w.log
	return nil
}

// Failed delivers the error of the first component that stopped on its own.
func (m *Main) Failed() <-chan error {
	if m.w == nil {
		return nil
	}
	return m.w.failed
}

// Close stops the worker: no more jobs are taken, running ones get jobs.drain_timeout to
// finish, pending events are flushed, and everything is closed in reverse order.
func (m *Main) Close() error {
	if m.w == nil {
		return nil
	}
	return m.w.close()
}

func usage(fs *pflag.FlagSet) string {
	return `brr-worker runs brr jobs (backup, restore, verify, replicate, prune, checkpoint,
drill, ping) from NATS JetStream.

Usage:
  brr-worker [flags]            run the worker until SIGTERM or SIGINT
  brr-worker [flags] config     print the effective configuration (secrets redacted)
  brr-worker --version          print the version

With no NATS URL the worker starts an embedded NATS server with JetStream (store under
the data dir) that the brr CLI and apps connect to. On first start with no repos
configured it creates repo "local" under the data dir, with a generated key file that
you must back up.

Configuration comes from a YAML file (--config), then BRR_* environment variables, then
flags; later sources win. Run 'brr-worker config' to see the result.

Flags:
` + fs.FlagUsages() + `
Environment:
  BRR_CONFIG BRR_DATA_DIR BRR_NATS_URL BRR_NATS_LISTEN BRR_NATS_CREDS BRR_NATS_USER
  BRR_NATS_PASSWORD BRR_NATS_TOKEN BRR_HTTP_LISTEN BRR_HTTP_API_KEY_FILE BRR_HTTP_PROTECT_READS
  BRR_POOLS (comma-separated) BRR_CONCURRENCY BRR_ALLOWED_ROOTS (comma-separated)
  BRR_DEFAULT_REPO BRR_HEALTH_INTERVAL BRR_PRUNE_GRACE BRR_LOG_LEVEL BRR_LOG_FORMAT BRR_PREFIX
  BRR_GC_PERCENT BRR_MEMORY_LIMIT (GOGC and GOMEMLIMIT replace their defaults when set)

Config file keys (YAML):
  data_dir: /var/lib/brr          # default: /var/lib/brr as root, else ~/.local/share/brr
  nats: {url: "", listen: 127.0.0.1:4222, creds: "", user: "", password: "", token: "",
         tls: {ca: "", cert: "", key: ""}}
  http: {listen: 127.0.0.1:8080, api_key_file: "", protect_reads: false}
  pools: [default]
  concurrency: 4
  allowed_roots: []               # empty: any absolute path; set it in production
  repos:
    local:   {url: "file:///var/lib/brr/repo", key_file: /var/lib/brr/local.key}
    offsite: {url: "nats://brr-offsite", password_env: BRR_OFFSITE_PASSWORD}
  default_repo: local
  replicate: {local: [offsite]}    # after a snapshot is committed in local, copy it to offsite
  retention:                       # what prune keeps, per repo (a prune job may override it)
    local:   {keep_last: 7, keep_daily: 14, tags: {db: {keep_daily: 30}}}
    offsite: {keep_monthly: 24}
  prune: {grace: 1h}               # condemned data is deleted by a prune at least this much later
  health: {interval: 15s, rpo: {"/srv/app": 26h}, summary_every: 4, canary: true,
           canary_warn: 5s, lag_warn: 15m, lag_critical: 1h, verify_max_age: 192h,
           disk_warn: 10, disk_critical: 5}
  prefix: brr
  log: {level: info, format: auto}
  jobs: {ack_wait: 5s, max_deliver: 10, drain_timeout: 30s, lease_ttl: 5s}
  streams: {replicas: 1, events_max_age: 168h}
  gc_percent: 25                  # GOGC: heap growth that triggers a collection, 10-1000
  memory_limit: off               # GOMEMLIMIT: soft limit of the Go runtime's memory

A second, independent worker on the same machine needs its own data dir and ports:
  brr-worker --data-dir /tmp/w2 --listen 127.0.0.1:4223 --http 127.0.0.1:8081
`
}
