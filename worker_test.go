package brr

import (
	"testing"
	"time"
)

func TestLatestWorkers(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	hb := func(id string, ago time.Duration, interval float64) WorkerInfo {
		return WorkerInfo{ID: id, Time: now.Add(-ago), IntervalSeconds: interval}
	}
	for _, tt := range []struct {
		name  string
		beats []WorkerInfo
		want  []string // id, "!" suffix when missing
	}{
		{"none", nil, []string{}},
		{"latest of each wins", []WorkerInfo{hb("b", 40*time.Second, 15), hb("b", 5*time.Second, 15), hb("a", 10*time.Second, 15)}, []string{"a", "b"}},
		{"three intervals is still live", []WorkerInfo{hb("a", 45*time.Second, 15)}, []string{"a"}},
		{"past three intervals is missing", []WorkerInfo{hb("a", 46*time.Second, 15)}, []string{"a!"}},
		{"the latest decides", []WorkerInfo{hb("a", 5*time.Minute, 15), hb("a", time.Second, 15)}, []string{"a"}},
		{"forgotten after 15 minutes", []WorkerInfo{hb("a", 16*time.Minute, 15), hb("b", 14*time.Minute, 15)}, []string{"b!"}},
		{"or ten long intervals", []WorkerInfo{hb("a", 90*time.Minute, 600)}, []string{"a!"}},
		{"no interval counts as 15s", []WorkerInfo{hb("a", 50*time.Second, 0)}, []string{"a!"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := LatestWorkers(tt.beats, now)
			if got == nil || len(got) != len(tt.want) {
				t.Fatalf("LatestWorkers = %+v, want %v", got, tt.want)
			}
			for i, w := range got {
				id := w.ID
				if w.Missing {
					id += "!"
				}
				if id != tt.want[i] {
					t.Fatalf("LatestWorkers = %+v, want %v", got, tt.want)
				}
			}
		})
	}
}
