package state

import (
	"reflect"
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

func TestBlobMap(t *testing.T) {
	db := open(t)
	const scope, other = "repoA\x00repoB", "repoA\x00repoC"
	a1, a2, a3 := [32]byte{1}, [32]byte{2}, [32]byte{3}
	b1, b2 := [32]byte{0xb1}, [32]byte{0xb2}

	got, err := db.LookupBlobMap(scope, [][32]byte{a1})
	if err != nil || len(got) != 0 {
		t.Fatalf("LookupBlobMap before any write = %v, %v; want empty", got, err)
	}
	if err := db.UpdateBlobMap(scope, map[[32]byte][32]byte{a1: b1, a2: b2}); err != nil {
		t.Fatal(err)
	}
	if err := db.UpdateBlobMap(other, map[[32]byte][32]byte{a3: b1}); err != nil {
		t.Fatal(err)
	}
	if err := db.UpdateBlobMap("", map[[32]byte][32]byte{a3: b1}); err == nil {
		t.Fatal("UpdateBlobMap with an empty scope succeeded")
	}
	db = reopen(t, db)
	got, err = db.LookupBlobMap(scope, [][32]byte{a1, a2, a3})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[[32]byte][32]byte{a1: b1, a2: b2}; !reflect.DeepEqual(got, want) {
		t.Fatalf("LookupBlobMap = %v, want %v (a3 is only in the other scope)", got, want)
	}
	got, _ = db.LookupBlobMap(other, [][32]byte{a1, a3})
	if want := map[[32]byte][32]byte{a3: b1}; !reflect.DeepEqual(got, want) {
		t.Fatalf("LookupBlobMap of the other scope = %v, want %v", got, want)
	}
}

func TestReplicationCursors(t *testing.T) {
	db := open(t)
	if got, err := db.ReplicationCursors(); err != nil || len(got) != 0 {
		t.Fatalf("ReplicationCursors before any write = %v, %v; want none", got, err)
	}
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	oldest := now.Add(-3 * time.Hour)
	c1 := ReplicationCursor{From: "local", To: "offsite", LastRun: now, Copied: []string{"aa", "bb"}, BlobsSent: 9, BytesSent: 4096,
		Lag: brr.ReplicationLag{Behind: 1, Oldest: &oldest, AgeSeconds: 10800, Measured: now}}
	c2 := ReplicationCursor{From: "local", To: "cold", LastRun: now, Present: 1, Lag: brr.ReplicationLag{Measured: now}}
	c3 := ReplicationCursor{From: "offsite", To: "local", LastRun: now}
	for _, c := range []ReplicationCursor{c1, c2, c3} {
		if err := db.PutReplicationCursor(c); err != nil {
			t.Fatal(err)
		}
	}
	// A later run replaces the cursor of its pair.
	c1.Lag = brr.ReplicationLag{Measured: now.Add(time.Minute)}
	c1.Copied = []string{"cc"}
	if err := db.PutReplicationCursor(c1); err != nil {
		t.Fatal(err)
	}
	if err := db.PutReplicationCursor(ReplicationCursor{From: "local"}); err == nil {
		t.Fatal("PutReplicationCursor without a target succeeded")
	}
	db = reopen(t, db)
	got, err := db.ReplicationCursors()
	if err != nil {
		t.Fatal(err)
	}
	if want := []ReplicationCursor{c2, c1, c3}; !reflect.DeepEqual(got, want) {
		t.Fatalf("ReplicationCursors =\n%+v\nwant\n%+v", got, want)
	}
}
