package clock

import (
	"context"
	"testing"
	"time"
)

func TestSleep(t *testing.T) {
	if !Sleep(context.Background(), time.Millisecond) {
		t.Errorf("Sleep with a live context = false, want true")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	// An hour: the test would hang, not pass, if a done context did not end the wait.
	if Sleep(ctx, time.Hour) {
		t.Errorf("Sleep with a done context = true, want false")
	}
}
