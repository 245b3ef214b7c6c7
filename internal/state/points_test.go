package state

import (
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

func TestPoints(t *testing.T) {
	db := open(t)
	if pts, err := db.Points("local"); err != nil || len(pts) != 0 {
		t.Fatalf("Points of a new database = %v, %v; want none", pts, err)
	}
	if err := db.DeletePoint("local", "nope"); err != nil {
		t.Fatalf("DeletePoint of nothing: %v", err)
	}
	p1 := brr.RecoveryPoint{Repo: "local", Label: "release-1", Snapshot: "aaaa", Source: "/srv/app", Reason: "r", By: "me",
		Time: t0, SnapshotTime: t0.Add(-time.Hour)}
	p2 := brr.RecoveryPoint{Repo: "local", Label: "audit", Snapshot: "bbbb", Time: t0}
	other := brr.RecoveryPoint{Repo: "offsite", Label: "release-1", Snapshot: "cccc", Time: t0}
	for _, p := range []brr.RecoveryPoint{p1, p2, other} {
		if err := db.PutPoint(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.PutPoint(brr.RecoveryPoint{Repo: "local"}); err == nil {
		t.Fatal("PutPoint without a label succeeded")
	}
	db = reopen(t, db)
	pts, err := db.Points("local")
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != 2 || pts[0].Label != "audit" || pts[1].Label != "release-1" {
		t.Fatalf("Points(local) = %+v, want audit and release-1", pts)
	}
	if got := pts[1]; got.Snapshot != p1.Snapshot || got.Source != p1.Source || !got.SnapshotTime.Equal(p1.SnapshotTime) || got.By != "me" {
		t.Fatalf("point = %+v, want %+v", got, p1)
	}

	if err := db.DeletePoint("local", "audit"); err != nil {
		t.Fatal(err)
	}
	if pts, _ := db.Points("local"); len(pts) != 1 || pts[0].Label != "release-1" {
		t.Fatalf("Points after delete = %+v", pts)
	}

	// Replace makes the index what was read from the repository, for that repo only.
	fresh := brr.RecoveryPoint{Label: "new", Snapshot: "dddd", Time: t0}
	if err := db.ReplacePoints("local", []brr.RecoveryPoint{fresh}); err != nil {
		t.Fatal(err)
	}
	if pts, _ := db.Points("local"); len(pts) != 1 || pts[0].Label != "new" || pts[0].Repo != "local" {
		t.Fatalf("Points after replace = %+v, want only \"new\" of repo local", pts)
	}
	if pts, _ := db.Points("offsite"); len(pts) != 1 || pts[0].Snapshot != "cccc" {
		t.Fatalf("Points(offsite) after replacing local = %+v", pts)
	}
	if err := db.ReplacePoints("local", nil); err != nil {
		t.Fatal(err)
	}
	if pts, _ := db.Points("local"); len(pts) != 0 {
		t.Fatalf("Points after replace with none = %+v", pts)
	}
}
