package main

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// readiness is what /readyz reports: the worker is ready when its NATS connection is up
// and it has ensured the streams and started consuming.
type readiness struct {
	started  atomic.Bool
	stopping atomic.Bool
	nc       atomic.Pointer[nats.Conn] // nil until NATS is connected
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
	}
	return ""
}

// jobStats is what the metrics endpoint reads from the consumer.
type jobStats struct {
	Done, Failed, Dead, Retried, InFlight float64
}

// httpServer serves the worker's health, readiness, metrics and front page.
type httpServer struct {
	srv *http.Server
	ln  net.Listener
}

// newHTTPServer listens on addr at once, so that an address in use fails start-up, and
// serves once Serve is called.
func newHTTPServer(addr, worker, host, version string, ready *readiness, stats func() jobStats) (*httpServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("http listen on %s: %w (set http.listen, BRR_HTTP_LISTEN or --http to a free address)", addr, err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "brr_worker_info",
			Help:        "Always 1; its labels name the worker and its version.",
			ConstLabels: prometheus.Labels{"worker": worker, "host": host, "version": version},
		}, func() float64 { return 1 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "brr_worker_ready",
			Help: "1 while the worker is ready (/readyz answers 200), else 0.",
		}, func() float64 {
			if ready.reason() == "" {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "brr_jobs_done_total",
			Help: "Jobs this worker finished successfully since it started.",
		}, func() float64 { return stats().Done }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "brr_jobs_failed_total",
			Help: "Jobs that failed for good on this worker (bad request or permanent error) since it started.",
		}, func() float64 { return stats().Failed }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "brr_jobs_dead_total",
			Help: "Jobs that ran out of attempts on this worker since it started.",
		}, func() float64 { return stats().Dead }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "brr_jobs_retried_total",
			Help: "Job attempts on this worker that ended in a transient error and will be retried.",
		}, func() float64 { return stats().Retried }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "brr_jobs_in_flight",
			Help: "Jobs this worker is running now.",
		}, func() float64 { return stats().InFlight }),
	)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "worker": worker, "version": version})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if reason := ready.reason(); reason != "" {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": reason, "worker": worker})
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ready", "worker": worker})
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = indexPage.Execute(w, struct{ Worker, Host, Version string }{worker, host, version})
	})

	return &httpServer{
		ln: ln,
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
		},
	}, nil
}

// Addr is the address the server listens on.
func (s *httpServer) Addr() string { return s.ln.Addr().String() }

// Serve serves until Shutdown; it returns nil after a shutdown.
func (s *httpServer) Serve() error {
	if err := s.srv.Serve(s.ln); err != http.ErrServerClosed {
		return fmt.Errorf("serve http: %w", err)
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

var indexPage = template.Must(template.New("index").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>brr-worker {{.Worker}}</title></head>
<body>
<h1>brr-worker {{.Worker}}</h1>
<p>Host {{.Host}}, version {{.Version}}. This worker runs backup, restore and verify jobs from NATS JetStream.</p>
<ul>
<li><a href="/healthz">/healthz</a>: 200 while the process runs</li>
<li><a href="/readyz">/readyz</a>: 200 when connected to NATS and consuming jobs, else 503 with the reason</li>
<li><a href="/metrics">/metrics</a>: Prometheus metrics</li>
</ul>
</body></html>
`))
