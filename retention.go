package brr

import "fmt"

// RetentionPolicy says which snapshots to keep: the newest KeepLast, and the newest
// snapshot of each of the last KeepHourly hours, KeepDaily days, KeepWeekly ISO weeks,
// KeepMonthly months and KeepYearly years that have one. Snapshots are grouped by host and
// source, and each group is decided on its own. A snapshot that no rule keeps is removed,
// unless it is pinned by a recovery point. A policy with no rule keeps everything.
type RetentionPolicy struct {
	KeepLast    int `json:"keep_last,omitempty" yaml:"keep_last"`
	KeepHourly  int `json:"keep_hourly,omitempty" yaml:"keep_hourly"`
	KeepDaily   int `json:"keep_daily,omitempty" yaml:"keep_daily"`
	KeepWeekly  int `json:"keep_weekly,omitempty" yaml:"keep_weekly"`
	KeepMonthly int `json:"keep_monthly,omitempty" yaml:"keep_monthly"`
	KeepYearly  int `json:"keep_yearly,omitempty" yaml:"keep_yearly"`
	// Tags gives snapshots that carry a tag their own policy: a snapshot with several
	// such tags uses the first in sorted order. Snapshots with a tag policy form their
	// own groups. Policies under Tags may not have Tags.
	Tags map[string]RetentionPolicy `json:"tags,omitempty" yaml:"tags"`
}

// Empty reports whether the policy has no rule at all (it keeps every snapshot).
func (p RetentionPolicy) Empty() bool {
	return p.KeepLast == 0 && p.KeepHourly == 0 && p.KeepDaily == 0 && p.KeepWeekly == 0 &&
		p.KeepMonthly == 0 && p.KeepYearly == 0 && len(p.Tags) == 0
}

// Validate checks that every count is 0 to 100000 and that tag policies are flat.
func (p RetentionPolicy) Validate() error {
	for name, n := range map[string]int{"keep_last": p.KeepLast, "keep_hourly": p.KeepHourly,
		"keep_daily": p.KeepDaily, "keep_weekly": p.KeepWeekly, "keep_monthly": p.KeepMonthly, "keep_yearly": p.KeepYearly} {
		if n < 0 || n > 100000 {
			return fmt.Errorf("%w: retention %s %d: want 0-100000", ErrInvalid, name, n)
		}
	}
	if len(p.Tags) > 64 {
		return fmt.Errorf("%w: retention has %d tag policies, the limit is 64", ErrInvalid, len(p.Tags))
	}
	for tag, tp := range p.Tags {
		if !tagPattern.MatchString(tag) {
			return fmt.Errorf("%w: retention tag %q: use 1-128 letters, digits or _.:=-", ErrInvalid, tag)
		}
		if len(tp.Tags) > 0 {
			return fmt.Errorf("%w: retention policy of tag %q has tag policies of its own", ErrInvalid, tag)
		}
		if err := tp.Validate(); err != nil {
			return fmt.Errorf("tag %s: %w", tag, err)
		}
	}
	return nil
}
