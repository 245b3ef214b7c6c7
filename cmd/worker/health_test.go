package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// scrape reads p's /metrics and parses it as Prometheus would.
func (p *proc) scrape(t *testing.T) map[string]*dto.MetricFamily {
	t.Helper()
	code, body, err := get("http://" + p.httpAddr + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics = %d, %v", code, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return families
}

// sample returns the metric of family name whose labels include want, or nil.
func sample(families map[string]*dto.MetricFamily, name string, want map[string]string) *dto.Metric {
	f := families[name]
	if f == nil {
		return nil
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range want {
			if have[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return m.GetUntyped().GetValue()
}

// TestMetricsAfterRealJobs runs backup, restore, verify, ping and a failing job through a
// real brr-worker and checks that /metrics has every brr_ metric with its type, and the
// figures those jobs imply.
func TestMetricsAfterRealJobs(t *testing.T) {
	src := t.TempDir()
	content := []byte(strings.Repeat("compressible text ", 4096))
	if err := os.WriteFile(filepath.Join(src, "a.txt"), content, 0o600); err != nil {
		t.Fatal(err)
	}
	// No canary: its pings would count, and at this interval a slow one turns critical.
	cfg := writeConfig(t, fmt.Sprintf("health: {interval: 300ms, canary: false, rpo: {%q: 1h}}\n", src))
	p := startWorkerProc(t, "", "--config", cfg)
	p.waitReady(t)
	c := p.client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(args brr.JobArgs) (*brr.Event, error) {
		t.Helper()
		res, err := c.Publish(ctx, args)
		if err != nil {
			t.Fatalf("publish %s: %v", args.Kind(), err)
		}
		return c.Wait(ctx, res.ID, nil)
	}
	must := func(args brr.JobArgs) *brr.Event {
		t.Helper()
		ev, err := run(args)
		if err != nil {
			t.Fatalf("%s: %v", args.Kind(), err)
		}
		return ev
	}
	must(brr.BackupJob{Path: src})
	must(brr.BackupJob{Path: src}) // unchanged: nothing new stored
	must(brr.RestoreJob{Snapshot: "latest", Target: t.TempDir()})
	must(brr.VerifyJob{})
	must(brr.PingJob{})
	if _, err := run(brr.BackupJob{Path: filepath.Join(src, "missing")}); !errors.Is(err, brr.ErrJobFailed) {
		t.Fatalf("backup of a missing path: %v, want it to fail", err)
	}

	// The pool's figures come with the next turn of the checks and the next heartbeat.
	var families map[string]*dto.MetricFamily
	appeared := testkit.WaitFor(20*time.Second, func() bool {
		families = p.scrape(t)
		// The dead letter and the events reach the stream through the outbox, a moment
		// after the job's end: wait for a turn that saw them.
		snaps := sample(families, "brr_snapshots", map[string]string{"source": src})
		dlq := sample(families, "brr_health_status", map[string]string{"check": "dlq"})
		repo := sample(families, "brr_health_status", map[string]string{"check": "repository"})
		dead := sample(families, "brr_dlq_messages", nil) // published after the failed event
		return snaps != nil && value(snaps) == 2 && dlq != nil && value(dlq) == 1 && repo != nil && value(repo) == 0 &&
			dead != nil && value(dead) == 1 && sample(families, "brr_heartbeat_age_seconds", nil) != nil
	})
	if !appeared {
		t.Fatalf("pool metrics did not appear in 20s; metrics: %v", names(families))
	}

	counter, gauge, histogram := dto.MetricType_COUNTER, dto.MetricType_GAUGE, dto.MetricType_HISTOGRAM
	types := map[string]dto.MetricType{
		"brr_worker_info": gauge, "brr_worker_ready": gauge,
		"brr_jobs_total": counter, "brr_job_duration_seconds": histogram, "brr_jobs_in_flight": gauge, "brr_jobs_running": gauge,
		"brr_jobs_done_total": counter, "brr_jobs_failed_total": counter, "brr_jobs_dead_total": counter, "brr_jobs_retried_total": counter,
		"brr_backup_read_bytes_total": counter, "brr_backup_stored_bytes_total": counter, "brr_backup_deduplicated_bytes_total": counter,
		"brr_backup_dedup_ratio": gauge, "brr_repo_compression_ratio": gauge, "brr_repo_stored_bytes": gauge,
		"brr_repo_raw_bytes_added_total": counter, "brr_repo_stored_bytes_added_total": counter,
		"brr_restore_bytes_total": counter, "brr_dlq_messages": gauge, "brr_outbox_messages": gauge,
		"brr_nats_connected": gauge, "brr_nats_reconnects_total": counter,
		"brr_consumer_pending": gauge, "brr_consumer_ack_pending": gauge, "brr_consumer_redelivered": gauge,
		"brr_snapshots": gauge, "brr_snapshot_newest_age_seconds": gauge, "brr_heartbeat_age_seconds": gauge,
		"brr_workers": gauge, "brr_health_status": gauge, "brr_health_check_runs_total": counter,
	}
	for name, want := range types {
		f := families[name]
		if f == nil {
			t.Errorf("metric %s missing", name)
			continue
		}
		if f.GetType() != want {
			t.Errorf("metric %s has type %s, want %s", name, f.GetType(), want)
		}
	}
	// Present once something of theirs happened: none here.
	later := []string{"brr_lease_waits_total", "brr_verify_failures_total", "brr_replication_lag_seconds", "brr_replication_lag_snapshots",
		"brr_notifications_total", "brr_notification_failures_total"} // with notify: configured (TestNotifyWorkers)
	for _, name := range later {
		if families[name] != nil {
			t.Errorf("metric %s present with no such event: %v", name, families[name])
		}
	}
	// The Grafana dashboard and the alert rules use only metrics that exist.
	for _, file := range []string{"deploy/grafana/brr.json", "deploy/prometheus/alerts.yml"} {
		data, err := os.ReadFile("../../" + file)
		if err != nil {
			t.Fatal(err)
		}
		for _, name := range regexp.MustCompile(`\bbrr_[a-z_]+`).FindAllString(string(data), -1) {
			name = strings.TrimSuffix(name, "_bucket")
			if _, ok := types[name]; !ok && !slices.Contains(later, name) {
				t.Errorf("%s uses %s, which the worker does not export", file, name)
			}
		}
	}

	for _, tt := range []struct {
		name   string
		labels map[string]string
		check  func(float64) bool
		want   string
	}{
		{"brr_jobs_total", map[string]string{"kind": "backup", "status": "succeeded"}, eq(2), "2"},
		{"brr_jobs_total", map[string]string{"kind": "backup", "status": "failed"}, eq(1), "1"},
		{"brr_jobs_total", map[string]string{"kind": "restore", "status": "succeeded"}, eq(1), "1"},
		{"brr_jobs_total", map[string]string{"kind": "verify", "status": "succeeded"}, eq(1), "1"},
		{"brr_jobs_total", map[string]string{"kind": "ping", "status": "succeeded"}, eq(1), "1"},
		{"brr_jobs_failed_total", nil, eq(1), "1"},
		{"brr_backup_read_bytes_total", map[string]string{"repo": "local"}, eq(float64(len(content))), "the file's size, read once"},
		{"brr_backup_stored_bytes_total", map[string]string{"repo": "local"}, between(1, float64(len(content))), "compressed below the file's size"},
		{"brr_repo_compression_ratio", map[string]string{"repo": "local"}, atLeast(2), "> 2 for repeated text"},
		{"brr_restore_bytes_total", map[string]string{"repo": "local"}, eq(float64(len(content))), "the file's size"},
		{"brr_dlq_messages", nil, eq(1), "1 (the failed backup)"},
		{"brr_nats_connected", nil, eq(1), "1"},
		{"brr_worker_ready", nil, eq(1), "1"},
		{"brr_workers", map[string]string{"state": "live"}, eq(1), "1"},
		{"brr_snapshots", map[string]string{"repo": "local", "source": src}, eq(2), "2"},
		{"brr_snapshot_newest_age_seconds", map[string]string{"source": src}, between(0, 60), "under a minute"},
		{"brr_health_status", map[string]string{"check": "rpo"}, eq(0), "0 (ok: backed up just now)"},
		{"brr_health_status", map[string]string{"check": "dlq"}, eq(1), "1 (warn: a dead letter)"},
		{"brr_heartbeat_age_seconds", map[string]string{"worker": p.workerID(t)}, between(0, 10), "a few intervals at most"},
	} {
		m := sample(families, tt.name, tt.labels)
		if m == nil {
			t.Errorf("%s%v missing", tt.name, tt.labels)
			continue
		}
		if v := value(m); !tt.check(v) {
			t.Errorf("%s%v = %g, want %s", tt.name, tt.labels, v, tt.want)
		}
	}
	if h := sample(families, "brr_job_duration_seconds", map[string]string{"kind": "backup"}).GetHistogram(); h.GetSampleCount() != 3 {
		t.Errorf("brr_job_duration_seconds{kind=backup} counts %d, want 3", h.GetSampleCount())
	}

	// /readyz is about this worker; the pool's health is a field of it.
	code, body, err := get("http://" + p.httpAddr + "/readyz")
	var ready map[string]string
	if err != nil || code != http.StatusOK || json.Unmarshal([]byte(body), &ready) != nil || (ready["health"] != "warn" && ready["health"] != "critical") {
		t.Fatalf("/readyz = %d %s %v, want 200 with health warn (a dead letter), or critical (should this machine's disk be nearly full)", code, body, err)
	}
}

func eq(want float64) func(float64) bool { return func(v float64) bool { return v == want } }
func atLeast(lo float64) func(float64) bool {
	return func(v float64) bool { return v >= lo }
}
func between(lo, hi float64) func(float64) bool {
	return func(v float64) bool { return v >= lo && v <= hi }
}

func names(families map[string]*dto.MetricFamily) []string {
	var out []string
	for n := range families {
		if strings.HasPrefix(n, "brr_") {
			out = append(out, n)
		}
	}
	return out
}

func TestHealthConfig(t *testing.T) {
	file := writeConfig(t, `
health:
  interval: 5s
  summary_every: 2
  canary: false
  canary_warn: 2s
  lag_warn: 5m
  lag_critical: 30m
  verify_max_age: 48h
  disk_warn: 20
  disk_critical: 8
`)
	m, err := parse(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	want := HealthConfig{Interval: 5 * time.Second, SummaryEvery: 2, CanaryWarn: 2 * time.Second, LagWarn: 5 * time.Minute,
		LagCritical: 30 * time.Minute, VerifyMaxAge: 48 * time.Hour, DiskWarn: 20, DiskCritical: 8}
	if got := m.Config.Health; got.Interval != want.Interval || got.SummaryEvery != want.SummaryEvery || got.Canary || got.CanaryWarn != want.CanaryWarn ||
		got.LagWarn != want.LagWarn || got.LagCritical != want.LagCritical || got.VerifyMaxAge != want.VerifyMaxAge ||
		got.DiskWarn != want.DiskWarn || got.DiskCritical != want.DiskCritical {
		t.Fatalf("health = %+v, want %+v", got, want)
	}
	if m, err := parse(t, nil, nil); err != nil || !m.Config.Health.Canary || m.Config.Health.SummaryEvery != 4 {
		t.Fatalf("defaults: %+v %v, want the canary on and a summary every 4 turns", m.Config.Health, err)
	}

	for _, tt := range []struct{ yaml, want string }{
		{"health: {lag_warn: 2h, lag_critical: 1h}", "health.lag_critical (1h0m0s) must not be shorter than health.lag_warn (2h0m0s)"},
		{"health: {disk_warn: 5, disk_critical: 10}", "health.disk_critical (10%) must not be above health.disk_warn (5%)"},
		{"health: {disk_warn: 120}", "must be percentages 0-100"},
		{"health: {summary_every: 0}", "health.summary_every: must be 1 or more"},
		{"health: {canary_warn: 0s}", "health.canary_warn: must be a positive duration"},
		{"health: {canary: maybe}", "health.canary (line 1): want true or false"},
	} {
		if _, err := parse(t, []string{"--config", writeConfig(t, tt.yaml)}, nil); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: err = %v, want it to contain %q", tt.yaml, err, tt.want)
		}
	}
}

// keyUsers groups the live workers by the key they opened a repo with, sorted, and
// leaves out missing workers and those that do not serve the repo.
func TestKeyUsers(t *testing.T) {
	workers := []brr.WorkerInfo{
		{ID: "w3", RepoKeys: map[string]string{"offsite": "new", "local": "l1"}},
		{ID: "w1", RepoKeys: map[string]string{"offsite": "old"}},
		{ID: "w2", RepoKeys: map[string]string{"offsite": "new"}},
		{ID: "w4", RepoKeys: map[string]string{"offsite": "old"}, Missing: true},
		{ID: "w5"},
	}
	got := keyUsers(workers, "offsite")
	if len(got) != 2 || strings.Join(got["new"], ",") != "w2,w3" || strings.Join(got["old"], ",") != "w1" {
		t.Fatalf("keyUsers = %v; want new: w2,w3 and old: w1", got)
	}
}
