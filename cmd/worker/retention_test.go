package main

import (
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

func TestRetentionConfig(t *testing.T) {
	file := writeConfig(t, `
data_dir: /var/lib/brr
repos:
  local:   {url: "file:///var/lib/brr/repo", key_file: /var/lib/brr/local.key}
  offsite: {url: "nats://brr-offsite", password_env: BRR_OFFSITE_PASSWORD}
retention:
  local: {keep_last: 3, keep_daily: 7, tags: {release: {keep_monthly: 24}}}
  offsite:
    keep_weekly: 8
    keep_yearly: 5
prune:
  grace: 2h
`)
	m, err := parse(t, []string{"--config", file}, nil)
	if err != nil {
		t.Fatalf("ParseFlags: %v", err)
	}
	c := m.Config
	local := brr.RetentionPolicy{KeepLast: 3, KeepDaily: 7, Tags: map[string]brr.RetentionPolicy{"release": {KeepMonthly: 24}}}
	if got := c.Retention["local"]; got.KeepLast != 3 || got.KeepDaily != 7 || got.Tags["release"].KeepMonthly != 24 || len(got.Tags) != 1 {
		t.Errorf("retention.local = %+v, want %+v", got, local)
	}
	if got := c.Retention["offsite"]; got.KeepWeekly != 8 || got.KeepYearly != 5 || got.KeepLast != 0 {
		t.Errorf("retention.offsite = %+v", got)
	}
	if c.Prune.Grace != 2*time.Hour {
		t.Errorf("prune.grace = %s, want 2h", c.Prune.Grace)
	}
	if got, want := c.ScratchDir(), "/var/lib/brr/scratch"; got != want {
		t.Errorf("ScratchDir() = %q, want %q", got, want)
	}

	// The environment overrides the file; the default is an hour.
	m, err = parse(t, []string{"--config", file}, map[string]string{"BRR_PRUNE_GRACE": "30m"})
	if err != nil || m.Config.Prune.Grace != 30*time.Minute {
		t.Fatalf("BRR_PRUNE_GRACE=30m: grace %s, %v", m.Config.Prune.Grace, err)
	}
	m, err = parse(t, nil, nil)
	if err != nil || m.Config.Prune.Grace != time.Hour || len(m.Config.Retention) != 0 {
		t.Fatalf("defaults: prune %+v, retention %v, %v", m.Config.Prune, m.Config.Retention, err)
	}
	if _, err := parse(t, nil, map[string]string{"BRR_PRUNE_GRACE": "soon"}); err == nil || !strings.Contains(err.Error(), "BRR_PRUNE_GRACE") {
		t.Fatalf("BRR_PRUNE_GRACE=soon: err = %v", err)
	}
}

func TestRetentionConfigErrors(t *testing.T) {
	for _, tt := range []struct {
		name, yaml, want string
	}{
		{"unknown repo", "retention: {offsite: {keep_last: 1}}", `retention: "offsite" is not configured (configured: local)`},
		{"negative count", "retention: {local: {keep_daily: -1}}", "retention.local: retention keep_daily -1: want 0-100000"},
		{"nested tags", "retention: {local: {tags: {a: {tags: {b: {keep_last: 1}}}}}}", `retention.local: retention policy of tag "a" has tag policies of its own`},
		{"bad tag", `retention: {local: {tags: {"bad tag": {keep_last: 1}}}}`, `retention tag "bad tag"`},
		{"unknown key", "retention: {local: {keep_forever: 1}}", `unknown key "retention.local.keep_forever"`},
		{"wrong type", "retention: {local: {keep_last: many}}", "retention.local.keep_last (line 1): want a whole number"},
		{"zero grace", "prune: {grace: 0s}", "prune.grace: must be a positive duration"},
		{"grace type", "prune: {grace: soon}", "prune.grace (line 1): want a duration"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse(t, []string{"--config", writeConfig(t, tt.yaml)}, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}
