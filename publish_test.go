package brr_test

import (
	"errors"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/brr-dev/brr"
	"github.com/nats-io/nats.go/jetstream"
)

func TestPublishValidates(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)
	for name, tc := range map[string]struct {
		args brr.JobArgs
		opts []brr.PublishOption
	}{
		"relative path": {args: brr.BackupJob{Path: "srv/app"}},
		"unclean path":  {args: brr.BackupJob{Path: "/srv/../app"}},
		"bad repo":      {args: brr.BackupJob{Path: "/srv", Repo: "a.b"}},
		"bad id":        {args: brr.PingJob{}, opts: []brr.PublishOption{brr.WithID("no spaces")}},
		"bad pool":      {args: brr.PingJob{}, opts: []brr.PublishOption{brr.WithJobPool("a.b")}},
		"bad snapshot":  {args: brr.RestoreJob{Snapshot: "xyz", Target: "/tmp/r"}},
		"nil args":      {args: nil},
	} {
		_, err := b.client.Publish(ctx, tc.args, tc.opts...)
		if !errors.Is(err, brr.ErrInvalid) {
			t.Errorf("%s: Publish error = %v, want ErrInvalid", name, err)
		}
	}
	if got := b.streamMsgs(t, b.subj.JobsStream()); got != 0 {
		t.Fatalf("jobs stream holds %d messages after invalid publishes, want 0", got)
	}
}

func TestPublishDuplicate(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)
	args := brr.BackupJob{Path: "/srv/app", Repo: "local", Tags: []string{"nightly"}}
	first, err := b.client.Publish(ctx, args, brr.WithID("nightly-1"), brr.WithBy("test"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || first.ID != "nightly-1" || first.Kind != brr.KindBackup || first.Pool != brr.DefaultPool || first.Stream != "BRR_JOBS" {
		t.Fatalf("first publish = %+v", first)
	}
	second, err := b.client.Publish(ctx, args, brr.WithID("nightly-1"))
	if err != nil {
		t.Fatal(err)
	}
	if !second.Duplicate || second.Seq != first.Seq {
		t.Fatalf("second publish = %+v, want a duplicate of seq %d", second, first.Seq)
	}
	other, err := b.client.Publish(ctx, args)
	if err != nil {
		t.Fatal(err)
	}
	if other.Duplicate || other.ID == first.ID {
		t.Fatalf("publish without id = %+v, want a new job", other)
	}
	if got := b.streamMsgs(t, b.subj.JobsStream()); got != 2 {
		t.Fatalf("jobs stream holds %d messages, want 2", got)
	}

	// What the worker receives decodes to the job that was published.
	st, _ := b.js.Stream(ctx, b.subj.JobsStream())
	raw, err := st.GetMsg(ctx, first.Seq)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := raw.Subject, "brr.jobs.default.backup"; got != want {
		t.Fatalf("subject = %q, want %q", got, want)
	}
	if got := raw.Header.Get(jetstream.MsgIDHeader); got != "nightly-1" {
		t.Fatalf("Nats-Msg-Id = %q, want nightly-1", got)
	}
	job, err := brr.DecodeJob(raw.Data)
	if err != nil {
		t.Fatal(err)
	}
	if got := job.Args.(*brr.BackupJob); got.Path != "/srv/app" || job.By != "test" || job.ID != "nightly-1" {
		t.Fatalf("decoded job = %+v args %+v", job, got)
	}
}

func TestPublishAsync(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)
	var futures []*brr.PublishFuture
	for range 20 {
		f, err := b.client.PublishAsync(brr.PingJob{})
		if err != nil {
			t.Fatal(err)
		}
		futures = append(futures, f)
	}
	seen := map[uint64]bool{}
	for _, f := range futures {
		r, err := f.Result(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r.Kind != brr.KindPing || r.ID != f.ID || seen[r.Seq] {
			t.Fatalf("result = %+v", r)
		}
		seen[r.Seq] = true
	}
	if _, err := b.client.PublishAsync(brr.PingJob{DelayMS: -1}); !errors.Is(err, brr.ErrInvalid) {
		t.Fatalf("PublishAsync of an invalid job: %v, want ErrInvalid", err)
	}
}
