package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/testkit"
)

// TestDeadLetterEndpoints: dead jobs are listed, retried, removed one by one (by job id
// or seq) and purged over the API, with the key.
func TestDeadLetterEndpoints(t *testing.T) {
	f := setup(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, id := range []string{"gone-1", "gone-2", "gone-3", "gone-4"} {
		var acc JobAccepted
		decode(t, f.post("/api/v1/jobs", `{"kind":"backup","id":"`+id+`","args":{"path":"/nonexistent/`+id+`"}}`), http.StatusAccepted, &acc)
		if _, err := f.client.Wait(ctx, id, nil); !errors.Is(err, brr.ErrJobFailed) {
			t.Fatalf("wait %s: %v, want it failed", id, err)
		}
	}
	var list DeadLetterList
	testkit.Eventually(t, 30*time.Second, "four dead letters", func() bool {
		decode(t, f.get("/api/v1/dlq"), http.StatusOK, &list)
		return len(list.DeadLetters) == 4
	})
	if e := list.DeadLetters[0]; e.JobID != "gone-1" || e.Kind != brr.KindBackup || e.Seq == 0 || e.Error == "" {
		t.Fatalf("first dead letter = %+v", e)
	}

	// Writes need the key.
	if r := f.do("DELETE", "/api/v1/dlq/gone-1", "", nil); r.status != http.StatusUnauthorized {
		t.Fatalf("DELETE without key: %d %s", r.status, r)
	}
	var rm DeadLettersRemoved
	decode(t, f.do("DELETE", "/api/v1/dlq/gone-1", testKey, nil), http.StatusOK, &rm)
	if rm.Removed != 1 || len(rm.Seqs) != 1 || rm.Seqs[0] != list.DeadLetters[0].Seq {
		t.Fatalf("DELETE gone-1 = %+v", rm)
	}
	decode(t, f.do("DELETE", "/api/v1/dlq/"+strconv.FormatUint(list.DeadLetters[1].Seq, 10), testKey, nil), http.StatusOK, &rm)
	if rm.Removed != 1 {
		t.Fatalf("DELETE by seq = %+v", rm)
	}
	if r := f.do("DELETE", "/api/v1/dlq/gone-1", testKey, nil); r.status != http.StatusNotFound {
		t.Fatalf("DELETE of a removed one: %d %s, want 404", r.status, r)
	}

	var acc JobAccepted
	decode(t, f.post("/api/v1/dlq/gone-3/retry", ""), http.StatusAccepted, &acc)
	if acc.ID != "gone-3" || acc.Kind != brr.KindBackup || acc.URL != "/api/v1/jobs/gone-3" {
		t.Fatalf("retry = %+v", acc)
	}
	if _, err := f.client.Wait(ctx, "gone-3", nil, brr.AfterRevision(acc.ResultRevision)); !errors.Is(err, brr.ErrJobFailed) {
		t.Fatalf("wait for the retried job: %v, want it failed again", err)
	}
	if r := f.do("DELETE", "/api/v1/dlq?before=later", testKey, nil); r.status != http.StatusBadRequest {
		t.Fatalf("DELETE ?before=later: %d %s, want 400", r.status, r)
	}
	decode(t, f.do("DELETE", "/api/v1/dlq?before=7d", testKey, nil), http.StatusOK, &rm)
	if rm.Removed != 0 {
		t.Fatalf("purge before 7d = %+v, want none", rm)
	}
	testkit.Eventually(t, 30*time.Second, "gone-3 dead again", func() bool {
		decode(t, f.get("/api/v1/dlq"), http.StatusOK, &list)
		return len(list.DeadLetters) == 2
	})
	decode(t, f.do("DELETE", "/api/v1/dlq", testKey, nil), http.StatusOK, &rm)
	if rm.Removed != 2 {
		t.Fatalf("purge = %+v, want 2 (gone-4 and gone-3's second death)", rm)
	}
	decode(t, f.get("/api/v1/dlq"), http.StatusOK, &list)
	if len(list.DeadLetters) != 0 {
		t.Fatalf("after purge: %+v", list.DeadLetters)
	}
}
