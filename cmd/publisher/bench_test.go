package main

import (
	"strings"
	"testing"
)

func TestBench(t *testing.T) {
	t.Parallel()
	_, url := setup(t)
	r := brrCmd(t, url, "bench", "--jobs", "30", "--publishers", "3", "--json")
	if r.code != 0 {
		t.Fatalf("bench: %v", r)
	}
	obj := jsonLines(t, "bench", r.stdout)[0]
	if obj["succeeded"] != float64(30) || obj["started"] != float64(30) || obj["publish_errors"] != float64(0) {
		t.Fatalf("bench = %v", obj)
	}
	lat := obj["publish_to_succeeded"].(map[string]any)
	if lat["p50_ms"].(float64) <= 0 || lat["max_ms"].(float64) < lat["p99_ms"].(float64) {
		t.Fatalf("bench latency = %v", lat)
	}
	r = brrCmd(t, url, "bench", "--jobs", "10", "--rate", "200")
	if r.code != 0 || !strings.Contains(r.stdout, "jobs/s end to end") || !strings.Contains(r.stdout, "failed: 0\n") {
		t.Fatalf("bench paced: %v", r)
	}
}

func TestBenchCountsFailures(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	w.failPingsEvery.Store(4)
	// The run ends when every job has ended, failed ones included, long before --timeout.
	r := brrCmd(t, url, "bench", "--jobs", "20", "--publishers", "2", "--timeout", "25s")
	if r.code != 1 {
		t.Fatalf("bench with failing pings: %v\nwant exit 1", r)
	}
	if !strings.Contains(r.stdout, "failed: 5 (first: job bench-") || !strings.Contains(r.stdout, "succeeded   15 of 20") {
		t.Fatalf("bench output lacks the counts:\n%v", r)
	}
	if !strings.Contains(r.stderr, "5 of 20 ping jobs failed") || !strings.Contains(r.stderr, "dead: lease store unavailable") || !strings.Contains(r.stderr, "brr dlq ls") {
		t.Fatalf("bench error does not say what failed:\n%v", r)
	}
	r = brrCmd(t, url, "bench", "--jobs", "8", "--json")
	if obj := jsonLines(t, "bench --json", r.stdout)[0]; r.code != 1 || obj["failed"] != float64(2) || obj["succeeded"] != float64(6) {
		t.Fatalf("bench --json with failing pings: %v", r)
	}
}
