package brr

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Schedule is a job that the NATS server publishes on a cron schedule. It is stored as one
// message on brr.schedules.<name> in the job stream: the job as a template in its body,
// the schedule in its headers. On every tick the server publishes a copy of the template
// to Target, brr.jobs.<pool>.<kind>, where one worker of the pool takes it like any job.
// There is no leader election and no timer in the workers: in a cluster the stream's
// leader fires it, once.
//
// All copies carry the template's id, "s-<name>"; the worker gives each fired job its
// own id, "s-<name>-<stream sequence of the copy>", and By "schedule <name>" unless the
// template has one. See docs/schedules.md.
type Schedule struct {
	Name string `json:"name"`
	// Cron is the server's schedule expression: six cron fields, seconds first
	// ("0 30 2 * * *"), a predefined "@hourly", "@daily", "@weekly", "@monthly",
	// "@yearly", or "@every <duration>" of at least 1s.
	Cron string `json:"cron"`
	// TimeZone is the IANA zone the cron fields are read in; empty means UTC.
	TimeZone string `json:"time_zone,omitempty"`
	// Job is the template of the fired jobs; nil when the stored body does not decode
	// (Problem says why).
	Job *Job `json:"job"`
	// Target is the subject the server fires copies to.
	Target string `json:"target"`
	// Problem, set only by Schedules, says why the stored schedule will not work: its
	// body is not a valid job or it is not a schedule message.
	Problem string `json:"problem,omitempty"`
	// Stored, set only by Schedules, is when the schedule message was stored: where an
	// "@every" interval counts from.
	Stored time.Time `json:"stored,omitzero"`
}

// timeZoneInvalid is the server's error code for an unknown Nats-Schedule-Time-Zone;
// nats.go v1.55.0 has no constant for it.
const timeZoneInvalid jetstream.ErrorCode = 10223

// ScheduleID is the job id of the template of schedule name: "s-<name>".
func ScheduleID(name string) string { return "s-" + name }

// ValidateScheduleName checks a schedule name, which is a subject token: 1 to 64
// letters, digits, '-' or '_', starting with a letter or digit.
func ValidateScheduleName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%w: schedule name %q: use 1-64 letters, digits, '-' or '_', starting with a letter or digit", ErrInvalid, name)
	}
	return nil
}

// AddSchedule stores a schedule called name that fires a job with args on cron (see
// Schedule.Cron), read in time zone tz (IANA name; empty means UTC; only for cron
// fields, not "@every"). A schedule of that name is replaced: the server keeps one
// message per schedule subject. The options are those of Publish, but WithID is refused:
// a schedule's template id is ScheduleID(name). Without WithBy the fired jobs say
// "schedule <name>".
//
// The name, the expression, the zone and the job are checked before anything is sent;
// each mistake is an error wrapping ErrInvalid that says what to change.
func (c *Client) AddSchedule(ctx context.Context, name, cron, tz string, args JobArgs, opts ...PublishOption) (*Schedule, error) {
	if err := ValidateScheduleName(name); err != nil {
		return nil, err
	}
	cron = strings.Join(strings.Fields(cron), " ")
	if err := ValidateCron(cron, tz); err != nil {
		return nil, fmt.Errorf("schedule %s: %w", name, err)
	}
	var o publishOptions
	for _, opt := range opts {
		opt(&o)
	}
	if o.id != "" {
		return nil, fmt.Errorf("%w: schedule %s: its jobs' ids are made from the schedule's name (%s-<n>); do not set an id", ErrInvalid, name, ScheduleID(name))
	}
	job, err := c.newJob(args, opts)
	if err != nil {
		return nil, err
	}
	job.ID = ScheduleID(name)
	msg, err := c.jobMsg(job)
	if err != nil {
		return nil, fmt.Errorf("schedule %s: %w", name, err)
	}
	// The template has no Nats-Msg-Id: replacing the schedule within the duplicate window
	// would be dropped as a duplicate. The server strips it from fired copies anyway.
	msg.Header.Del(jetstream.MsgIDHeader)
	msg.Subject = c.subj.Schedule(name)
	sched := &Schedule{Name: name, Cron: cron, TimeZone: tz, Job: job, Target: c.subj.Job(job.Pool, job.Kind)}
	popts := []jetstream.PublishOpt{
		jetstream.WithExpectStream(c.subj.JobsStream()),
		jetstream.WithScheduleCron(cron),
		jetstream.WithScheduleTarget(sched.Target),
	}
	if tz != "" {
		popts = append(popts, jetstream.WithScheduleTimeZone(tz))
	}
	if err := c.checkConnected(); err != nil {
		return nil, fmt.Errorf("add schedule %s: %w", name, err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := c.js.PublishMsg(ctx, msg, popts...); err != nil {
		return nil, fmt.Errorf("add schedule %s: %w", name, c.scheduleErr(err, cron, tz))
	}
	return sched, nil
}

// scheduleErr explains the server's refusals of a schedule message.
func (c *Client) scheduleErr(err error, cron, tz string) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case jetstream.JSErrCodeSchedulePatternInvalid:
			return fmt.Errorf("%w: the server refuses cron %q: it is not valid or never fires within five years (%v)", ErrInvalid, cron, err)
		case timeZoneInvalid:
			return fmt.Errorf("%w: the server does not know time zone %q (%v): use an IANA name such as Europe/Paris", ErrInvalid, tz, err)
		case jetstream.JSErrCodeMessageSchedulesDisabled:
			return fmt.Errorf("stream %s does not allow message schedules: it was made by an older brr-worker; start a current brr-worker against %s, which updates it (%w)", c.subj.JobsStream(), c.where(), err)
		}
	}
	return c.publishErr(err)
}

// predefined are the server's named schedules.
var predefined = []string{"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}

// cronFields are the six fields of a cron expression, in order, with their bounds and
// the names they accept.
var cronFields = []struct {
	name     string
	min, max int
	names    []string // names[i] is the value min+i
}{
	{"seconds", 0, 59, nil},
	{"minutes", 0, 59, nil},
	{"hours", 0, 23, nil},
	{"day of month", 1, 31, nil},
	{"month", 1, 12, []string{"jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"}},
	{"day of week", 0, 6, []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}},
}

// ValidateCron checks a schedule expression and its time zone as the server reads them
// (see Schedule.Cron): six fields, each a comma-separated list of "*", "?", N, N-M, with
// an optional "/STEP", months and weekdays also by name (jan, mon); or a predefined name;
// or "@every DURATION" of at least 1s, which takes no time zone. The server has the last
// word: it also refuses an expression that never fires within five years (February 30).
func ValidateCron(expr, tz string) error {
	if err := validateCron(expr, tz); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

func validateCron(expr, tz string) error {
	if tz != "" {
		if tz == "Local" {
			return errors.New(`time zone "Local" would be the server's zone: name one, such as Europe/Paris, or leave it empty for UTC`)
		}
		if _, err := time.LoadLocation(tz); err != nil {
			return fmt.Errorf("unknown time zone %q: use an IANA name such as Europe/Paris, or leave it empty for UTC", tz)
		}
	}
	fields := strings.Fields(expr)
	switch {
	case len(fields) == 0:
		return errors.New(`empty cron expression: give six fields, seconds first ("0 30 2 * * *"), @daily, or "@every 1h"`)
	case fields[0] == "@every":
		if len(fields) != 2 {
			return fmt.Errorf(`cron %q: want "@every DURATION", such as "@every 15m"`, expr)
		}
		d, err := time.ParseDuration(fields[1])
		if err != nil || d < time.Second {
			return fmt.Errorf(`cron %q: the interval must be a duration of at least 1s, such as 30s, 15m or 2h`, expr)
		}
		if tz != "" {
			return fmt.Errorf(`cron %q: "@every" is an interval and takes no time zone; drop the time zone or use cron fields`, expr)
		}
		return nil
	case fields[0] == "@at":
		return fmt.Errorf(`cron %q: a one-off time is not a schedule; publish the job when it is due`, expr)
	case strings.HasPrefix(fields[0], "@"):
		if len(fields) == 1 && slices.Contains(predefined, fields[0]) {
			return nil
		}
		return fmt.Errorf(`cron %q: not a known name; use one of %s, or "@every DURATION"`, expr, strings.Join(predefined, ", "))
	case len(fields) == 5:
		return fmt.Errorf(`cron %q has 5 fields; brr schedules take 6, seconds first: did you mean %q?`, expr, "0 "+expr)
	case len(fields) != 6:
		return fmt.Errorf(`cron %q has %d fields; want 6: seconds minutes hours day-of-month month day-of-week`, expr, len(fields))
	}
	for i, f := range cronFields {
		for _, part := range strings.Split(fields[i], ",") {
			if err := validateCronRange(part, f.min, f.max, f.names); err != nil {
				return fmt.Errorf("cron %q: %s field %q: %v", expr, f.name, fields[i], err)
			}
		}
	}
	return nil
}

// validateCronRange checks one element of a field's list: "*", "?", N or N-M, with an
// optional "/STEP".
func validateCronRange(part string, lo, hi int, names []string) error {
	base, step, hasStep := strings.Cut(part, "/")
	if hasStep {
		n, err := strconv.Atoi(step)
		if err != nil || n < 1 {
			return fmt.Errorf("step %q is not a positive number", step)
		}
	}
	if base == "*" || base == "?" {
		return nil
	}
	from, to, isRange := strings.Cut(base, "-")
	start, err := cronValue(from, lo, hi, names)
	if err != nil {
		return err
	}
	end := start
	if isRange {
		if end, err = cronValue(to, lo, hi, names); err != nil {
			return err
		}
	}
	if start > end {
		return fmt.Errorf("range %q runs backwards", base)
	}
	return nil
}

func cronValue(s string, lo, hi int, names []string) (int, error) {
	if i := slices.Index(names, strings.ToLower(s)); i >= 0 {
		return lo + i, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is outside %d-%d", n, lo, hi)
	}
	return n, nil
}

// Schedules lists the schedules stored in the job stream, by name.
func (c *Client) Schedules(ctx context.Context) ([]*Schedule, error) {
	if err := c.checkConnected(); err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	stream, err := c.jobStream(ctx)
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	// A work-queue stream refuses the ordered consumer that scan uses; the subjects of the
	// schedules and a get of each last message need none.
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(c.subj.AllSchedules()))
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", c.publishErr(err))
	}
	var out []*Schedule
	for _, subject := range slices.Sorted(maps.Keys(info.State.Subjects)) {
		raw, err := stream.GetLastMsgForSubject(ctx, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("list schedules: read %s: %w", subject, err)
		}
		out = append(out, c.decodeSchedule(raw))
	}
	return out, nil
}

// decodeSchedule reads a stored schedule message; what is wrong with it goes into Problem.
func (c *Client) decodeSchedule(raw *jetstream.RawStreamMsg) *Schedule {
	s := &Schedule{
		Name:     strings.TrimPrefix(raw.Subject, c.subj.Schedule("")),
		Cron:     raw.Header.Get(jetstream.ScheduleHeader),
		TimeZone: raw.Header.Get(jetstream.ScheduleTimeZoneHeader),
		Target:   raw.Header.Get(jetstream.ScheduleTargetHeader),
		Stored:   raw.Time,
	}
	job, err := DecodeJob(raw.Data)
	switch {
	case s.Cron == "":
		s.Problem = "not a schedule: the message has no " + jetstream.ScheduleHeader + " header, so the server never fires it"
	case err != nil:
		s.Problem = fmt.Sprintf("the workers will refuse its jobs: %v", err)
	default:
		s.Job = job
	}
	return s
}

// RemoveSchedule removes schedule name; the server fires it no more. A name with no
// schedule is an error wrapping ErrNotFound. Jobs it fired before stay queued and run.
func (c *Client) RemoveSchedule(ctx context.Context, name string) error {
	if err := ValidateScheduleName(name); err != nil {
		return err
	}
	if err := c.checkConnected(); err != nil {
		return fmt.Errorf("remove schedule %s: %w", name, err)
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	stream, err := c.jobStream(ctx)
	if err != nil {
		return fmt.Errorf("remove schedule %s: %w", name, err)
	}
	subject := c.subj.Schedule(name)
	if _, err := stream.GetLastMsgForSubject(ctx, subject); errors.Is(err, jetstream.ErrMsgNotFound) {
		return fmt.Errorf("remove schedule %s: %w (list them with: brr schedule ls)", name, ErrNotFound)
	} else if err != nil {
		return fmt.Errorf("remove schedule %s: %w", name, err)
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
		return fmt.Errorf("remove schedule %s: purge %s: %w", name, subject, err)
	}
	return nil
}

// jobStream opens the job stream, with a clear error when no worker has made it.
func (c *Client) jobStream(ctx context.Context) (jetstream.Stream, error) {
	stream, err := c.js.Stream(ctx, c.subj.JobsStream())
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, c.noStream(c.subj.JobsStream())
	}
	if err != nil {
		return nil, c.publishErr(err)
	}
	return stream, nil
}
