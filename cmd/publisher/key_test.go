package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr"
)

// The key commands build the key job their words say, and refuse bad words as usage
// errors before anything is published.
func TestKeyCommands(t *testing.T) {
	var out bytes.Buffer
	m := &Main{Stdout: &out, Stderr: &out, Getenv: func(string) string { return "" }}
	for _, c := range []struct {
		words []string
		want  brr.KeyJob
	}{
		{[]string{"key", "list", "--repo", "offsite"}, brr.KeyJob{Action: brr.KeyList, Repo: "offsite"}},
		{[]string{"key", "add"}, brr.KeyJob{Action: brr.KeyAdd}},
		{[]string{"key", "add", "--repo", "local", "--password-file", "new.pw"}, brr.KeyJob{Action: brr.KeyAdd, Repo: "local", PasswordFile: "new.pw"}},
		{[]string{"key", "remove", "1a2b3c4d", "--repo", "local"}, brr.KeyJob{Action: brr.KeyRemove, Repo: "local", ID: "1a2b3c4d"}},
		{[]string{"key", "passwd", "1a2b", "--password-file", "x.pw"}, brr.KeyJob{Action: brr.KeyPasswd, ID: "1a2b", PasswordFile: "x.pw"}},
	} {
		job, err := m.captureWords(context.Background(), c.words)
		if err != nil {
			t.Errorf("%s: %v", strings.Join(c.words, " "), err)
			continue
		}
		if got, ok := job.args.(brr.KeyJob); !ok || got != c.want {
			t.Errorf("%s: job %#v, want %#v", strings.Join(c.words, " "), job.args, c.want)
		}
	}
	for _, words := range [][]string{
		{"key"},
		{"key", "rotate"},
		{"key", "remove"},
		{"key", "remove", "a", "b"},
		{"key", "list", "--password-file", "x"},
		{"key", "add", "--password-file", "/etc/hostname"},
		{"key", "remove", "not-hex!"},
	} {
		code := m.Run(context.Background(), words)
		if code != 2 {
			t.Errorf("brr %s: exit %d, want 2 (usage)", strings.Join(words, " "), code)
		}
	}
}

func TestPrintKeys(t *testing.T) {
	var out bytes.Buffer
	created := time.Date(2026, 12, 7, 3, 0, 0, 0, time.UTC)
	printKeys(&out, &brr.KeyResult{Action: brr.KeyPasswd, Repo: "offsite", Worker: "w1", Current: "aaaaaaaa11112222",
		KeyFile: "/var/lib/brr/keys/offsite-k1.key", Generated: true,
		Added:   &brr.KeyInfo{ID: "cccccccc33334444"},
		Removed: &brr.KeyInfo{ID: "bbbbbbbb55556666"},
		Keys: []brr.KeyInfo{
			{ID: "aaaaaaaa11112222", Created: created, Host: "h1", User: "ops", KDF: "argon2id t=1 m=65536KiB p=2", Current: true},
			{ID: "cccccccc33334444", Created: created, KDF: "argon2id t=1 m=65536KiB p=2", UsedBy: []string{"w2", "w3"}},
			{ID: "dddddddd77778888", Error: "decode key: version 9"},
		}})
	s := out.String()
	for _, want := range []string{
		"replaced key bbbbbbbb of repo offsite with key cccccccc",
		"generated into /var/lib/brr/keys/offsite-k1.key on worker w1",
		"* aaaaaaaa", "h1", "ops", "argon2id t=1 m=65536KiB p=2",
		"  cccccccc", "unreadable: decode key: version 9",
		"* the key worker w1, which ran this job, opened it with", "USED BY", "w2,w3",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}
