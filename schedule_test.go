package brr_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/testkit"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/natstest"
)

// scheduleSetup is a server with the streams exactly as the workers make them (the job
// stream allows message schedules) and a client.
func scheduleSetup(t *testing.T) (*brr.Client, jetstream.JetStream) {
	t.Helper()
	srv := natstest.Start(t)
	_, js := srv.JetStream(t)
	if err := events.EnsureStreams(context.Background(), js, events.Config{}); err != nil {
		t.Fatalf("EnsureStreams: %v", err)
	}
	c, err := brr.NewClient(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	return c, js
}

func scheduleNames(t *testing.T, c *brr.Client) []string {
	t.Helper()
	all, err := c.Schedules(testkit.Context(t, 20*time.Second))
	if err != nil {
		t.Fatalf("Schedules: %v", err)
	}
	var names []string
	for _, s := range all {
		names = append(names, s.Name)
	}
	return names
}

func TestScheduleAddListReplaceRemove(t *testing.T) {
	c, js := scheduleSetup(t)
	ctx := testkit.Context(t, 20*time.Second)

	added, err := c.AddSchedule(ctx, "nightly", "0  30 2 * * *", "Europe/Paris", brr.BackupJob{Path: "/srv/app", Repo: "local"})
	if err != nil {
		t.Fatalf("AddSchedule: %v", err)
	}
	if added.Cron != "0 30 2 * * *" || added.Target != "brr.jobs.default.backup" || added.Job.ID != "s-nightly" {
		t.Errorf("added = %+v", added)
	}
	if _, err := c.AddSchedule(ctx, "canary", "@every 1h", "", brr.PingJob{}, brr.WithJobPool("edge"), brr.WithBy("ops")); err != nil {
		t.Fatalf("AddSchedule canary: %v", err)
	}

	list, err := c.Schedules(ctx)
	if err != nil {
		t.Fatalf("Schedules: %v", err)
	}
	if len(list) != 2 || list[0].Name != "canary" || list[1].Name != "nightly" {
		t.Fatalf("Schedules = %+v, want canary and nightly", list)
	}
	canary, nightly := list[0], list[1]
	if canary.Cron != "@every 1h" || canary.TimeZone != "" || canary.Target != "brr.jobs.edge.ping" || canary.Problem != "" {
		t.Errorf("canary = %+v", canary)
	}
	if j := canary.Job; j == nil || j.ID != "s-canary" || j.Pool != "edge" || j.Kind != brr.KindPing || j.By != "ops" {
		t.Errorf("canary job = %+v", canary.Job)
	}
	if nightly.Cron != "0 30 2 * * *" || nightly.TimeZone != "Europe/Paris" || nightly.Target != "brr.jobs.default.backup" {
		t.Errorf("nightly = %+v", nightly)
	}
	if a, ok := nightly.Job.Args.(*brr.BackupJob); !ok || a.Path != "/srv/app" || a.Repo != "local" || nightly.Job.By != "" {
		t.Errorf("nightly job = %+v", nightly.Job)
	}

	// The stored message: the job as its body, no Nats-Msg-Id (a replacement within the
	// duplicate window would be dropped), the schedule in its headers.
	st, err := js.Stream(ctx, "BRR_JOBS")
	if err != nil {
		t.Fatal(err)
	}
	raw, err := st.GetLastMsgForSubject(ctx, "brr.schedules.nightly")
	if err != nil {
		t.Fatal(err)
	}
	if raw.Header.Get(jetstream.MsgIDHeader) != "" || raw.Header.Get(jetstream.ScheduleTargetHeader) != "brr.jobs.default.backup" ||
		raw.Header.Get(jetstream.ScheduleTimeZoneHeader) != "Europe/Paris" {
		t.Errorf("stored headers = %v", raw.Header)
	}

	// Adding a name again replaces the schedule: one message, the new job.
	if _, err := c.AddSchedule(ctx, "nightly", "@daily", "", brr.BackupJob{Path: "/srv/other"}); err != nil {
		t.Fatalf("replace: %v", err)
	}
	list, err = c.Schedules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[1].Cron != "@daily" || list[1].TimeZone != "" || list[1].Job.Args.(*brr.BackupJob).Path != "/srv/other" {
		t.Fatalf("after replace: %+v", list)
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter("brr.schedules.nightly"))
	if err != nil {
		t.Fatal(err)
	}
	if got := info.State.Subjects["brr.schedules.nightly"]; got != 1 {
		t.Errorf("%d messages on brr.schedules.nightly after replace, want 1", got)
	}

	if err := c.RemoveSchedule(ctx, "nightly"); err != nil {
		t.Fatalf("RemoveSchedule: %v", err)
	}
	if got := scheduleNames(t, c); len(got) != 1 || got[0] != "canary" {
		t.Fatalf("after remove: %v", got)
	}
	err = c.RemoveSchedule(ctx, "nightly")
	if !errors.Is(err, brr.ErrNotFound) || !strings.Contains(err.Error(), "brr schedule ls") {
		t.Fatalf("remove twice: %v, want ErrNotFound that says how to list", err)
	}
}

// TestScheduleFiresAndStops checks on the real server that a schedule fires copies of
// its job into the job subject, and that none comes after RemoveSchedule.
func TestScheduleFiresAndStops(t *testing.T) {
	c, js := scheduleSetup(t)
	ctx := testkit.Context(t, 20*time.Second)
	cons, err := js.CreateConsumer(ctx, "BRR_JOBS", jetstream.ConsumerConfig{
		Durable: "test", FilterSubject: "brr.jobs.default.>", AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AddSchedule(ctx, "tick", "* * * * * *", "", brr.PingJob{}); err != nil {
		t.Fatalf("AddSchedule: %v", err)
	}
	fetch := func(wait time.Duration) []jetstream.Msg {
		batch, err := cons.Fetch(10, jetstream.FetchMaxWait(wait))
		if err != nil {
			t.Fatal(err)
		}
		var out []jetstream.Msg
		for m := range batch.Messages() {
			_ = m.Ack()
			out = append(out, m)
		}
		return out
	}
	var got []jetstream.Msg
	for deadline := time.Now().Add(10 * time.Second); len(got) < 2 && time.Now().Before(deadline); {
		got = append(got, fetch(time.Second)...)
	}
	if len(got) < 2 {
		t.Fatalf("%d fired jobs in 10s, want 2", len(got))
	}
	for _, m := range got {
		job, err := brr.DecodeJob(m.Data())
		if err != nil {
			t.Fatalf("fired job: %v", err)
		}
		if m.Subject() != "brr.jobs.default.ping" || job.ID != "s-tick" || m.Headers().Get(jetstream.SchedulerHeader) != "brr.schedules.tick" {
			t.Errorf("fired %s id %s headers %v", m.Subject(), job.ID, m.Headers())
		}
	}
	if err := c.RemoveSchedule(ctx, "tick"); err != nil {
		t.Fatal(err)
	}
	fetch(500 * time.Millisecond) // a tick fired as it was removed
	if late := fetch(2500 * time.Millisecond); len(late) != 0 {
		t.Fatalf("%d jobs fired after RemoveSchedule", len(late))
	}
}

func TestScheduleRefusesBadInput(t *testing.T) {
	c, _ := scheduleSetup(t)
	ctx := testkit.Context(t, 20*time.Second)
	for _, tt := range []struct {
		name, cron, tz string
		args           brr.JobArgs
		opts           []brr.PublishOption
		want           string
	}{
		{name: "", cron: "@daily", args: brr.PingJob{}, want: "schedule name"},
		{name: "a.b", cron: "@daily", args: brr.PingJob{}, want: "schedule name"},
		{name: ">", cron: "@daily", args: brr.PingJob{}, want: "schedule name"},
		{name: strings.Repeat("x", 65), cron: "@daily", args: brr.PingJob{}, want: "schedule name"},
		{name: "ok", cron: "0 2 * * *", args: brr.PingJob{}, want: `did you mean "0 0 2 * * *"`},
		{name: "ok", cron: "0 0 25 * * *", args: brr.PingJob{}, want: "hours field"},
		{name: "ok", cron: "@every 500ms", args: brr.PingJob{}, want: "at least 1s"},
		{name: "ok", cron: "@daily", tz: "Mars/Olympus", args: brr.PingJob{}, want: "unknown time zone"},
		{name: "ok", cron: "@daily", args: brr.BackupJob{Path: "relative"}, want: "not an absolute path"},
		{name: "ok", cron: "@daily", args: brr.PingJob{}, opts: []brr.PublishOption{brr.WithID("x")}, want: "do not set an id"},
		// Valid to the client, refused by the server: February 30 never comes.
		{name: "ok", cron: "0 0 0 30 2 *", args: brr.PingJob{}, want: "refuses cron"},
	} {
		_, err := c.AddSchedule(ctx, tt.name, tt.cron, tt.tz, tt.args, tt.opts...)
		if !errors.Is(err, brr.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("AddSchedule(%q, %q, %q): %v, want ErrInvalid saying %q", tt.name, tt.cron, tt.tz, err, tt.want)
		}
	}
	if got := scheduleNames(t, c); len(got) != 0 {
		t.Errorf("schedules stored from bad input: %v", got)
	}
	for _, name := range []string{"", ">", "*", "a.b"} {
		if err := c.RemoveSchedule(ctx, name); !errors.Is(err, brr.ErrInvalid) {
			t.Errorf("RemoveSchedule(%q): %v, want ErrInvalid", name, err)
		}
	}
}

// TestSchedulesShowsProblems lists messages on schedule subjects that will not work.
func TestSchedulesShowsProblems(t *testing.T) {
	c, js := scheduleSetup(t)
	ctx := testkit.Context(t, 20*time.Second)
	if _, err := js.Publish(ctx, "brr.schedules.plain", []byte(`{"v":1}`)); err != nil {
		t.Fatal(err)
	}
	msg := nats.NewMsg("brr.schedules.broken")
	msg.Data = []byte(`{"v":1,"id":"s-broken","kind":"nope","pool":"default","args":{}}`)
	if _, err := js.PublishMsg(ctx, msg, jetstream.WithScheduleCron("@daily"), jetstream.WithScheduleTarget("brr.jobs.default.ping")); err != nil {
		t.Fatal(err)
	}
	list, err := c.Schedules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 {
		t.Fatalf("Schedules = %+v, want 2", list)
	}
	if s := list[0]; s.Name != "broken" || s.Job != nil || s.Cron != "@daily" || !strings.Contains(s.Problem, "workers will refuse") {
		t.Errorf("broken = %+v", s)
	}
	if s := list[1]; s.Name != "plain" || s.Job != nil || !strings.Contains(s.Problem, "not a schedule") {
		t.Errorf("plain = %+v", s)
	}
}

func TestSchedulesWithoutStreams(t *testing.T) {
	srv := natstest.Start(t)
	c, err := brr.NewClient(srv.Connect(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Schedules(testkit.Context(t, 20*time.Second)); !errors.Is(err, brr.ErrNoStream) {
		t.Errorf("Schedules: %v, want ErrNoStream", err)
	}
	if err := c.RemoveSchedule(testkit.Context(t, 20*time.Second), "x"); !errors.Is(err, brr.ErrNoStream) {
		t.Errorf("RemoveSchedule: %v, want ErrNoStream", err)
	}
	if _, err := c.AddSchedule(testkit.Context(t, 20*time.Second), "x", "@daily", "", brr.PingJob{}); !errors.Is(err, brr.ErrNoStream) {
		t.Errorf("AddSchedule: %v, want ErrNoStream", err)
	}
}

func TestValidateCron(t *testing.T) {
	for _, tt := range []struct {
		expr, tz string
		want     string // "" for valid
	}{
		{"0 30 2 * * *", "", ""},
		{"*/15 * * * * *", "", ""},
		{"0 0 9-17/2 * * mon-fri", "Europe/Paris", ""},
		{"0 0 0 1 jan,JUL ?", "", ""},
		{"0 0 0 L * *", "", `"L" is not a number`},
		{"@hourly", "", ""},
		{"@daily", "America/New_York", ""},
		{"@every 90s", "", ""},
		{"", "", "empty cron"},
		{"@every", "", "@every DURATION"},
		{"@every 1x", "", "at least 1s"},
		{"@every 1h", "UTC", "takes no time zone"},
		{"@at 2026-12-01T00:00:00Z", "", "one-off"},
		{"@fortnightly", "", "not a known name"},
		{"* * * *", "", "has 4 fields"},
		{"0 0 0 0 * *", "", "day of month field"},
		{"0 0 0 * 13 *", "", "outside 1-12"},
		{"0 0 0 * * 7", "", "outside 0-6"},
		{"0 0 5-3 * * *", "", "runs backwards"},
		{"0 0 */0 * * *", "", "not a positive number"},
		{"60 * * * * *", "", "seconds field"},
		{"@daily", "Local", `"Local"`},
	} {
		err := brr.ValidateCron(tt.expr, tt.tz)
		switch {
		case tt.want == "" && err != nil:
			t.Errorf("ValidateCron(%q, %q): %v", tt.expr, tt.tz, err)
		case tt.want != "" && (!errors.Is(err, brr.ErrInvalid) || !strings.Contains(err.Error(), tt.want)):
			t.Errorf("ValidateCron(%q, %q): %v, want ErrInvalid saying %q", tt.expr, tt.tz, err, tt.want)
		}
	}
}
