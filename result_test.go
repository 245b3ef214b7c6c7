package brr_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/brr-dev/brr"
)

func TestJobAndJobs(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)
	if _, err := b.client.Job(ctx, "nope"); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("Job of an unknown id: %v, want ErrNotFound", err)
	}
	if got, err := b.client.Jobs(ctx, 10); err != nil || len(got) != 0 {
		t.Fatalf("Jobs of an empty bucket = %v, %v", got, err)
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		b.putResult(t, jobEvent(id, brr.KindPing, brr.StatusAccepted))
	}
	b.putResult(t, jobEvent("b", brr.KindPing, brr.StatusSucceeded)) // b is now the newest
	e, err := b.client.Job(ctx, "b")
	if err != nil || e.Status != brr.StatusSucceeded {
		t.Fatalf("Job(b) = %+v, %v", e, err)
	}
	ids := func(es []*brr.Event) string {
		var s []string
		for _, e := range es {
			s = append(s, e.JobID)
		}
		return strings.Join(s, ",")
	}
	got, err := b.client.Jobs(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(got), "b,d,c"; got != want {
		t.Fatalf("Jobs(3) = %s, want %s", got, want)
	}
	all, err := b.client.Jobs(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ids(all), "b,d,c,a"; got != want {
		t.Fatalf("Jobs(0) = %s, want %s", got, want)
	}
}

func TestJobsWidensWindow(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := testkit.Context(t, 20*time.Second)
	// Two old jobs, then many updates of one job: the newest stream messages hold one
	// job only, so Jobs must look further back to find three.
	b.putResult(t, jobEvent("old1", brr.KindPing, brr.StatusSucceeded))
	b.putResult(t, jobEvent("old2", brr.KindPing, brr.StatusSucceeded))
	for range 200 {
		b.putResult(t, jobEvent("busy", brr.KindPing, brr.StatusProgress))
	}
	got, err := b.client.Jobs(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0].JobID != "busy" || got[1].JobID != "old2" || got[2].JobID != "old1" {
		t.Fatalf("Jobs(3) = %d events, want busy, old2, old1", len(got))
	}
}
