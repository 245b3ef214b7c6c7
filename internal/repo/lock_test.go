package repo_test

import (
	"context"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
)

func TestLockWriterRefreshesAndReleases(t *testing.T) {
	defer repo.SetLockRefresh(10 * time.Millisecond)()
	ctx := context.Background()
	r, _ := newGCRepo(t)

	release, err := r.LockWriter(ctx, "backup j1")
	if err != nil {
		t.Fatalf("LockWriter: %v", err)
	}
	locks, err := repo.Locks(ctx, r)
	if err != nil || len(locks) != 1 {
		t.Fatalf("Locks: %d, %v", len(locks), err)
	}
	l := locks[0]
	if l.Who != "backup j1" || l.Host != gcOpts.Host || l.Created.IsZero() || len(l.Plans) != 0 {
		t.Fatalf("lock %+v", l)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		locks, err = repo.Locks(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if len(locks) == 1 && locks[0].Refreshed.After(l.Refreshed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the lock was not refreshed")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if !locks[0].Created.Equal(l.Created) {
		t.Fatalf("refresh changed Created from %v to %v", l.Created, locks[0].Created)
	}
	release()
	if locks, err = repo.Locks(ctx, r); err != nil || len(locks) != 0 {
		t.Fatalf("after release: %d locks, %v", len(locks), err)
	}
	time.Sleep(30 * time.Millisecond) // no refresh brings it back
	if locks, err = repo.Locks(ctx, r); err != nil || len(locks) != 0 {
		t.Fatalf("after release and a while: %d locks, %v", len(locks), err)
	}
}

// TestLockWriterRecordsPlans: a lock names the plans its Repository knows, including one
// it learns from the reload LockWriter does, and those plans' packs are dead from then on.
func TestLockWriterRecordsPlans(t *testing.T) {
	ctx := context.Background()
	a, be := newGCRepo(t)
	b := openGCRepo(t, be)
	pack := repo.ID{1}
	name, err := repo.SavePlan(ctx, a, []repo.ID{pack})
	if err != nil {
		t.Fatal(err)
	}
	if repo.PackDead(b, pack) {
		t.Fatal("B knows the plan before reloading")
	}
	release, err := b.LockWriter(ctx, "backup j2")
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	locks, err := repo.Locks(ctx, b)
	if err != nil || len(locks) != 1 {
		t.Fatalf("Locks: %d, %v", len(locks), err)
	}
	if got := locks[0].Plans; len(got) != 1 || got[0] != name {
		t.Fatalf("lock names plans %v, want [%s]", got, name)
	}
	if !repo.PackDead(b, pack) {
		t.Fatal("the plan's pack is not dead in B")
	}
}
