package main

import (
	"context"
	"strings"
	"testing"

	"github.com/brr-dev/brr"
	"github.com/brr-dev/brr/internal/events"
	"github.com/brr-dev/brr/internal/natstest"
)

// scheduleServer is a server with the streams as the workers make them: the job stream
// allows message schedules.
func scheduleServer(t *testing.T) string {
	t.Helper()
	srv := natstest.StartListening(t)
	_, js := srv.JetStream(t)
	if err := events.EnsureStreams(context.Background(), js, events.Config{}); err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL()
}

func TestScheduleAddLsRm(t *testing.T) {
	t.Parallel()
	url := scheduleServer(t)

	r := brrCmd(t, url, "schedule", "add", "nightly", "--cron", "0 30 2 * * *", "--tz", "Europe/Paris", "--",
		"backup", "data/app", "--repo", "local", "--tag", "nightly")
	if r.code != 0 || !strings.Contains(r.stdout, `schedule nightly: backup {"path":"/home/u/data/app","repo":"local","tags":["nightly"]} to brr.jobs.default.backup on "0 30 2 * * *" (Europe/Paris)`) {
		t.Fatalf("schedule add: %v", r)
	}
	// --pool among the job command's words sends the job to that pool; so does the
	// global --pool before it.
	r = brrCmd(t, url, "schedule", "add", "web1", "--cron", "@every 15m", "--", "verify", "--read-data", "--pool", "web1")
	if r.code != 0 || !strings.Contains(r.stdout, "to brr.jobs.web1.verify") {
		t.Fatalf("schedule add with the job's --pool: %v", r)
	}
	r = brrCmd(t, url, "--pool", "edge", "schedule", "add", "edge", "--cron", "@hourly", "--", "verify")
	if r.code != 0 || !strings.Contains(r.stdout, "to brr.jobs.edge.verify") {
		t.Fatalf("schedule add with the global --pool: %v", r)
	}

	r = brrCmd(t, url, "schedule", "ls")
	if r.code != 0 {
		t.Fatalf("schedule ls: %v", r)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("schedule ls: %v", r)
	}
	for i, want := range [][]string{
		{"edge", "@hourly", "UTC", "brr.jobs.edge.verify", "verify {}"},
		{"nightly", "0 30 2 * * *", "Europe/Paris", "brr.jobs.default.backup", `backup {"path":"/home/u/data/app"`},
		{"web1", "@every 15m", "UTC", "brr.jobs.web1.verify", `verify {"read_data":true}`},
	} {
		for _, w := range append(want, "(in ") { // the next run
			if !strings.Contains(lines[i+1], w) {
				t.Errorf("schedule ls line %d lacks %q: %q", i+1, w, lines[i+1])
			}
		}
	}

	r = brrCmd(t, url, "schedule", "--json")
	if r.code != 0 {
		t.Fatalf("schedule --json: %v", r)
	}
	objs := jsonLines(t, "schedule --json", r.stdout)
	if len(objs) != 3 || objs[1]["name"] != "nightly" || objs[1]["time_zone"] != "Europe/Paris" || objs[1]["next"] == nil || objs[2]["next"] == nil {
		t.Fatalf("schedule --json: %v", r)
	}
	job, _ := objs[1]["job"].(map[string]any)
	if job["id"] != brr.ScheduleID("nightly") || job["kind"] != "backup" || job["by"] != nil {
		t.Errorf("nightly's job = %v, want id s-nightly, no by", job)
	}

	r = brrCmd(t, url, "schedule", "rm", "nightly")
	if r.code != 0 || r.stdout != "schedule nightly removed\n" {
		t.Fatalf("schedule rm: %v", r)
	}
	r = brrCmd(t, url, "schedule", "rm", "nightly")
	if r.code != 1 || !strings.Contains(r.stderr, "not found") {
		t.Fatalf("schedule rm twice: %v", r)
	}
	r = brrCmd(t, url, "schedule", "ls", "--json")
	if objs := jsonLines(t, "schedule ls --json", r.stdout); r.code != 0 || len(objs) != 2 {
		t.Fatalf("schedule ls after rm: %v", r)
	}
}

func TestScheduleUsageErrors(t *testing.T) {
	t.Parallel()
	url := scheduleServer(t)
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"schedule", "add", "x", "--cron", "@daily", "backup", "/a"}, "after --"},
		{[]string{"schedule", "add", "x", "--cron", "@daily", "--"}, "no job command after --"},
		{[]string{"schedule", "add", "x", "y", "--cron", "@daily", "--", "backup", "/a"}, "one NAME before --"},
		{[]string{"schedule", "add", "x", "--", "backup", "/a"}, "--cron is required"},
		{[]string{"schedule", "add", "x.y", "--cron", "@daily", "--", "backup", "/a"}, "schedule name"},
		{[]string{"schedule", "add", "x", "--cron", "0 2 * * *", "--", "backup", "/a"}, `did you mean "0 0 2 * * *"`},
		{[]string{"schedule", "add", "x", "--cron", "@every 1h", "--tz", "Europe/Paris", "--", "backup", "/a"}, "no time zone"},
		{[]string{"schedule", "add", "x", "--cron", "@daily", "--tz", "Nowhere/Else", "--", "backup", "/a"}, "unknown time zone"},
		{[]string{"schedule", "add", "x", "--cron", "@daily", "--", "backup", "/a", "--wait"}, "nobody waits"},
		{[]string{"schedule", "add", "x", "--cron", "@daily", "--", "backup", "/a", "--id", "i"}, "drop --id"},
		{[]string{"schedule", "add", "x", "--cron", "@daily", "--", "backup", "/a", "--tag", "bad tag"}, "tag"},
		{[]string{"schedule", "add", "x", "--cron", "@daily", "--", "snapshots"}, "not a job command"},
		{[]string{"schedule", "add", "x", "--cron", "@daily", "--", "dlq", "retry", "j1"}, "not a job command"},
		{[]string{"schedule", "add", "x", "--cron", "@daily", "--", "nope"}, `unknown command "nope"`},
		{[]string{"schedule", "rm"}, "1 argument"},
		{[]string{"schedule", "rm", ">"}, "schedule name"},
	} {
		r := brrCmd(t, url, tt.args...)
		if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
			t.Errorf("brr %s: %v\nwant exit 2 saying %q", strings.Join(tt.args, " "), r, tt.want)
		}
	}
	if r := brrCmd(t, url, "schedule", "ls"); r.code != 0 || r.stdout != "" || r.stderr != "no schedules\n" {
		t.Fatalf("schedule ls after refused adds: %v", r)
	}
}
