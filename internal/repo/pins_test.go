package repo_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/repo"
)

func TestPins(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	a, _ := backup(t, r, "job-a", "/srv/a", t0, []byte("one"))
	b, _ := backup(t, r, "job-b", "/srv/a", t0.Add(time.Hour), []byte("two"))

	if pins, err := r.Pins(ctx); err != nil || len(pins) != 0 {
		t.Fatalf("Pins of a new repo = %v, %v; want none", pins, err)
	}
	created := t0.Add(48 * time.Hour)
	release := repo.Pin{Label: "release-1.2", Snapshot: a.ID, Reason: "before the migration", By: "ops@h1", Time: created}
	if err := r.SavePin(ctx, release); err != nil {
		t.Fatalf("SavePin: %v", err)
	}
	if err := r.SavePin(ctx, repo.Pin{Label: "audit", Snapshot: b.ID}); err != nil {
		t.Fatalf("SavePin: %v", err)
	}

	// Saving the same pin again (a redelivered job) succeeds and keeps the first one.
	again := release
	again.Time, again.By = created.Add(time.Hour), "someone else"
	if err := r.SavePin(ctx, again); err != nil {
		t.Fatalf("SavePin of the same label and snapshot: %v, want success", err)
	}
	// The label pinning another snapshot is a permanent conflict.
	err := r.SavePin(ctx, repo.Pin{Label: "release-1.2", Snapshot: b.ID})
	if !errors.Is(err, repo.ErrPinConflict) || !brr.IsPermanent(err) || !strings.Contains(err.Error(), a.ID.Short()) {
		t.Fatalf("SavePin of a label in use: err = %v, want a permanent conflict naming snapshot %s", err, a.ID.Short())
	}
	// A snapshot that does not exist cannot be pinned.
	if err := r.SavePin(ctx, repo.Pin{Label: "ghost", Snapshot: repo.ID{7}}); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("SavePin of a missing snapshot: err = %v, want not found", err)
	}

	// Another process opening the repository sees the pins, as saved.
	r2 := reopen(t, be)
	pins, err := r2.Pins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(pins) != 2 || pins[0].Label != "audit" || pins[1].Label != "release-1.2" {
		t.Fatalf("Pins = %+v, want audit and release-1.2, sorted", pins)
	}
	got := pins[1]
	if got.Snapshot != a.ID || got.Reason != release.Reason || got.By != release.By || !got.Time.Equal(created) {
		t.Fatalf("pin = %+v, want %+v", got, release)
	}
	if p, err := r2.Pin(ctx, "audit"); err != nil || p.Snapshot != b.ID || p.Time.IsZero() {
		t.Fatalf("Pin(audit) = %+v, %v", p, err)
	}

	// The object's name reveals nothing of the label.
	_ = be.List(ctx, repo.PinFile, func(fi repo.FileInfo) error {
		if strings.Contains(fi.Name, "audit") || strings.Contains(fi.Name, "release") {
			t.Errorf("pin object name %q shows its label", fi.Name)
		}
		return nil
	})

	if err := r2.RemovePin(ctx, "release-1.2"); err != nil {
		t.Fatalf("RemovePin: %v", err)
	}
	if err := r2.RemovePin(ctx, "release-1.2"); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("RemovePin of a removed pin: err = %v, want not found", err)
	}
	if _, err := r2.Pin(ctx, "release-1.2"); !errors.Is(err, brr.ErrNotFound) {
		t.Fatalf("Pin of a removed label: err = %v, want not found", err)
	}
	// The label is free again, for any snapshot.
	if err := r2.SavePin(ctx, repo.Pin{Label: "release-1.2", Snapshot: b.ID}); err != nil {
		t.Fatalf("SavePin of a freed label: %v", err)
	}
	if pins, err := r.Pins(ctx); err != nil || len(pins) != 2 || pins[1].Snapshot != b.ID {
		t.Fatalf("Pins after re-pinning = %+v, %v", pins, err)
	}
}

func TestDamagedPinStopsPins(t *testing.T) {
	ctx := context.Background()
	r, be := setup(t)
	a, _ := backup(t, r, "job-a", "/srv/a", time.Now(), []byte("one"))
	if err := r.SavePin(ctx, repo.Pin{Label: "keep", Snapshot: a.ID}); err != nil {
		t.Fatal(err)
	}
	var name string
	_ = be.List(ctx, repo.PinFile, func(fi repo.FileInfo) error { name = fi.Name; return nil })
	var path string
	_ = filepath.Walk(strings.TrimPrefix(be.Location(), "file://"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Name() == name {
			path = p
		}
		return nil
	})
	if path == "" {
		t.Fatalf("pin object %s not found on disk under %s", name, be.Location())
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	data[len(data)/2] ^= 1
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	// What a damaged pin pins is unknown: listing fails rather than leave it out.
	if _, err := r.Pins(ctx); !errors.Is(err, repo.ErrDamaged) {
		t.Fatalf("Pins with a damaged pin: err = %v, want ErrDamaged", err)
	}
}
