package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
	"github.com/nats-io/nats.go/jetstream"
)

// deadLetters waits for n entries in BRR_DLQ and returns them by job id.
func deadLetters(t testing.TB, js jetstream.JetStream, n int) map[string]brr.DeadLetter {
	t.Helper()
	testkit.Eventually(t, 15*time.Second, fmt.Sprintf("%d dead letters", n), func() bool { return msgCount(t, js, "BRR_DLQ") >= uint64(n) })
	s, err := js.Stream(context.Background(), "BRR_DLQ")
	if err != nil {
		t.Fatalf("stream BRR_DLQ: %v", err)
	}
	out := map[string]brr.DeadLetter{}
	for seq := uint64(1); seq <= uint64(n); seq++ {
		m, err := s.GetMsg(context.Background(), seq)
		if err != nil {
			t.Fatalf("get dead letter %d: %v", seq, err)
		}
		var dl brr.DeadLetter
		if err := json.Unmarshal(m.Data, &dl); err != nil {
			t.Fatalf("decode dead letter %d: %v", seq, err)
		}
		if want := (brr.Subjects{}).DLQ(dl.Pool, dl.Kind); m.Subject != want {
			t.Errorf("dead letter of %s on %s, want %s", dl.JobID, m.Subject, want)
		}
		if got, want := m.Header.Get("Nats-Msg-Id"), "dlq-"+dl.JobID+"-"; !strings.HasPrefix(got, want) {
			t.Errorf("dead letter Nats-Msg-Id = %q, want %q and the job message's sequence", got, want)
		}
		out[dl.JobID] = dl
	}
	if got := msgCount(t, js, "BRR_DLQ"); got != uint64(n) {
		t.Errorf("BRR_DLQ has %d messages, want %d", got, n)
	}
	return out
}

func TestPermanentErrorGoesToDLQ(t *testing.T) {
	b := setup(t, Config{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		return &brr.Result{Verify: &brr.VerifyResult{Repo: "local", Damaged: []brr.Damage{{Pack: "p1", Problem: "missing"}}}},
			brr.Permanent(errors.New(`repo "local" is damaged: 1 pack missing`))
	}
	c := b.start(t, b.db)
	job := brr.NewJob(&brr.VerifyJob{Repo: "local"})
	job.ID = "verify-1"
	publishJob(t, b.js, job)

	e := b.ev.wait(t, "verify-1", brr.StatusFailed)
	if !strings.Contains(e.Error, "1 pack missing") {
		t.Errorf("failed event error = %q", e.Error)
	}
	if e.Result == nil || e.Result.Verify == nil || len(e.Result.Verify.Damaged) != 1 {
		t.Errorf("failed event result = %+v, want the verify report", e.Result)
	}
	dl := deadLetters(t, b.js, 1)["verify-1"]
	if dl.Status != brr.StatusFailed || !strings.Contains(dl.Error, "1 pack missing") || dl.Attempts != 1 || dl.Kind != brr.KindVerify {
		t.Errorf("dead letter = %+v", dl)
	}
	if _, err := brr.DecodeJob(dl.Request); err != nil {
		t.Errorf("dead letter request does not decode: %v", err)
	}
	waitJobsEmpty(t, b.js)
	if got := b.h.count("verify-1"); got != 1 {
		t.Errorf("handler ran %d times, want 1", got)
	}
	if s := c.Stats(); s.Failed != 1 {
		t.Errorf("Stats = %+v, want 1 failed", s)
	}
}

func TestOutOfAttemptsIsDead(t *testing.T) {
	b := setup(t, Config{MaxDeliver: 3})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		return nil, fmt.Errorf("connection refused (attempt %d)", attempt)
	}
	c := b.start(t, b.db)
	publishJob(t, b.js, pingJob("job-dead"))

	e := b.ev.wait(t, "job-dead", brr.StatusDead)
	if e.Attempt != 3 || !strings.Contains(e.Error, "attempt 3") {
		t.Errorf("dead event = attempt %d error %q", e.Attempt, e.Error)
	}
	dl := deadLetters(t, b.js, 1)["job-dead"]
	if dl.Status != brr.StatusDead || dl.Attempts != 3 {
		t.Errorf("dead letter = %+v, want status dead after 3 attempts", dl)
	}
	if got := len(b.ev.find("job-dead", brr.StatusRetrying)); got != 2 {
		t.Errorf("%d retrying events, want 2", got)
	}
	waitJobsEmpty(t, b.js)
	if got := b.h.count("job-dead"); got != 3 {
		t.Errorf("handler ran %d times, want 3", got)
	}
	if s := c.Stats(); s.Dead != 1 || s.Retried != 2 {
		t.Errorf("Stats = %+v, want 1 dead, 2 retried", s)
	}
}

func TestBadInputGoesToDLQ(t *testing.T) {
	b := setup(t, Config{})
	c := b.start(t, b.db)
	job := func(kind, args string) string {
		return `{"v":1,"id":"x","kind":"` + kind + `","pool":"default","created":"2026-11-26T12:00:00Z","args":` + args + `}`
	}
	junk := make([]byte, 1_000_000)
	for i := range junk {
		junk[i] = byte('a' + i%26)
	}
	cases := []struct {
		id, subject, body, reason string
	}{
		{"bad-json", "brr.jobs.default.ping", "hello, worker", "not valid JSON"},
		{"bad-version", "brr.jobs.default.ping", strings.Replace(job("ping", "{}"), `"v":1`, `"v":2`, 1), "version 2"},
		{"bad-kind", "brr.jobs.default.frobnicate", job("frobnicate", "{}"), "frobnicate"},
		{"bad-size", "brr.jobs.default.ping", string(junk), "limit is"},
		{"bad-missing", "brr.jobs.default.ping", `{"v":1,"kind":"ping","pool":"default","args":{}}`, "job id"},
		{"bad-type", "brr.jobs.default.ping", job("ping", `{"delay_ms":"soon"}`), "delay_ms"},
		{"bad-path", "brr.jobs.default.backup", job("backup", `{"path":"srv/app"}`), "not an absolute path"},
		{"bad-subject", "brr.jobs.default.backup", job("ping", "{}"), "came on subject"},
		{"bad-twice", "brr.jobs.default.backup", job("backup", `{"path":"/srv/app","path":"/etc"}`), `the key "args.path" twice`},
		{"bad-nul", "brr.jobs.default.backup", job("backup", `{"path":"/srv/app","tags":["a\u0000b"]}`), `NUL byte in the value of "args.tags[0]"`},
		{"", "brr.jobs.default.ping", "{", "not valid JSON"},
		// As `nats pub` sends it: no Nats-Msg-Id, bad args; the envelope's id names it.
		{"", "brr.jobs.default.ping", strings.Replace(job("ping", `{"delay":"soon"}`), `"id":"x"`, `"id":"by-nats-pub"`, 1), "delay"},
	}
	for _, tc := range cases {
		publishRaw(t, b.js, tc.subject, []byte(tc.body), tc.id)
	}
	// The sequence of the message that has neither Nats-Msg-Id nor an id in its envelope.
	noID := fmt.Sprintf("seq-%d", len(cases)-1)
	publishJob(t, b.js, pingJob("good-after-bad"))
	b.ev.wait(t, "good-after-bad", brr.StatusSucceeded)

	dls := deadLetters(t, b.js, len(cases))
	for _, tc := range cases {
		id := tc.id
		switch {
		case id == "" && strings.Contains(tc.body, "by-nats-pub"):
			id = "by-nats-pub"
		case id == "":
			id = noID
		}
		dl, ok := dls[id]
		if !ok {
			t.Errorf("%s: no dead letter", id)
			continue
		}
		if dl.Status != brr.StatusFailed || !strings.Contains(dl.Error, tc.reason) {
			t.Errorf("%s: dead letter status %q error %q, want failed with %q", id, dl.Status, dl.Error, tc.reason)
		}
		if want := tc.body[:min(len(tc.body), brr.MaxJobSize)]; string(dl.Request) != want {
			t.Errorf("%s: dead letter request is not the message as sent (%d bytes, want %d)", id, len(dl.Request), len(want))
		}
		if e := b.ev.wait(t, id, brr.StatusFailed); !strings.Contains(e.Error, tc.reason) {
			t.Errorf("%s: failed event error %q, want %q", id, e.Error, tc.reason)
		}
		rec, err := b.db.Job(id)
		if err != nil || rec.Status != brr.StatusFailed {
			t.Errorf("%s: record %+v, %v; want status failed", id, rec, err)
		}
	}
	if dl := dls["bad-kind"]; dl.Kind != "frobnicate" {
		t.Errorf("dead letter of a frobnicate job has kind %q", dl.Kind)
	}
	waitJobsEmpty(t, b.js)
	if got := b.h.total.Load(); got != 1 {
		t.Errorf("handler ran %d times, want 1 (the good job only)", got)
	}
	if s := c.Stats(); s.Failed != int64(len(cases)) || s.Done != 1 {
		t.Errorf("Stats = %+v, want %d failed, 1 done", s, len(cases))
	}
}

// TestRetriedDeadLetterThatFailsAgainIsListed retries a dead job with `brr dlq retry`
// (Client.RetryDead), and the job fails again. Its second dead letter used to vanish: it
// had the first one's Nats-Msg-Id, "dlq-<job id>", which the stream's duplicate window
// dropped, and RetryDead had removed the first; `brr dlq ls` listed nothing.
func TestRetriedDeadLetterThatFailsAgainIsListed(t *testing.T) {
	b := setup(t, Config{})
	b.h.fn = func(ctx context.Context, job *brr.Job, attempt int, progress func(brr.Progress)) (*brr.Result, error) {
		return nil, brr.Permanent(errors.New("source is gone"))
	}
	b.start(t, b.db)
	publishJob(t, b.js, pingJob("fails-twice"))
	b.ev.wait(t, "fails-twice", brr.StatusFailed)
	deadLetters(t, b.js, 1)

	client, err := brr.NewClient(b.nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := testkit.Context(t, 20*time.Second)
	if _, err := client.RetryDead(ctx, "fails-twice"); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "the retried job to run", func() bool { return b.h.count("fails-twice") == 2 })
	var entries []brr.DeadLetterEntry
	testkit.Eventually(t, 15*time.Second, "the second failure's dead letter", func() bool {
		entries, err = client.DeadLetters(ctx)
		return err == nil && len(entries) == 1
	})
	if e := entries[0]; e.JobID != "fails-twice" || e.Seq < 2 || !strings.Contains(e.Error, "source is gone") {
		t.Fatalf("dead letter after the retry = %+v", e)
	}
}
