package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/brr-dev/brr/internal/metrics"
)

func TestHTTPReportsVersion(t *testing.T) {
	m := metrics.New(metrics.Options{Worker: "w1-0123abcd", Host: "h1", Version: "v1.2.3"})
	srv, err := newHTTPServer("127.0.0.1:0", "w1-0123abcd", "v1.2.3", &readiness{}, m.Handler())
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Run(context.Background()) }()
	t.Cleanup(func() {
		_ = srv.srv.Close()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	base := "http://" + srv.Addr()

	code, body, err := get(base + "/healthz")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/healthz = %d %v, want 200", code, err)
	}
	var health map[string]string
	if err := json.Unmarshal([]byte(body), &health); err != nil {
		t.Fatalf("/healthz body %q: %v", body, err)
	}
	if got, want := health["version"], "v1.2.3"; got != want {
		t.Fatalf("/healthz version = %q, want %q (body %s)", got, want, body)
	}

	code, metrics, err := get(base + "/metrics")
	if err != nil || code != http.StatusOK {
		t.Fatalf("/metrics = %d %v, want 200", code, err)
	}
	if want := `brr_worker_info{host="h1",version="v1.2.3",worker="w1-0123abcd"} 1`; !strings.Contains(metrics, want) {
		t.Fatalf("/metrics lacks %q:\n%s", want, metrics)
	}
}
