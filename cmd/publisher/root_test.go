package main

import (
	"strings"
	"testing"
)

// TestInboxPrefix: the inbox prefix follows the user who logs in by password, as the
// roles of deploy/nats/accounts.conf want it, unless --inbox-prefix names one.
func TestInboxPrefix(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		m    Main
		want string
	}{
		{"no login", Main{url: defaultURL}, ""},
		{"--user", Main{url: defaultURL, user: "publisher", password: "pw"}, "_INBOX_publisher"},
		{"--inbox-prefix", Main{url: defaultURL, user: "publisher", inboxPrefix: "_INBOX_app1"}, "_INBOX_app1"},
		{"--creds", Main{url: defaultURL, creds: "/etc/brr/app.creds"}, ""},
		{"--creds and --inbox-prefix", Main{url: defaultURL, creds: "/etc/brr/app.creds", inboxPrefix: "_INBOX_app1"}, "_INBOX_app1"},
		{"--token", Main{url: defaultURL, token: "tok"}, ""},
		{"user in the URL", Main{url: "nats://subscriber:pw@127.0.0.1:4222,nats://127.0.0.1:4223"}, "_INBOX_subscriber"},
		{"token in the URL", Main{url: "nats://s3cret@127.0.0.1:4222"}, ""},
		{"--user over the URL", Main{url: "nats://subscriber:pw@127.0.0.1:4222", user: "admin"}, "_INBOX_admin"},
	} {
		if got := tt.m.inbox(); got != tt.want {
			t.Errorf("%s: inbox prefix %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestBadInboxPrefix(t *testing.T) {
	t.Parallel()
	_, url := setup(t)
	r := brrCmd(t, url, "--inbox-prefix", "_INBOX.>", "jobs")
	if r.code != exitUsage || !strings.Contains(r.stderr, `inbox prefix "_INBOX.>"`) || !strings.Contains(r.stderr, "--inbox-prefix") {
		t.Errorf("brr --inbox-prefix '_INBOX.>' jobs: %v\nwant exit 2 and what is wrong", r)
	}
	r = brrCmd(t, url, "--user", "my user", "--password", "pw", "jobs")
	if r.code != exitUsage || !strings.Contains(r.stderr, `inbox prefix "_INBOX_my user"`) {
		t.Errorf("brr --user 'my user' jobs: %v\nwant exit 2 and what is wrong", r)
	}
}
