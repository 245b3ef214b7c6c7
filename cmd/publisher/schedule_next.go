package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/brr-dev/brr"
)

// cronParser reads schedules as the NATS server does (its parser is robfig/cron's):
// six fields, seconds first, and the @-names.
var cronParser = cron.NewParser(cron.Second | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// nextRun is when the server fires schedule s next, after now, as the server computes
// it: cron fields in the schedule's time zone (UTC when none); "@every D" from when the
// schedule was stored, D after D. Zero when s cannot be read.
func nextRun(s *brr.Schedule, now time.Time) time.Time {
	expr := strings.TrimSpace(s.Cron)
	if d, ok := strings.CutPrefix(expr, "@every "); ok {
		every, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil || every < time.Second || s.Stored.IsZero() {
			return time.Time{}
		}
		from := s.Stored.UTC().Round(time.Second)
		if !from.After(now) {
			from = from.Add(now.Sub(from).Truncate(every))
		}
		for !from.After(now) {
			from = from.Add(every)
		}
		return from
	}
	loc := time.UTC
	if s.TimeZone != "" {
		l, err := time.LoadLocation(s.TimeZone)
		if err != nil {
			return time.Time{}
		}
		loc = l
	}
	sched, err := cronParser.Parse(expr)
	if err != nil {
		return time.Time{}
	}
	return sched.Next(now.In(loc))
}

// nextRunText is nextRun for the NEXT column: the local time and how far off it is.
func nextRunText(s *brr.Schedule, now time.Time) string {
	next := nextRun(s, now)
	if next.IsZero() {
		return "-"
	}
	return fmt.Sprintf("%s (in %s)", next.Local().Format(time.DateTime), next.Sub(now).Round(time.Second))
}
