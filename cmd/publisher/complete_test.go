package main

import (
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/natstest"
)

// TestCompletion asks the hidden __complete command, as the shell scripts of
// `brr completion` do, for job ids, dead job ids, snapshot ids, repo names and --kind
// values, which come from the pool.
func TestCompletion(t *testing.T) {
	t.Parallel()
	srv := natstest.StartListening(t)
	startWorker(t, srv)
	_, js := srv.JetStream(t)
	url := srv.ClientURL()
	repoBeat(t, js, "w1", []string{"default"}, time.Now().UTC(), []string{"local", "offsite"})
	if r := brrCmd(t, url, "backup", "/srv/app", "--id", "nightly-1", "--wait"); r.code != 0 {
		t.Fatal(r)
	}
	if r := brrCmd(t, url, "backup", "/fail/x", "--id", "broken-1", "--wait"); r.code != 1 {
		t.Fatal(r)
	}
	for _, tt := range []struct {
		args      []string
		want, not []string
	}{
		{[]string{"jobs", "show", ""}, []string{"nightly-1", "broken-1"}, nil},
		{[]string{"jobs", "show", "ni"}, []string{"nightly-1"}, []string{"broken-1"}},
		{[]string{"jobs", "show", "nightly-1", ""}, nil, []string{"broken-1"}},
		{[]string{"dlq", "retry", ""}, []string{"broken-1"}, []string{"nightly-1"}},
		{[]string{"dlq", "rm", ""}, []string{"broken-1"}, nil},
		{[]string{"restore", ""}, []string{"latest", "abcdef012345"}, nil},
		{[]string{"backup", "/srv", "--repo", ""}, []string{"local", "offsite"}, nil},
		{[]string{"replicate", "latest", "--to", "off"}, []string{"offsite"}, []string{"local"}},
		{[]string{"jobs", "--kind", ""}, []string{"backup", "restore", "ping"}, nil},
		{[]string{"events", "--kind", ""}, []string{"job", "health"}, []string{"backup"}},
	} {
		r := brrCmd(t, url, append([]string{"__complete"}, tt.args...)...)
		got := strings.Fields(r.stdout)
		for _, w := range tt.want {
			if !containsStr(got, w) {
				t.Errorf("complete %q: %q lacks %q", tt.args, got, w)
			}
		}
		for _, w := range tt.not {
			if containsStr(got, w) {
				t.Errorf("complete %q: %q has %q", tt.args, got, w)
			}
		}
	}
	// With no NATS, a completion is empty, and quick: the shell waits for it.
	r := brrCmd(t, "nats://127.0.0.1:1", "__complete", "jobs", "show", "")
	if r.code != 0 || strings.Contains(r.stdout, "nightly") {
		t.Fatalf("complete without NATS: %v", r)
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
