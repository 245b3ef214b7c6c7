package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/notify"
)

// NotifyConfig is one webhook of the notify: list (docs/operations.md, Notifications).
type NotifyConfig struct {
	// Name names the target's durable consumer; empty: a hash of URL.
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Events are subject filters of the event stream, such as brr.events.job.*.dead.
	Events []string `yaml:"events"`
	// MinSeverity is info (default), warning or critical.
	MinSeverity string `yaml:"min_severity"`
	// Shape is brr (the event's JSON, default), slack or ntfy.
	Shape string `yaml:"shape"`
	// SecretFile holds the key that signs each request (X-Brr-Signature).
	SecretFile string        `yaml:"secret_file"`
	Timeout    time.Duration `yaml:"timeout"`
	MaxAge     time.Duration `yaml:"max_age"`
	Queue      int           `yaml:"queue"`
}

// validateNotify checks the notify: list; the secret files are read at start
// (notifyTargets).
func (c *Config) validateNotify() error {
	var p problems
	names := map[string]int{}
	for i, n := range c.Notify {
		key := fmt.Sprintf("notify[%d]", i)
		if n.URL == "" {
			p.bad("%s.url: set the URL to post to, such as https://hooks.example.com/brr", key)
		} else if err := notify.ValidateURL(n.URL); err != nil {
			p.bad("%s.url: %v", key, err)
		}
		name := n.Name
		if name == "" {
			name = notify.DefaultName(n.URL)
		} else if err := notify.ValidateName(name); err != nil {
			p.bad("%s.name: %v", key, err)
		}
		if j, dup := names[name]; dup {
			p.bad("%s: notify[%d] has the same name (or URL, without names); give each target its own name", key, j)
		}
		names[name] = i
		if err := notify.ValidateEvents(brr.Subjects{Prefix: c.Prefix}, n.Events); err != nil {
			for _, e := range unjoin(err) {
				p.bad("%s.events: %v", key, e)
			}
		}
		if _, err := notify.ParseSeverity(n.MinSeverity); err != nil {
			p.bad("%s.min_severity: %v", key, err)
		}
		if _, err := notify.ParseShape(n.Shape); err != nil {
			p.bad("%s.shape: %v", key, err)
		}
		if n.SecretFile != "" && !filepath.IsAbs(n.SecretFile) {
			p.bad("%s.secret_file: must be an absolute path, got %q", key, n.SecretFile)
		}
		if n.Timeout < 0 || n.MaxAge < 0 || n.Queue < 0 {
			p.bad("%s: timeout, max_age and queue must not be negative (0 for the defaults: %s, %s, %d)", key, notify.DefaultTimeout, notify.DefaultMaxAge, notify.DefaultQueue)
		}
	}
	return p.err()
}

// redactNotify returns a copy of targets with each URL cut to its scheme and host: a
// webhook's token is usually in its path (Slack, ntfy topics).
func redactNotify(targets []NotifyConfig) []NotifyConfig {
	if targets == nil {
		return nil
	}
	out := slices.Clone(targets)
	for i := range out {
		out[i].URL = notify.Redact(out[i].URL)
	}
	return out
}

// unjoin splits an errors.Join into its errors.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// notifyTargets turns the notify: list into targets, reading each secret file: a target
// that cannot sign is refused at start, not found out at the first notification.
func (c *Config) notifyTargets() ([]notify.Target, error) {
	var targets []notify.Target
	for i, n := range c.Notify {
		sev, _ := notify.ParseSeverity(n.MinSeverity)
		shape, _ := notify.ParseShape(n.Shape)
		t := notify.Target{Name: n.Name, URL: n.URL, Events: n.Events, MinSeverity: sev, Shape: shape,
			Timeout: n.Timeout, MaxAge: n.MaxAge, Queue: n.Queue}
		if n.SecretFile != "" {
			secret, err := readSecret(fmt.Sprintf("notify[%d].secret_file", i), n.SecretFile)
			if err != nil {
				return nil, err
			}
			t.Secret = secret
		}
		targets = append(targets, t)
	}
	return targets, nil
}

// readSecret reads the key in the file at path, named key in errors.
func readSecret(key, path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("%s %s does not exist; put the webhook's shared secret in it, e.g. (umask 077; openssl rand -hex 32 > %s)", key, path, path)
	case err != nil:
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	secret := strings.TrimSpace(string(data))
	if secret == "" {
		return nil, fmt.Errorf("%s %s is empty; put the webhook's shared secret in it, e.g. openssl rand -hex 32", key, path)
	}
	return []byte(secret), nil
}

// startNotify starts the notifier of targets, if any, and counts what it does in the
// worker's metrics.
func (w *worker) startNotify(ctx context.Context, js jetstream.JetStream, targets []notify.Target) error {
	if len(targets) == 0 {
		return nil
	}
	n, err := notify.New(js, notify.Config{
		Subjects: brr.Subjects{Prefix: w.cfg.Prefix},
		Targets:  targets,
		// A notification whose worker died goes to another as soon as a job would.
		AckWait:  w.cfg.Jobs.AckWait,
		Inactive: w.cfg.Streams.EventsMaxAge,
	}, w.log)
	if err != nil {
		return err
	}
	stat := func(f func(notify.Stats) int64) func() float64 {
		return func() float64 { return float64(f(n.Stats())) }
	}
	w.metrics.Registry().MustRegister(
		notifyCounter("sent", stat(func(s notify.Stats) int64 { return s.Sent })),
		notifyCounter("dropped", stat(func(s notify.Stats) int64 { return s.Dropped })),
		notifyCounter("skipped", stat(func(s notify.Stats) int64 { return s.Skipped })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "brr_notification_failures_total",
			Help: "Attempts to post a notification that failed (an error, a timeout, a non-2xx answer); each is retried with backoff.",
		}, stat(func(s notify.Stats) int64 { return s.Failures })),
	)
	w.start(ctx, component{name: "notify", run: n.Run, timeout: 15 * time.Second})
	return nil
}

func notifyCounter(result string, f func() float64) prometheus.CounterFunc {
	return prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name:        "brr_notifications_total",
		Help:        "Notifications by result: sent, dropped or skipped.",
		ConstLabels: prometheus.Labels{"result": result},
	}, f)
}
