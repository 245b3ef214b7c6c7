package retention_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/retention"
)

// now is the clock of the table tests: Thursday 2026-11-26 15:00 UTC.
var now = time.Date(2026, 11, 26, 15, 0, 0, 0, time.UTC)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// sn is a snapshot of host "h", source "/src" unless changed by the options.
func sn(id, when string, opts ...func(*retention.Snapshot)) retention.Snapshot {
	s := retention.Snapshot{ID: id, Time: at(when), Host: "h", Source: "/src"}
	for _, o := range opts {
		o(&s)
	}
	return s
}

func tags(t ...string) func(*retention.Snapshot)   { return func(s *retention.Snapshot) { s.Tags = t } }
func pinned(l ...string) func(*retention.Snapshot) { return func(s *retention.Snapshot) { s.Pins = l } }
func source(p string) func(*retention.Snapshot)    { return func(s *retention.Snapshot) { s.Source = p } }
func host(h string) func(*retention.Snapshot)      { return func(s *retention.Snapshot) { s.Host = h } }

// render is "id: reason; reason" per decision, in the result's order; "id: -" for removed.
func render(ds []brr.SnapshotDecision) string {
	var lines []string
	for _, d := range ds {
		r := "-"
		if d.Keep {
			r = strings.Join(d.Reasons, "; ")
		}
		lines = append(lines, d.ID+": "+r)
	}
	return strings.Join(lines, "\n")
}

func TestApply(t *testing.T) {
	tests := []struct {
		name   string
		policy brr.RetentionPolicy
		now    time.Time // zero: now
		sns    []retention.Snapshot
		want   []string // "id: reasons", newest first
	}{
		{
			name:   "empty policy keeps everything",
			policy: brr.RetentionPolicy{},
			sns:    []retention.Snapshot{sn("a", "2026-11-20T10:00:00Z"), sn("b", "2026-11-26T10:00:00Z")},
			want:   []string{"b: no retention policy", "a: no retention policy"},
		},
		{
			name:   "keep last 3 of 5, input in any order",
			policy: brr.RetentionPolicy{KeepLast: 3},
			sns: []retention.Snapshot{
				sn("c", "2026-11-24T10:00:00Z"), sn("a", "2026-11-22T10:00:00Z"), sn("e", "2026-11-26T10:00:00Z"),
				sn("b", "2026-11-23T10:00:00Z"), sn("d", "2026-11-25T10:00:00Z"),
			},
			want: []string{"e: last 1/3", "d: last 2/3", "c: last 3/3", "b: -", "a: -"},
		},
		{
			name:   "keep last more than there are",
			policy: brr.RetentionPolicy{KeepLast: 10},
			sns:    []retention.Snapshot{sn("a", "2026-11-22T10:00:00Z"), sn("b", "2026-11-23T10:00:00Z")},
			want:   []string{"b: last 1/10", "a: last 2/10"},
		},
		{
			name:   "hourly keeps the newest of each hour that has one",
			policy: brr.RetentionPolicy{KeepHourly: 3},
			sns: []retention.Snapshot{
				sn("a", "2026-11-26T14:50:00Z"), sn("b", "2026-11-26T14:10:00Z"),
				sn("c", "2026-11-26T11:59:59Z"), // 12:00 and 13:00 have none: they do not count
				sn("d", "2026-11-26T11:00:00Z"), sn("e", "2026-11-26T09:30:00Z"), sn("f", "2026-11-26T08:30:00Z"),
			},
			want: []string{"a: hourly 2026-11-26T14", "b: -", "c: hourly 2026-11-26T11", "d: -", "e: hourly 2026-11-26T09", "f: -"},
		},
		{
			name:   "daily skips days without a snapshot",
			policy: brr.RetentionPolicy{KeepDaily: 2},
			sns: []retention.Snapshot{
				sn("a", "2026-11-26T01:00:00Z"), sn("b", "2026-11-26T00:00:00Z"),
				sn("c", "2026-11-20T23:59:59Z"), sn("d", "2026-11-19T12:00:00Z"),
			},
			want: []string{"a: daily 2026-11-26", "b: -", "c: daily 2026-11-20", "d: -"},
		},
		{
			name:   "days are UTC days",
			policy: brr.RetentionPolicy{KeepDaily: 5},
			now:    at("2026-11-28T00:00:00Z"),
			sns: []retention.Snapshot{
				// 23:30 in New York is 04:30 the next day in UTC; both are on 2026-11-27.
				{ID: "a", Time: time.Date(2026, 11, 26, 23, 30, 0, 0, time.FixedZone("EST", -5*3600)), Host: "h", Source: "/src"},
				sn("b", "2026-11-27T01:00:00Z"),
				sn("c", "2026-11-26T23:00:00Z"),
			},
			want: []string{"a: daily 2026-11-27", "b: -", "c: daily 2026-11-26"},
		},
		{
			name:   "weekly across the turn of a 53-week year",
			policy: brr.RetentionPolicy{KeepWeekly: 3},
			now:    at("2027-01-05T00:00:00Z"),
			sns: []retention.Snapshot{
				sn("mon", "2027-01-04T00:00:00Z"), // 2027-W01
				sn("fri", "2027-01-01T12:00:00Z"), // a Friday of 2026-W53
				sn("m28", "2026-12-28T12:00:00Z"), // Monday of 2026-W53
				sn("s27", "2026-12-27T12:00:00Z"), // Sunday of 2026-W52
				sn("old", "2026-12-21T12:00:00Z"), // 2026-W52, but not its newest
			},
			want: []string{"mon: weekly 2027-W01", "fri: weekly 2026-W53", "m28: -", "s27: weekly 2026-W52", "old: -"},
		},
		{
			name:   "weekly: the first days of January belong to the previous ISO year",
			policy: brr.RetentionPolicy{KeepWeekly: 2},
			sns:    []retention.Snapshot{sn("a", "2022-01-02T10:00:00Z"), sn("b", "2021-12-31T10:00:00Z"), sn("c", "2021-01-03T10:00:00Z")},
			want:   []string{"a: weekly 2021-W52", "b: -", "c: weekly 2020-W53"},
		},
		{
			name:   "monthly and yearly",
			policy: brr.RetentionPolicy{KeepMonthly: 2, KeepYearly: 3},
			sns: []retention.Snapshot{
				sn("nov", "2026-11-02T00:00:00Z"), sn("oct", "2026-10-31T23:59:59Z"), sn("sep", "2026-09-15T00:00:00Z"),
				sn("dec25", "2025-12-31T23:59:59Z"), sn("jan25", "2025-01-01T00:00:00Z"), sn("y23", "2023-06-01T00:00:00Z"),
				sn("y22", "2022-06-01T00:00:00Z"),
			},
			want: []string{
				"nov: monthly 2026-11; yearly 2026", "oct: monthly 2026-10", "sep: -",
				"dec25: yearly 2025", "jan25: -", "y23: yearly 2023", "y22: -",
			},
		},
		{
			name:   "several rules keep one snapshot, reasons in rule order",
			policy: brr.RetentionPolicy{KeepLast: 1, KeepHourly: 1, KeepDaily: 2, KeepWeekly: 1, KeepMonthly: 1, KeepYearly: 1},
			sns:    []retention.Snapshot{sn("a", "2026-11-26T14:00:00Z"), sn("b", "2026-11-26T13:00:00Z"), sn("c", "2026-11-25T13:00:00Z")},
			want: []string{
				"a: last 1/1; hourly 2026-11-26T14; daily 2026-11-26; weekly 2026-W48; monthly 2026-11; yearly 2026",
				"b: -",
				"c: daily 2026-11-25",
			},
		},
		{
			name:   "groups: each host and source on its own",
			policy: brr.RetentionPolicy{KeepLast: 1},
			sns: []retention.Snapshot{
				sn("a1", "2026-11-26T10:00:00Z"), sn("a2", "2026-11-25T10:00:00Z"),
				sn("b1", "2026-11-20T10:00:00Z", source("/other")), sn("b2", "2026-11-19T10:00:00Z", source("/other")),
				sn("c1", "2026-11-18T10:00:00Z", host("h2")), sn("c2", "2026-11-17T10:00:00Z", host("h2")),
			},
			want: []string{"a1: last 1/1", "a2: -", "b1: last 1/1", "b2: -", "c1: last 1/1", "c2: -"},
		},
		{
			name: "tag policies form their own groups; untagged use the policy",
			policy: brr.RetentionPolicy{KeepLast: 1, Tags: map[string]brr.RetentionPolicy{
				"monthly": {KeepMonthly: 2},
			}},
			sns: []retention.Snapshot{
				sn("t1", "2026-11-26T10:00:00Z", tags("monthly")),
				sn("u1", "2026-11-25T10:00:00Z"),
				sn("t2", "2026-11-24T10:00:00Z", tags("monthly")),
				sn("u2", "2026-11-23T10:00:00Z", tags("other")),
				sn("t3", "2026-10-10T10:00:00Z", tags("monthly")),
				sn("t4", "2026-09-10T10:00:00Z", tags("monthly")),
			},
			want: []string{"t1: monthly 2026-11", "u1: last 1/1", "t2: -", "u2: -", "t3: monthly 2026-10", "t4: -"},
		},
		{
			name: "the first tag in sorted order that has a policy picks it",
			policy: brr.RetentionPolicy{KeepLast: 1, Tags: map[string]brr.RetentionPolicy{
				"b-keep2": {KeepLast: 2},
				"c-keep3": {KeepLast: 3},
			}},
			sns: []retention.Snapshot{
				sn("x1", "2026-11-26T10:00:00Z", tags("z", "c-keep3", "b-keep2")),
				sn("x2", "2026-11-25T10:00:00Z", tags("b-keep2")),
				sn("x3", "2026-11-24T10:00:00Z", tags("b-keep2", "a")),
				sn("y1", "2026-11-23T10:00:00Z", tags("c-keep3")),
			},
			want: []string{"x1: last 1/2", "x2: last 2/2", "x3: -", "y1: last 1/3"},
		},
		{
			name: "a tag policy without counts keeps its snapshots",
			policy: brr.RetentionPolicy{KeepLast: 1, Tags: map[string]brr.RetentionPolicy{
				"forever": {},
			}},
			sns: []retention.Snapshot{
				sn("f1", "2026-11-26T10:00:00Z", tags("forever")), sn("f2", "2026-01-01T10:00:00Z", tags("forever")),
				sn("u1", "2026-11-25T10:00:00Z"), sn("u2", "2026-11-24T10:00:00Z"),
			},
			want: []string{"f1: no retention policy", "u1: last 1/1", "u2: -", "f2: no retention policy"},
		},
		{
			name: "a policy with only tag policies keeps the untagged snapshots",
			policy: brr.RetentionPolicy{Tags: map[string]brr.RetentionPolicy{
				"hourly": {KeepLast: 1},
			}},
			sns: []retention.Snapshot{
				sn("h1", "2026-11-26T10:00:00Z", tags("hourly")), sn("h2", "2026-11-26T09:00:00Z", tags("hourly")),
				sn("u1", "2026-11-25T10:00:00Z"),
			},
			want: []string{"h1: last 1/1", "h2: -", "u1: no retention policy"},
		},
		{
			name:   "pinned snapshots are kept, one reason per label, sorted",
			policy: brr.RetentionPolicy{KeepLast: 1},
			sns: []retention.Snapshot{
				sn("a", "2026-11-26T10:00:00Z", pinned("release")),
				sn("b", "2026-11-25T10:00:00Z"),
				sn("c", "2026-01-01T10:00:00Z", pinned("quarter", "audit", "quarter")),
			},
			want: []string{"a: last 1/1; pinned release", "b: -", "c: pinned audit; pinned quarter"},
		},
		{
			name:   "pins with an empty policy",
			policy: brr.RetentionPolicy{},
			sns:    []retention.Snapshot{sn("a", "2026-11-26T10:00:00Z", pinned("p"))},
			want:   []string{"a: no retention policy; pinned p"},
		},
		{
			name:   "future snapshots are kept and use up no slot or period",
			policy: brr.RetentionPolicy{KeepLast: 1, KeepDaily: 1},
			sns: []retention.Snapshot{
				sn("far", "2026-11-26T17:00:00Z"),  // 2h ahead
				sn("edge", "2026-11-26T16:00:01Z"), // just over 1h ahead
				sn("near", "2026-11-26T15:59:59Z"), // under 1h ahead: fine
				sn("now", "2026-11-26T15:00:00Z"),
			},
			want: []string{
				"far: in the future (clock skew?)", "edge: in the future (clock skew?)",
				"near: last 1/1; daily 2026-11-26", "now: -",
			},
		},
		{
			name:   "a future snapshot that is pinned",
			policy: brr.RetentionPolicy{KeepLast: 1},
			sns:    []retention.Snapshot{sn("f", "2027-01-01T00:00:00Z", pinned("x")), sn("a", "2026-11-26T10:00:00Z")},
			want:   []string{"f: in the future (clock skew?); pinned x", "a: last 1/1"},
		},
		{
			name:   "ties are ordered by id",
			policy: brr.RetentionPolicy{KeepLast: 1, KeepDaily: 1},
			sns: []retention.Snapshot{
				sn("b", "2026-11-26T10:00:00Z"), sn("c", "2026-11-26T10:00:00Z"), sn("a", "2026-11-26T10:00:00Z"),
			},
			want: []string{"a: last 1/1; daily 2026-11-26", "b: -", "c: -"},
		},
		{
			name:   "no snapshots",
			policy: brr.RetentionPolicy{KeepLast: 1},
			want:   nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := tt.now
			if clock.IsZero() {
				clock = now
			}
			got := retention.Apply(tt.sns, tt.policy, clock)
			if g, w := render(got), strings.Join(tt.want, "\n"); g != w {
				t.Fatalf("decisions:\n%s\nwant:\n%s", g, w)
			}
			for _, d := range got {
				if d.Keep != (len(d.Reasons) > 0) {
					t.Errorf("%s: Keep = %v with reasons %q", d.ID, d.Keep, d.Reasons)
				}
			}
		})
	}
}

// TestApplyCopiesFields checks that decisions carry the snapshot's fields, and that Apply
// changes neither its input nor shares slices with it.
func TestApplyCopiesFields(t *testing.T) {
	in := []retention.Snapshot{
		sn("a", "2026-11-25T10:00:00Z", tags("x", "y"), host("web1"), source("/srv/app")),
		sn("b", "2026-11-26T10:00:00Z", pinned("p2", "p1")),
	}
	got := retention.Apply(in, brr.RetentionPolicy{KeepLast: 1}, now)
	if got[0].ID != "b" || got[1].ID != "a" {
		t.Fatalf("order = %s, %s; want b, a", got[0].ID, got[1].ID)
	}
	a := got[1]
	if a.Host != "web1" || a.Source != "/srv/app" || !a.Time.Equal(at("2026-11-25T10:00:00Z")) || !slices.Equal(a.Tags, []string{"x", "y"}) {
		t.Errorf("decision of a = %+v", a)
	}
	a.Tags[0] = "changed"
	if in[0].Tags[0] != "x" || in[0].ID != "a" || !slices.Equal(in[1].Pins, []string{"p2", "p1"}) {
		t.Errorf("input changed: %+v", in)
	}
}

// TestApplyProperties checks random snapshot sets against what the rules promise, with a
// brute-force reference for every period rule.
func TestApplyProperties(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	start := time.Date(2024, 12, 20, 0, 0, 0, 0, time.UTC)
	for iter := range 300 {
		var sns []retention.Snapshot
		n := rng.IntN(60)
		span := []time.Duration{6 * time.Hour, 10 * 24 * time.Hour, 800 * 24 * time.Hour}[rng.IntN(3)]
		clock := start.Add(span)
		for i := range n {
			s := retention.Snapshot{
				ID:     fmt.Sprintf("s%03d", i),
				Time:   start.Add(time.Duration(rng.Int64N(int64(span + 3*time.Hour)))).Truncate(time.Minute * time.Duration(1+rng.IntN(30))),
				Host:   []string{"h1", "h2"}[rng.IntN(2)],
				Source: []string{"/a", "/b"}[rng.IntN(2)],
			}
			if rng.IntN(4) == 0 {
				s.Tags = []string{[]string{"t1", "t2", "x"}[rng.IntN(3)]}
			}
			if rng.IntN(8) == 0 {
				s.Pins = []string{fmt.Sprintf("pin%d", rng.IntN(3))}
			}
			sns = append(sns, s)
		}
		p := randomPolicy(rng)
		if rng.IntN(3) == 0 {
			p.Tags = map[string]brr.RetentionPolicy{"t1": randomPolicy(rng), "t2": {}}
		}
		got := retention.Apply(sns, p, clock)
		t.Run(fmt.Sprint(iter), func(t *testing.T) { checkProperties(t, sns, p, clock, got) })
		if t.Failed() {
			return
		}
	}
}

func randomPolicy(rng *rand.Rand) brr.RetentionPolicy {
	r := func() int {
		if rng.IntN(2) == 0 {
			return 0
		}
		return rng.IntN(6)
	}
	return brr.RetentionPolicy{KeepLast: r(), KeepHourly: r(), KeepDaily: r(), KeepWeekly: r(), KeepMonthly: r(), KeepYearly: r()}
}

func checkProperties(t *testing.T, sns []retention.Snapshot, p brr.RetentionPolicy, clock time.Time, got []brr.SnapshotDecision) {
	t.Helper()
	if len(got) != len(sns) {
		t.Fatalf("%d decisions for %d snapshots", len(got), len(sns))
	}
	byID := map[string]retention.Snapshot{}
	for _, s := range sns {
		byID[s.ID] = s
	}
	dec := map[string]brr.SnapshotDecision{}
	for i, d := range got {
		if _, ok := byID[d.ID]; !ok {
			t.Fatalf("decision for unknown snapshot %s", d.ID)
		}
		dec[d.ID] = d
		if i > 0 {
			prev := got[i-1]
			if prev.Time.Before(d.Time) || prev.Time.Equal(d.Time) && prev.ID > d.ID {
				t.Fatalf("decisions not newest first: %s (%s) before %s (%s)", prev.ID, prev.Time, d.ID, d.Time)
			}
		}
		if d.Keep != (len(d.Reasons) > 0) {
			t.Fatalf("%s: Keep = %v with reasons %q", d.ID, d.Keep, d.Reasons)
		}
		for _, l := range byID[d.ID].Pins {
			if !slices.Contains(d.Reasons, "pinned "+l) {
				t.Fatalf("%s pinned by %s has reasons %q", d.ID, l, d.Reasons)
			}
		}
	}
	if len(dec) != len(sns) {
		t.Fatalf("%d distinct decisions for %d snapshots", len(dec), len(sns))
	}

	// The reference: group, order, and apply each rule by brute force.
	groups := map[string][]retention.Snapshot{}
	policies := map[string]brr.RetentionPolicy{}
	for _, s := range got {
		snap := byID[s.ID]
		key, gp := "", p
		for _, tag := range slices.Sorted(slices.Values(snap.Tags)) {
			if tp, ok := p.Tags[tag]; ok {
				key, gp = tag, tp
				break
			}
		}
		g := snap.Host + "|" + snap.Source + "|" + key
		groups[g] = append(groups[g], snap) // already newest first
		policies[g] = gp
	}
	for g, members := range groups {
		gp := policies[g]
		var live []retention.Snapshot
		for _, s := range members {
			future := s.Time.After(clock.Add(time.Hour))
			if hasReason(dec[s.ID], "in the future (clock skew?)") != future {
				t.Fatalf("group %s: %s future=%v, reasons %q", g, s.ID, future, dec[s.ID].Reasons)
			}
			if !future {
				live = append(live, s)
			}
		}
		counts := []int{gp.KeepHourly, gp.KeepDaily, gp.KeepWeekly, gp.KeepMonthly, gp.KeepYearly}
		if gp.KeepLast == 0 && slices.Max(counts) == 0 {
			for _, s := range members {
				if !hasReason(dec[s.ID], "no retention policy") {
					t.Fatalf("group %s without a policy: %s has reasons %q", g, s.ID, dec[s.ID].Reasons)
				}
			}
			continue
		}
		// Keep last: exactly min(N, live) newest, numbered in order.
		for i, s := range live {
			want := ""
			if i < gp.KeepLast {
				want = fmt.Sprintf("last %d/%d", i+1, gp.KeepLast)
			}
			if got := reasonsWith(dec[s.ID], "last "); !slices.Equal(got, nonEmpty(want)) {
				t.Fatalf("group %s: %s (#%d) keep-last reasons %q, want %q", g, s.ID, i+1, got, want)
			}
		}
		// Each period rule: the newest snapshot of each of the N most recent periods.
		for r, name := range []string{"hourly", "daily", "weekly", "monthly", "yearly"} {
			newest := map[string]string{} // period -> id of its newest live snapshot
			var periods []string
			for _, s := range live {
				per := period(name, s.Time.UTC())
				if _, ok := newest[per]; !ok {
					newest[per] = s.ID
					periods = append(periods, per)
				}
			}
			slices.Sort(periods)
			slices.Reverse(periods)
			want := map[string]string{}
			for _, per := range periods[:min(counts[r], len(periods))] {
				want[newest[per]] = name + " " + per
			}
			for _, s := range members {
				if got := reasonsWith(dec[s.ID], name+" "); !slices.Equal(got, nonEmpty(want[s.ID])) {
					t.Fatalf("group %s: %s %s reasons %q, want %q", g, s.ID, name, got, want[s.ID])
				}
			}
		}
	}
}

func period(name string, t time.Time) string {
	switch name {
	case "hourly":
		return t.Format("2006-01-02T15")
	case "daily":
		return t.Format("2006-01-02")
	case "weekly":
		y, w := t.ISOWeek()
		return fmt.Sprintf("%04d-W%02d", y, w)
	case "monthly":
		return t.Format("2006-01")
	}
	return t.Format("2006")
}

func hasReason(d brr.SnapshotDecision, r string) bool { return slices.Contains(d.Reasons, r) }

func reasonsWith(d brr.SnapshotDecision, prefix string) []string {
	var out []string
	for _, r := range d.Reasons {
		if strings.HasPrefix(r, prefix) {
			out = append(out, r)
		}
	}
	return out
}

func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
