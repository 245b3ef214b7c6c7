package events

import (
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	const s = time.Second
	tests := []struct {
		n    int
		r    float64
		want time.Duration
	}{
		{1, 0.5, 1 * s},
		{2, 0.5, 2 * s},
		{3, 0.5, 4 * s},
		{9, 0.5, 256 * s},
		{10, 0.5, 5 * time.Minute}, // 512s capped at 300s
		{1000, 0.5, 5 * time.Minute},
		{0, 0.5, 1 * s},
		{1, 0, 800 * time.Millisecond},  // -20%
		{1, 1, 1200 * time.Millisecond}, // +20% (r approaches 1)
		{10, 0, 4 * time.Minute},
		{4, 0.25, 7200 * time.Millisecond}, // 8s -10%
	}
	for _, tt := range tests {
		if got := backoff(tt.n, s, 5*time.Minute, tt.r); got != tt.want {
			t.Errorf("backoff(%d, r=%v) = %v, want %v", tt.n, tt.r, got, tt.want)
		}
	}
}

func TestConfigDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	if c.Concurrency != 4 || c.AckWait != 5*time.Second || c.MaxDeliver != 10 || c.BackoffBase != time.Second ||
		c.BackoffMax != 5*time.Minute || c.DrainTimeout != 30*time.Second || c.StreamReplicas != 1 ||
		c.EventsMaxAge != 7*24*time.Hour || c.DLQMaxAge != 30*24*time.Hour || c.DedupWindow != 10*time.Minute ||
		c.LeaseTTL != 5*time.Second || c.ResultsTTL != 7*24*time.Hour || len(c.Pools) != 1 || c.Pools[0] != "default" {
		t.Errorf("defaults = %+v", c)
	}
	c = Config{Concurrency: 7, Pools: []string{"a", "b"}, BackoffBase: time.Minute, BackoffMax: time.Second}.withDefaults()
	if c.Concurrency != 7 || len(c.Pools) != 2 || c.BackoffMax != time.Minute {
		t.Errorf("withDefaults changed set fields: %+v", c)
	}
}
