package main

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/file"
	"github.com/nats-io/nats.go/jetstream"
)

// TestInitRepoOnce starts four "workers" at once on a location that holds no repository:
// exactly one creates it and the others open that one, so they all share one master key
// (the same repository id) instead of each writing its own.
func TestInitRepoOnce(t *testing.T) {
	ns := natstest.Start(t)
	js, err := jetstream.New(ns.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cfg := events.Config{Subjects: brr.Subjects{}, Worker: "w"}
	if err := events.EnsureStreams(ctx, js, cfg); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	const workers = 4
	var (
		wg      sync.WaitGroup
		mu      sync.Mutex
		ids     = map[string]int{}
		created int
	)
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cfg := cfg
			cfg.Worker = fmt.Sprintf("w%d", i) // each worker has its own id, as in a real pool
			leases, err := events.NewLeases(ctx, js, cfg)
			if err != nil {
				t.Error(err)
				return
			}
			be, err := file.Open(dir)
			if err != nil {
				t.Error(err)
				return
			}
			r, made, err := initRepo(ctx, be, []byte("secret-key-of-the-test"), repo.Options{}, leases, nil)
			if err != nil {
				t.Errorf("initRepo: %v", err)
				return
			}
			defer r.Close()
			mu.Lock()
			ids[r.ID()]++
			if made {
				created++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if created != 1 || len(ids) != 1 {
		t.Fatalf("%d workers created the repository, %d repository ids seen (%v); want 1 and 1", created, len(ids), ids)
	}
	be, err := file.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	r, err := repo.Open(ctx, be, []byte("secret-key-of-the-test"), repo.Options{})
	if err != nil {
		t.Fatalf("open the repository afterwards: %v", err)
	}
	defer r.Close()
	for id := range ids {
		if r.ID() != id {
			t.Fatalf("repository id %s, the workers saw %s", r.ID(), id)
		}
	}
}
