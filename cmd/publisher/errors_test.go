package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

// TestDidYouMean: a mistyped command gets the commands it is close to.
func TestDidYouMean(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"snapshot"}, `unknown command "snapshot"; did you mean snapshots?`},
		{[]string{"bakup", "/srv"}, "did you mean backup?"},
		{[]string{"dlq", "purg"}, `unknown command "purg" for brr dlq (its commands: `},
		{[]string{"dlq", "rmm"}, "did you mean rm?"},
	} {
		r := brrCmd(t, "nats://127.0.0.1:1", tt.args...)
		if r.code != exitUsage || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("brr %s: %v\nwant exit 2 saying %q", strings.Join(tt.args, " "), r, tt.want)
		}
	}
}

// TestJSONErrors: with --json, an error is one JSON object on stderr, whatever failed:
// a usage error (before or after the flags are parsed), a connection, a job.
func TestJSONErrors(t *testing.T) {
	t.Parallel()
	_, url := setup(t)
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bakup", "--json"}, exitUsage, "did you mean backup?"},
		{[]string{"jobs", "--nope", "--json"}, exitUsage, "unknown flag: --nope"},
		{[]string{"jobs", "show", "nosuch", "--json"}, exitFailed, "nosuch"},
		{[]string{"backup", "/fail/j", "--wait", "--json"}, exitFailed, "does not exist"},
		{[]string{"jobs", "--json", "--nats", "nats://127.0.0.1:1"}, exitNoServer, "cannot reach NATS"},
	} {
		r := brrCmd(t, url, tt.args...)
		var body struct {
			Error string `json:"error"`
			Exit  int    `json:"exit"`
		}
		if r.code != tt.code || json.Unmarshal([]byte(r.stderr), &body) != nil || body.Exit != tt.code || !strings.Contains(body.Error, tt.want) {
			t.Errorf("brr %s: %v\nwant exit %d and one JSON error saying %q", strings.Join(tt.args, " "), r, tt.code, tt.want)
		}
	}
}

// TestInterruptedWaitExits130: Ctrl-C during --wait is not a failed job: exit 130.
func TestInterruptedWaitExits130(t *testing.T) {
	t.Parallel()
	_, url := setup(t)
	var stdout, stderr bytes.Buffer
	m := &Main{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }, Getwd: func() (string, error) { return "/", nil }}
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// The job never ends: cancel as a SIGINT does, once the wait is under way (or
		// before: the exit status is the same).
		time.Sleep(300 * time.Millisecond)
		cancel()
	}()
	code := m.Run(ctx, []string{"jobs", "show", "never-ends", "--wait", "--nats", url})
	if code != exitInterrupted {
		t.Fatalf("interrupted wait: exit %d, stderr %q; want 130", code, stderr.String())
	}
}
