package main

import (
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

func TestNextRun(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC) // a Thursday
	for _, tt := range []struct {
		cron, tz string
		stored   time.Time
		want     time.Time
	}{
		{"0 30 2 * * *", "", time.Time{}, time.Date(2026, 11, 27, 2, 30, 0, 0, time.UTC)},
		{"0 30 2 * * *", "Europe/Paris", time.Time{}, time.Date(2026, 11, 27, 1, 30, 0, 0, time.UTC)},
		{"0 0 13 * * *", "Europe/Paris", time.Time{}, time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC).Add(24 * time.Hour)},
		{"@hourly", "", time.Time{}, time.Date(2026, 11, 26, 13, 0, 0, 0, time.UTC)},
		{"@daily", "", time.Time{}, time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)},
		{"0 0 4 * * sun", "", time.Time{}, time.Date(2026, 11, 29, 4, 0, 0, 0, time.UTC)},
		{"*/15 * * * * *", "", time.Time{}, time.Date(2026, 11, 26, 12, 0, 15, 0, time.UTC)},
		// @every counts from when the schedule was stored.
		{"@every 15m", "", now.Add(-40 * time.Minute), now.Add(5 * time.Minute)},
		{"@every 1h", "", now.Add(-10 * time.Minute), now.Add(50 * time.Minute)},
		{"@every 15m", "", time.Time{}, time.Time{}},
		{"nonsense", "", time.Time{}, time.Time{}},
	} {
		s := &brr.Schedule{Cron: tt.cron, TimeZone: tt.tz, Stored: tt.stored}
		if got := nextRun(s, now); !got.Equal(tt.want) {
			t.Errorf("nextRun(%q, %q) = %v, want %v", tt.cron, tt.tz, got, tt.want)
		}
	}
}
