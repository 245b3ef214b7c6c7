package natsobj_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/brr-dev/brr/internal/natstest"
	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/natsobj"
)

func TestConformance(t *testing.T) {
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	n := 0
	backendtest.Run(t, func(t *testing.T) repo.Backend {
		n++
		be, err := natsobj.Open(context.Background(), js, fmt.Sprintf("repo-%d", n), 1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { be.Close() })
		return be
	})
}

func TestReopen(t *testing.T) {
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	ctx := context.Background()
	be, err := natsobj.Open(ctx, js, "brr-offsite", 1)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := be.Location(), "nats://brr-offsite"; got != want {
		t.Fatalf("Location() = %q, want %q", got, want)
	}
	h := repo.Handle{Type: repo.SnapshotFile, Name: backendtest.RandomID(t)}
	if err := be.Save(ctx, h, repo.NewByteReader([]byte("snapshot"))); err != nil {
		t.Fatal(err)
	}
	// A second worker, on its own connection, opens the same bucket and sees the object.
	_, js2 := s.JetStream(t)
	be2, err := natsobj.Open(ctx, js2, "brr-offsite", 1)
	if err != nil {
		t.Fatal(err)
	}
	got, err := be2.Load(ctx, h, 0, 0)
	if err != nil || !bytes.Equal(got, []byte("snapshot")) {
		t.Fatalf("Load from a second Open = %q, %v", got, err)
	}
}

func TestTooLarge(t *testing.T) {
	s := natstest.Start(t)
	_, js := s.JetStream(t)
	ctx := context.Background()
	be, err := natsobj.Open(ctx, js, "repo", 1)
	if err != nil {
		t.Fatal(err)
	}
	h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
	if err := be.Save(ctx, h, repo.NewByteReader(make([]byte, natsobj.MaxObjectSize+1))); err == nil {
		t.Fatal("Save of more than MaxObjectSize succeeded")
	}
	if _, err := be.Stat(ctx, h); !repo.IsNotExist(err) {
		t.Fatalf("Stat after a refused Save: err = %v, want ErrNotExist", err)
	}
}
