package main

import (
	"strings"
	"testing"
)

// TestDLQRmAndPurge: a dead letter can be removed without running it, by job id or by
// the SEQ column of dlq ls, and purged; retry takes the SEQ too.
func TestDLQRmAndPurge(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	for _, id := range []string{"d1", "d2", "d3", "d4"} {
		if r := brrCmd(t, url, "backup", "/fail/"+id, "--id", id, "--wait"); r.code != 1 {
			t.Fatalf("failing backup %s: %v", id, r)
		}
	}
	seqOf := func(id string) string {
		t.Helper()
		r := brrCmd(t, url, "dlq", "ls")
		for _, line := range strings.Split(r.stdout, "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[1] == id {
				return f[0]
			}
		}
		t.Fatalf("dlq ls has no %s: %v", id, r)
		return ""
	}
	if r := brrCmd(t, url, "dlq", "rm", "d1"); r.code != 0 || !strings.Contains(r.stdout, "job d1") {
		t.Fatalf("dlq rm d1: %v", r)
	}
	if r := brrCmd(t, url, "dlq", "rm", seqOf("d2")); r.code != 0 || !strings.Contains(r.stdout, "job d2") {
		t.Fatalf("dlq rm SEQ: %v", r)
	}
	if r := brrCmd(t, url, "dlq", "rm", "d1"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("dlq rm of a removed one: %v", r)
	}
	r := brrCmd(t, url, "dlq", "ls")
	if strings.Contains(r.stdout, "d1") || strings.Contains(r.stdout, "d2") || !strings.Contains(r.stdout, "d3") {
		t.Fatalf("dlq ls after rm: %v", r)
	}
	w.fixed.Store(true)
	if r := brrCmd(t, url, "dlq", "retry", seqOf("d3")); r.code != 0 || !strings.Contains(r.stdout, "backup job d3 queued again") {
		t.Fatalf("dlq retry SEQ: %v", r)
	}
	w.waitFor(t, "d3", 2)
	if r := brrCmd(t, url, "dlq", "purge", "--before", "7d"); r.code != 0 || !strings.Contains(r.stdout, "removed 0 dead letter") {
		t.Fatalf("dlq purge --before 7d: %v", r)
	}
	if r := brrCmd(t, url, "dlq", "purge", "--before", "soon"); r.code != 2 {
		t.Fatalf("dlq purge --before soon: %v, want a usage error", r)
	}
	if r := brrCmd(t, url, "dlq", "purge"); r.code != 0 || !strings.Contains(r.stdout, "removed 1 dead letter") {
		t.Fatalf("dlq purge: %v", r)
	}
	if r := brrCmd(t, url, "dlq", "ls"); !strings.Contains(r.stderr, "no dead jobs") {
		t.Fatalf("dlq ls after purge: %v", r)
	}
}

func TestDLQRetry(t *testing.T) {
	t.Parallel()
	w, url := setup(t)
	if r := brrCmd(t, url, "backup", "/fail/y", "--id", "dead1", "--wait"); r.code != 1 {
		t.Fatalf("failing backup: %v", r)
	}
	r := brrCmd(t, url, "dlq")
	if r.code != 0 || !strings.Contains(r.stdout, "dead1") || !strings.Contains(r.stdout, "does not exist") {
		t.Fatalf("dlq: %v", r)
	}
	if r := brrCmd(t, url, "backup", "/fail/z", "--id", "dead2", "--wait"); r.code != 1 {
		t.Fatalf("failing backup: %v", r)
	}
	r = brrCmd(t, url, "dlq", "retry", "dead1")
	if r.code != 0 || !strings.Contains(r.stdout, "backup job dead1 queued again") {
		t.Fatalf("dlq retry: %v", r)
	}
	w.waitFor(t, "dead1", 2)

	// The cause is fixed: --wait follows the new run to its success, not the old run's
	// failure that the results bucket holds until the worker takes the job.
	w.fixed.Store(true)
	r = brrCmd(t, url, "dlq", "retry", "dead2", "--wait")
	if r.code != 0 || !strings.Contains(r.stdout, "snapshot abcdef0123456789 of /fail/z") || !strings.Contains(r.stderr, "backup job dead2 queued again") {
		t.Fatalf("dlq retry --wait: %v", r)
	}
	if r := brrCmd(t, url, "dlq", "retry", "nosuch"); r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("dlq retry of an unknown job: %v", r)
	}
}
