package web

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/state"
)

func TestSummarize(t *testing.T) {
	to := time.Date(2026, 11, 26, 12, 30, 0, 0, time.UTC)
	from := to.Add(-3 * 24 * time.Hour)
	at := func(d time.Duration) time.Time { return to.Add(-d) }
	samples := []sample{
		{id: "b1", kind: brr.KindBackup, source: "/a", status: brr.StatusSucceeded, end: at(time.Hour), durMS: 100, bytes: 1000, backupBytes: 4000, bytesAdded: 1000},
		{id: "b2", kind: brr.KindBackup, source: "/a", status: brr.StatusSucceeded, end: at(2 * time.Hour), durMS: 300, bytes: 0, backupBytes: 4000, bytesAdded: 0},
		{id: "b3", kind: brr.KindBackup, source: "/b", status: brr.StatusFailed, end: at(25 * time.Hour), durMS: -1},
		{id: "r1", kind: brr.KindRestore, source: "", status: brr.StatusSucceeded, end: at(50 * time.Hour), durMS: 200, bytes: 500},
		// Cancelled: counted, but neither a success nor a failure, and its run time is
		// not one of a whole job.
		{id: "b4", kind: brr.KindBackup, source: "/b", status: brr.StatusCancelled, end: at(26 * time.Hour), durMS: 90000, bytes: 10},
	}
	a := summarize(samples, "kind", from, to)
	tot := a.Total
	if tot.Jobs != 5 || tot.Succeeded != 3 || tot.Failed != 1 || tot.Cancelled != 1 || *tot.SuccessRate != 0.75 {
		t.Fatalf("total = %+v", tot)
	}
	if *tot.DurationP50MS != 200 || *tot.DurationP95MS != 300 {
		t.Errorf("total p50/p95 = %d/%d, want 200/300 (nearest rank of 100, 200, 300)", *tot.DurationP50MS, *tot.DurationP95MS)
	}
	if tot.Bytes != 1510 || tot.BackupBytes != 8000 || tot.BytesAdded != 1000 || *tot.DedupRatio != 8 {
		t.Errorf("total bytes = %+v, want 1510 moved, dedup 8", tot)
	}
	if len(a.Groups) != 2 || a.Groups[0].Key != "backup" || a.Groups[1].Key != "restore" {
		t.Fatalf("kind groups = %+v", a.Groups)
	}
	if g := a.Groups[1]; g.Jobs != 1 || g.DedupRatio != nil || g.BytesAdded != 0 {
		t.Errorf("restore group = %+v, want no dedup ratio", g)
	}

	a = summarize(samples, "source", from, to)
	if len(a.Groups) != 3 || a.Groups[0].Key != "" || a.Groups[1].Key != "/a" || a.Groups[1].Jobs != 2 || a.Groups[2].Key != "/b" || *a.Groups[2].SuccessRate != 0 || a.Groups[2].Cancelled != 1 {
		t.Fatalf("source groups = %+v", a.Groups)
	}
	if g := a.Groups[2]; g.DurationP50MS != nil {
		t.Errorf("group without a known run time has p50 %d, want null", *g.DurationP50MS)
	}

	a = summarize(samples, "day", from, to)
	if len(a.Groups) != 4 || a.Groups[0].Key != "2026-11-23" || a.Groups[3].Key != "2026-11-26" {
		t.Fatalf("day groups = %+v, want 23 to 26 November", keys(a.Groups))
	}
	if a.Groups[3].Jobs != 2 || a.Groups[2].Jobs != 2 || a.Groups[1].Jobs != 1 || a.Groups[0].Jobs != 0 || a.Groups[0].SuccessRate != nil {
		t.Errorf("jobs per day = %+v", a.Groups)
	}

	a = summarize(nil, "hour", to.Add(-3*time.Hour), to)
	if len(a.Groups) != 4 || a.Groups[0].Key != "2026-11-26T09Z" || a.Total.Jobs != 0 || a.Total.SuccessRate != nil {
		t.Fatalf("hour groups of nothing = %+v", keys(a.Groups))
	}
}

func keys(gs []Group) []string {
	var out []string
	for _, g := range gs {
		out = append(out, g.Key)
	}
	return out
}

func TestPercentile(t *testing.T) {
	for _, tc := range []struct {
		in   []int64
		p    float64
		want int64
	}{
		{[]int64{7}, 50, 7},
		{[]int64{7}, 95, 7},
		{[]int64{1, 2}, 50, 1},
		{[]int64{1, 2}, 95, 2},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 50, 5},
		{[]int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 95, 10},
	} {
		if got := percentile(tc.in, tc.p); got != tc.want {
			t.Errorf("percentile(%v, %v) = %d, want %d", tc.in, tc.p, got, tc.want)
		}
	}
}

// TestAnalytics runs real jobs, adds an old job known only from this worker's records,
// and reads the analytics over the API.
func TestAnalytics(t *testing.T) {
	f := setup(t, nil)
	b1 := f.backup("an-1")
	b2 := f.backup("an-2") // nothing changed: adds (almost) nothing
	var acc JobAccepted
	decode(t, f.post("/api/v1/jobs", `{"kind":"restore","id":"an-bad","args":{"snapshot":"deadbeef","target":"/tmp/brr-web-test-never"}}`), http.StatusAccepted, &acc)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := f.client.Wait(ctx, "an-bad", nil); err == nil {
		t.Fatal("restore of a missing snapshot succeeded")
	}
	decode(t, f.post("/api/v1/jobs", `{"kind":"ping","id":"an-ping"}`), http.StatusAccepted, &acc)
	if _, err := f.client.Wait(ctx, "an-ping", nil); err != nil {
		t.Fatal(err)
	}
	// A verify that finished yesterday, whose events are gone: only the record has it.
	db := f.srv.cfg.Records.(*state.DB)
	finished := time.Now().Add(-20 * time.Hour)
	if err := db.PutJob(&state.JobRecord{ID: "an-old", Kind: brr.KindVerify, Status: brr.StatusSucceeded, Worker: "w-test",
		Created: finished.Add(-time.Minute), Started: finished.Add(-1500 * time.Millisecond), Finished: finished}); err != nil {
		t.Fatal(err)
	}

	// Cancelled jobs: a verify known from its record, a backup from its final event.
	if err := db.PutJob(&state.JobRecord{ID: "an-cancelled-rec", Kind: brr.KindVerify, Status: brr.StatusCancelled, Worker: "w-test",
		Created: finished.Add(-time.Hour), Started: finished.Add(-time.Hour), Finished: finished}); err != nil {
		t.Fatal(err)
	}
	ev := &brr.Event{V: brr.Version, ID: brr.NewID(), Type: brr.EventJob, Status: brr.StatusCancelled, Time: time.Now().UTC(),
		Worker: "w-test", JobID: "an-cancelled-ev", Kind: brr.KindBackup, Pool: brr.DefaultPool, Error: "cancelled by test"}
	data, _ := json.Marshal(ev)
	if _, err := f.js.Publish(ctx, brr.Subjects{}.Event(ev), data); err != nil {
		t.Fatal(err)
	}

	var a Analytics
	decode(t, f.get("/api/v1/analytics?window=2d&by=kind"), http.StatusOK, &a)
	if a.Samples.Events != 4 || a.Samples.Records != 2 {
		t.Errorf("samples = %+v, want 4 from events (no ping) and 2 from records", a.Samples)
	}
	byKind := map[string]Group{}
	for _, g := range a.Groups {
		byKind[g.Key] = g
	}
	bk := byKind["backup"]
	if bk.Jobs != 3 || bk.Succeeded != 2 || bk.Cancelled != 1 || bk.Failed != 0 || *bk.SuccessRate != 1 || bk.DurationP50MS == nil || bk.DedupRatio == nil {
		t.Fatalf("backup group = %+v", bk)
	}
	r1, r2 := b1.Result.Backup, b2.Result.Backup
	if want := r1.BytesRead + r2.BytesRead; bk.Bytes != want {
		t.Errorf("backup bytes = %d, want %d", bk.Bytes, want)
	}
	if want := float64(r1.Bytes+r2.Bytes) / float64(r1.BytesAdded+r2.BytesAdded); *bk.DedupRatio != want {
		t.Errorf("dedup ratio = %v, want %v", *bk.DedupRatio, want)
	}
	if rs := byKind["restore"]; rs.Jobs != 1 || rs.Failed != 1 || *rs.SuccessRate != 0 {
		t.Errorf("restore group = %+v, want one failure", rs)
	}
	if v := byKind["verify"]; v.Jobs != 2 || v.Cancelled != 1 || v.Failed != 0 || *v.DurationP50MS != 1500 {
		t.Errorf("verify group (from the records) = %+v, want one job of 1.5 s and one cancelled", v)
	}
	if _, ok := byKind["ping"]; ok {
		t.Errorf("ping jobs counted without kind=ping")
	}
	if a.Total.Jobs != 6 || a.Total.Cancelled != 2 {
		t.Errorf("total jobs = %d, %d cancelled; want 6, 2 cancelled", a.Total.Jobs, a.Total.Cancelled)
	}

	decode(t, f.get("/api/v1/analytics?window=2d&by=kind&kind=ping"), http.StatusOK, &a)
	if a.Total.Jobs != 1 || len(a.Groups) != 1 || a.Groups[0].Key != "ping" {
		t.Errorf("kind=ping: %+v", a.Groups)
	}
	decode(t, f.get("/api/v1/analytics?window=1h&by=source&source="+f.src), http.StatusOK, &a)
	if a.Total.Jobs != 2 || len(a.Groups) != 1 || a.Groups[0].Key != f.src {
		t.Errorf("source=%s over 1h: %+v", f.src, a.Groups)
	}
	decode(t, f.get("/api/v1/analytics?window=24h&by=hour"), http.StatusOK, &a)
	if len(a.Groups) != 25 || a.Total.Jobs != 6 {
		t.Errorf("by hour over 24h: %d groups, %d jobs; want 25 and 6", len(a.Groups), a.Total.Jobs)
	}
}
