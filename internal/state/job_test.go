package state

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/bbolt"

	"github.com/brr-dev/brr"
)

var t0 = time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)

func record(id string, created time.Time, status brr.Status) *JobRecord {
	return &JobRecord{
		ID: id, Pool: "default", Kind: brr.KindBackup, Status: status,
		Request:  json.RawMessage(`{"v":1,"id":"` + id + `"}`),
		Attempts: 1, Worker: "w1", Repo: "local", Source: "/srv/app",
		Created: created, Started: created.Add(time.Second),
	}
}

func TestPutJobReopen(t *testing.T) {
	db := open(t)
	rec := record("job-1", t0, brr.StatusSucceeded)
	rec.Finished = t0.Add(time.Minute)
	rec.Snapshot = "abcd"
	rec.Result = &brr.Result{Backup: &brr.BackupResult{Snapshot: "abcd", Files: 3}}
	if err := db.PutJob(rec, OutboxMsg{Subject: "brr.events.job.backup.succeeded", MsgID: "job-1-succeeded", Data: []byte(`{}`)}); err != nil {
		t.Fatal(err)
	}
	if err := db.UpdateFileCache("repo1:/srv/app", map[string]CachedFile{"a": {Size: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	db = reopen(t, db)
	got, err := db.Job("job-1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, rec) {
		t.Fatalf("Job after reopen = %+v, want %+v", got, rec)
	}
	if ok, err := db.Processed("job-1"); err != nil || !ok {
		t.Fatalf("Processed after reopen = %v, %v; want true", ok, err)
	}
	if n, err := db.OutboxLen(); err != nil || n != 1 {
		t.Fatalf("OutboxLen after reopen = %d, %v; want 1", n, err)
	}
	if fc, err := db.LoadFileCache("repo1:/srv/app"); err != nil || fc["a"].Size != 1 {
		t.Fatalf("LoadFileCache after reopen = %v, %v", fc, err)
	}
}

func TestJobNotFound(t *testing.T) {
	db := open(t)
	if _, err := db.Job("nope"); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("Job(unknown): err = %v, want brr.ErrNotFound", err)
	}
}

func TestProcessedOnlyOnSuccess(t *testing.T) {
	db := open(t)
	for _, st := range []brr.Status{brr.StatusAccepted, brr.StatusStarted, brr.StatusRetrying, brr.StatusFailed, brr.StatusDead} {
		id := "job-" + string(st)
		if err := db.PutJob(record(id, t0, st)); err != nil {
			t.Fatal(err)
		}
		if ok, err := db.Processed(id); err != nil || ok {
			t.Errorf("Processed(%s) with status %s = %v, %v; want false", id, st, ok, err)
		}
	}
	rec := record("job-2", t0, brr.StatusStarted)
	if err := db.PutJob(rec); err != nil {
		t.Fatal(err)
	}
	rec.Status = brr.StatusSucceeded
	if err := db.PutJob(rec); err != nil {
		t.Fatal(err)
	}
	if ok, err := db.Processed("job-2"); err != nil || !ok {
		t.Fatalf("Processed after success = %v, %v; want true", ok, err)
	}
}

// TestPutJobAtomic shows that a record and its outbox messages commit together: a
// failing PutJob (an outbox message without a subject) stores neither.
func TestPutJobAtomic(t *testing.T) {
	db := open(t)
	err := db.PutJob(record("job-1", t0, brr.StatusSucceeded),
		OutboxMsg{Subject: "brr.events.job.backup.succeeded", MsgID: "a"},
		OutboxMsg{Subject: "", MsgID: "b"})
	if err == nil {
		t.Fatal("PutJob with a bad outbox message succeeded")
	}
	if _, err := db.Job("job-1"); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("record stored by a failed PutJob: %v", err)
	}
	if n, _ := db.OutboxLen(); n != 0 {
		t.Fatalf("OutboxLen after a failed PutJob = %d, want 0", n)
	}
	if ok, _ := db.Processed("job-1"); ok {
		t.Fatal("processed id stored by a failed PutJob")
	}

	// A transaction that fails inside the database (here: a write to a bucket that is
	// gone) rolls back the record with it; concurrent good writers are not affected.
	if err := db.PutJob(record("job-2", t0, brr.StatusSucceeded), OutboxMsg{Subject: "s", MsgID: "m2"}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if i == 3 {
				errs[i] = db.update(true, func(tx *bbolt.Tx) error {
					if err := tx.Bucket(bucketJobs).Put([]byte("bad"), []byte("{}")); err != nil {
						return err
					}
					return errors.New("boom")
				})
				return
			}
			errs[i] = db.PutJob(record(fmt.Sprintf("c-%d", i), t0, brr.StatusSucceeded), OutboxMsg{Subject: "s", MsgID: fmt.Sprint(i)})
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if (err != nil) != (i == 3) {
			t.Fatalf("writer %d: err = %v", i, err)
		}
	}
	if _, err := db.Job("bad"); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("write of a failed transaction was kept: %v", err)
	}
	if n, _ := db.OutboxLen(); n != 8 {
		t.Fatalf("OutboxLen = %d, want 8 (job-2 and the 7 good writers)", n)
	}
}

func TestJobsNewestFirst(t *testing.T) {
	db := open(t)
	// Ids that sort the other way round from their creation times.
	for i := 0; i < 5; i++ {
		if err := db.PutJob(record(fmt.Sprintf("job-%d", 9-i), t0.Add(time.Duration(i)*time.Minute), brr.StatusAccepted)); err != nil {
			t.Fatal(err)
		}
	}
	// Re-putting a record with a new Created moves it.
	moved := record("job-9", t0.Add(time.Hour), brr.StatusStarted)
	if err := db.PutJob(moved); err != nil {
		t.Fatal(err)
	}
	recs, err := db.Jobs(3)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range recs {
		ids = append(ids, r.ID)
	}
	if want := []string{"job-9", "job-5", "job-6"}; !reflect.DeepEqual(ids, want) {
		t.Fatalf("Jobs(3) = %v, want %v", ids, want)
	}
	all, err := db.Jobs(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 5 {
		t.Fatalf("Jobs(0) = %d records, want 5 (one per id)", len(all))
	}
}

func TestPruneJobs(t *testing.T) {
	db := open(t)
	for i := 0; i < 6; i++ {
		rec := record(fmt.Sprintf("job-%d", i), t0.Add(time.Duration(i)*time.Hour), brr.StatusSucceeded)
		rec.Finished = rec.Created.Add(time.Minute)
		if err := db.PutJob(rec); err != nil {
			t.Fatal(err)
		}
	}
	n, err := db.PruneJobs(t0.Add(3 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n != 3 {
		t.Fatalf("PruneJobs = %d, want 3", n)
	}
	for i := 0; i < 6; i++ {
		id := fmt.Sprintf("job-%d", i)
		_, err := db.Job(id)
		ok, perr := db.Processed(id)
		if perr != nil {
			t.Fatal(perr)
		}
		if gone := i < 3; gone != errors.Is(err, brr.ErrNotFound) || gone == ok {
			t.Errorf("%s after prune: Job err = %v, processed = %v", id, err, ok)
		}
	}
	if recs, _ := db.Jobs(0); len(recs) != 3 {
		t.Fatalf("Jobs after prune = %d, want 3", len(recs))
	}
}

func TestConcurrentPutJob(t *testing.T) {
	db := open(t)
	const writers, each = 16, 50
	var wg sync.WaitGroup
	var failed atomic.Int32
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				rec := record(id, t0.Add(time.Duration(w*each+i)*time.Millisecond), brr.StatusSucceeded)
				if err := db.PutJob(rec, OutboxMsg{Subject: "brr.events.job.backup.succeeded", MsgID: id}); err != nil {
					t.Error(err)
					failed.Add(1)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if failed.Load() > 0 {
		return
	}
	recs, err := db.Jobs(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != writers*each {
		t.Fatalf("Jobs = %d records, want %d", len(recs), writers*each)
	}
	items, err := db.Outbox(0)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != writers*each {
		t.Fatalf("Outbox = %d items, want %d", len(items), writers*each)
	}
	// Each writer's messages are in the order it wrote them.
	last := map[string]int{}
	for _, it := range items {
		var w, i int
		if _, err := fmt.Sscanf(it.MsgID, "w%d-%d", &w, &i); err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprint(w)
		if prev, ok := last[key]; ok && i <= prev {
			t.Fatalf("outbox has %s after w%d-%d", it.MsgID, w, prev)
		}
		last[key] = i
	}
}

// BenchmarkPutJob measures PutJob with a record and one outbox message from parallel
// writers, with fsync, through this package's committer and, side by side, through
// bbolt's DB.Batch (which waits up to MaxBatchDelay, 10ms, for company). Each commit
// costs an fsync, so throughput grows with the number of writers sharing it.
func BenchmarkPutJob(b *testing.B) {
	for _, writers := range []int{8, 64} {
		for _, mode := range []string{"committer", "bolt-batch"} {
			b.Run(fmt.Sprintf("%s/writers=%d", mode, writers), func(b *testing.B) {
				db, err := Open(filepath.Join(b.TempDir(), "state.db"), Options{})
				if err != nil {
					b.Fatal(err)
				}
				defer db.Close()
				db.boltBatch = mode == "bolt-batch"
				b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
				var n atomic.Int64
				data := []byte(`{"v":1,"type":"job","status":"succeeded"}`)
				start := time.Now()
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						id := fmt.Sprintf("bench-%d", n.Add(1))
						rec := record(id, time.Now(), brr.StatusSucceeded)
						if err := db.PutJob(rec, OutboxMsg{Subject: "brr.events.job.ping.succeeded", MsgID: id, Data: data}); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "jobs/s")
			})
		}
	}
}
