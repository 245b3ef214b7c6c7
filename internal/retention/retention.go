// Package retention decides which snapshots a retention policy keeps, and why. It is pure
// logic: no I/O, and the clock is an argument.
//
// Apply decides each snapshot by these rules:
//
//   - Groups. Snapshots are grouped by (host, source, policy key) and each group is
//     decided on its own: one source's snapshots never use up another's slots. The policy
//     key of a snapshot is the first of its tags, in sorted order, that the policy's Tags
//     map has; the group uses that tag's policy. A snapshot with no such tag has key "" and
//     uses the policy itself (its keep counts; its Tags play no further part).
//   - Order. Within a group snapshots are taken newest first; snapshots with the same time
//     are taken in ascending order of ID, so that the result does not depend on the order
//     of the input.
//   - Keep last. KeepLast N keeps the N newest snapshots, reasons "last 1/N" (the newest)
//     to "last N/N".
//   - Buckets. KeepHourly, KeepDaily, KeepWeekly, KeepMonthly and KeepYearly N keep the
//     newest snapshot of each of the N most recent hours, days, ISO 8601 weeks, months and
//     years that have a snapshot; a period without a snapshot does not count (restic's
//     semantics). Periods are taken in UTC. The reasons name the period: "hourly
//     2026-11-26T14", "daily 2026-11-26", "weekly 2026-W48" (ISO week-numbering year, so
//     2027-01-01 is in "weekly 2026-W53"), "monthly 2026-11", "yearly 2026". A rule
//     keeps the newest snapshot of each period and nothing else: unlike recent restic
//     versions, a rule with counts left over does not also keep the oldest snapshot.
//   - Several rules may keep one snapshot; it gets a reason from each, in the order
//     last, hourly, daily, weekly, monthly, yearly.
//   - Pins. A snapshot pinned by recovery points is always kept, with one reason
//     "pinned <label>" per label (sorted, duplicates dropped), after the rules' reasons.
//     A pinned snapshot takes part in the rules like any other: it uses up its keep-last
//     slot and its periods.
//   - No policy. A group whose policy has no keep count (all zero) keeps every snapshot,
//     reason "no retention policy". That covers an empty policy, a tag policy without
//     counts, and the untagged snapshots of a policy that has only tag policies: a policy
//     never removes what it says nothing about.
//   - Clock skew. A snapshot whose time is more than an hour after now is kept, with the
//     first reason "in the future (clock skew?)", and takes no part in the rules: it uses
//     up no keep-last slot and no period, so that a host with a wrong clock cannot push
//     good snapshots out.
//
// A kept snapshot has at least one reason; a removed one has none.
package retention

import (
	"cmp"
	"fmt"
	"slices"
	"time"

	"github.com/brr-dev/brr"
)

// Snapshot is what retention needs to know about one snapshot.
type Snapshot struct {
	ID     string
	Time   time.Time
	Host   string
	Source string
	Tags   []string
	// Pins are the labels of the recovery points that pin this snapshot.
	Pins []string
}

// Reasons that are not a period or a keep-last slot.
const (
	ReasonNoPolicy = "no retention policy"
	ReasonFuture   = "in the future (clock skew?)"
)

// maxSkew is how far after now a snapshot may be before it counts as in the future.
const maxSkew = time.Hour

// Apply decides, for each snapshot, whether policy p keeps it and why (see the package
// comment for the rules). now is the clock. The result has one decision per input
// snapshot, newest first (ties in ascending order of ID).
func Apply(sns []Snapshot, p brr.RetentionPolicy, now time.Time) []brr.SnapshotDecision {
	sorted := slices.Clone(sns)
	slices.SortStableFunc(sorted, func(a, b Snapshot) int {
		if c := b.Time.Compare(a.Time); c != 0 {
			return c
		}
		return cmp.Compare(a.ID, b.ID)
	})
	out := make([]brr.SnapshotDecision, len(sorted))
	groups := make(map[groupKey][]int)
	var keys []groupKey
	for i, s := range sorted {
		out[i] = brr.SnapshotDecision{ID: s.ID, Time: s.Time, Host: s.Host, Source: s.Source, Tags: slices.Clone(s.Tags)}
		k := groupKey{host: s.Host, source: s.Source, tag: policyKey(s.Tags, p)}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	for _, k := range keys {
		gp := p
		if k.tag != "" {
			gp = p.Tags[k.tag]
		}
		decide(sorted, out, groups[k], gp, now)
	}
	for i, s := range sorted {
		for _, label := range pins(s.Pins) {
			out[i].Reasons = append(out[i].Reasons, "pinned "+label)
		}
		out[i].Keep = len(out[i].Reasons) > 0
	}
	return out
}

type groupKey struct{ host, source, tag string }

// policyKey is the first of tags, in sorted order, that has a policy under p.Tags, or "".
func policyKey(tags []string, p brr.RetentionPolicy) string {
	if len(p.Tags) == 0 {
		return ""
	}
	key := ""
	for _, t := range tags {
		if _, ok := p.Tags[t]; ok && (key == "" || t < key) {
			key = t
		}
	}
	return key
}

// rule keeps the newest snapshot of each of the count most recent periods that have one.
type rule struct {
	name   string
	count  int
	period func(t time.Time) string
}

func rules(p brr.RetentionPolicy) []rule {
	return []rule{
		{"hourly", p.KeepHourly, func(t time.Time) string { return t.Format("2006-01-02T15") }},
		{"daily", p.KeepDaily, func(t time.Time) string { return t.Format("2006-01-02") }},
		{"weekly", p.KeepWeekly, func(t time.Time) string {
			y, w := t.ISOWeek()
			return fmt.Sprintf("%04d-W%02d", y, w)
		}},
		{"monthly", p.KeepMonthly, func(t time.Time) string { return t.Format("2006-01") }},
		{"yearly", p.KeepYearly, func(t time.Time) string { return t.Format("2006") }},
	}
}

// decide gives reasons to the snapshots of one group: idx indexes sorted and out, newest
// first, and p is the group's policy.
func decide(sorted []Snapshot, out []brr.SnapshotDecision, idx []int, p brr.RetentionPolicy, now time.Time) {
	var live []int // not in the future: these take part in the rules
	for _, i := range idx {
		if sorted[i].Time.After(now.Add(maxSkew)) {
			out[i].Reasons = append(out[i].Reasons, ReasonFuture)
			continue
		}
		live = append(live, i)
	}
	rs := rules(p)
	if p.KeepLast <= 0 && !slices.ContainsFunc(rs, func(r rule) bool { return r.count > 0 }) {
		for _, i := range idx {
			out[i].Reasons = append(out[i].Reasons, ReasonNoPolicy)
		}
		return
	}
	for n, i := range live {
		if n >= p.KeepLast {
			break
		}
		out[i].Reasons = append(out[i].Reasons, fmt.Sprintf("last %d/%d", n+1, p.KeepLast))
	}
	for _, r := range rs {
		left, last := r.count, ""
		for _, i := range live {
			if left <= 0 {
				break
			}
			// Newest first, so the first snapshot of a period is its newest.
			if period := r.period(sorted[i].Time.UTC()); period != last {
				out[i].Reasons = append(out[i].Reasons, r.name+" "+period)
				last = period
				left--
			}
		}
	}
}

// pins returns the labels sorted, without duplicates.
func pins(labels []string) []string {
	if len(labels) == 0 {
		return nil
	}
	s := slices.Clone(labels)
	slices.Sort(s)
	return slices.Compact(s)
}
