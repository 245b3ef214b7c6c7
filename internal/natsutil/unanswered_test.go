package natsutil

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
)

func TestUnanswered(t *testing.T) {
	ctx := context.Background()
	noResponders := fmt.Errorf("fetch: %w", nats.ErrNoResponders)
	var u Unanswered
	for i := 0; i < UnansweredMax; i++ {
		if err := u.Again(ctx, noResponders); err != nil {
			t.Fatalf("Again after %d unanswered fetches = %v, want nil (ask again)", i, err)
		}
	}
	if err := u.Again(ctx, noResponders); !errors.Is(err, nats.ErrNoResponders) {
		t.Fatalf("Again after %d unanswered fetches = %v, want no responders", UnansweredMax, err)
	}
	u.Answered()
	if err := u.Again(ctx, noResponders); err != nil {
		t.Fatalf("Again after Answered = %v, want nil", err)
	}

	other := errors.New("stream deleted")
	if err := (&Unanswered{}).Again(ctx, other); err != other {
		t.Fatalf("Again(%v) = %v, want it back at once", other, err)
	}

	done, cancel := context.WithCancel(ctx)
	cancel()
	if err := (&Unanswered{}).Again(done, noResponders); !errors.Is(err, context.Canceled) {
		t.Fatalf("Again with a done context = %v, want context.Canceled", err)
	}
}
