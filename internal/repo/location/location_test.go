package location

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		url  string
		want Location
		str  string // String(); "" means the url itself
	}{
		{"file:///var/lib/brr/repo", Location{Scheme: "file", Path: "/var/lib/brr/repo"}, ""},
		{"file:///var/lib/brr/../brr/repo/", Location{Scheme: "file", Path: "/var/lib/brr/repo"}, "file:///var/lib/brr/repo"},
		{"nats://brr-offsite", Location{Scheme: "nats", Bucket: "brr-offsite"}, ""},
		{"s3://s3.eu-central-1.amazonaws.com/my-bucket", Location{Scheme: "s3", Host: "s3.eu-central-1.amazonaws.com", Bucket: "my-bucket", TLS: true}, ""},
		{"s3://minio.lan:9000/backups/brr/host1", Location{Scheme: "s3", Host: "minio.lan", Port: 9000, Bucket: "backups", Path: "brr/host1", TLS: true}, ""},
		{"s3://minio.lan:9000/backups/brr/", Location{Scheme: "s3", Host: "minio.lan", Port: 9000, Bucket: "backups", Path: "brr", TLS: true}, "s3://minio.lan:9000/backups/brr"},
		{"s3:https://minio.lan/backups", Location{Scheme: "s3", Host: "minio.lan", Bucket: "backups", TLS: true}, "s3://minio.lan/backups"},
		{"s3:http://127.0.0.1:7070/brr-test/x", Location{Scheme: "s3", Host: "127.0.0.1", Port: 7070, Bucket: "brr-test", Path: "x"}, ""},
		{"s3://[::1]:9000/bucket", Location{Scheme: "s3", Host: "::1", Port: 9000, Bucket: "bucket", TLS: true}, ""},
		{"sftp://backup@nas.lan/srv/brr", Location{Scheme: "sftp", User: "backup", Host: "nas.lan", Path: "/srv/brr"}, ""},
		{"sftp://nas.lan:2222/srv/brr/", Location{Scheme: "sftp", Host: "nas.lan", Port: 2222, Path: "/srv/brr"}, "sftp://nas.lan:2222/srv/brr"},
		{"sftp://u@[fe80::1]:22/r", Location{Scheme: "sftp", User: "u", Host: "fe80::1", Port: 22, Path: "/r"}, ""},
	}
	for _, tt := range tests {
		got, err := Parse(tt.url)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.url, err)
			continue
		}
		if got != tt.want {
			t.Errorf("Parse(%q) = %+v, want %+v", tt.url, got, tt.want)
		}
		str := tt.str
		if str == "" {
			str = tt.url
		}
		if got.String() != str {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.url, got.String(), str)
		}
		again, err := Parse(got.String())
		if err != nil || again != got {
			t.Errorf("Parse(%q) of its own String() = %+v, %v; want %+v", got.String(), again, err, got)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		url      string
		says     []string
		mustHide string // a secret the error must not show
	}{
		{"", []string{"no repository URL", "s3://HOST"}, ""},
		{"/var/lib/brr", []string{"want one of", "file:///ABSOLUTE/PATH"}, ""},
		{"file://relative/dir", []string{"three slashes"}, ""},
		{"nats://a.b", []string{"letters, digits"}, ""},
		{"s4://host/bucket", []string{`unknown scheme "s4"`, "file://, nats://, s3://, sftp://", "did you mean s3://"}, ""},
		{"ftp://host/dir", []string{"did you mean sftp://"}, ""},
		{"gopher://host/dir", []string{`unknown scheme "gopher"`}, ""},
		{"s3://host", []string{"no bucket"}, ""},
		{"s3://host/Bad_Bucket", []string{"not a valid bucket name"}, ""},
		{"s3://host:99999/b-1", []string{"not 1-65535"}, ""},
		{"s3://AKIAXXXX:s3cr3t@host/bucket", []string{"holds no credentials", "AWS_ACCESS_KEY_ID"}, "s3cr3t"},
		{"s3:ftp://host/bucket", []string{"s3:https://"}, ""},
		{"s3://host/b-1/p?region=x", []string{"no query"}, ""},
		{"s3:///bucket", []string{"no host"}, ""},
		{"sftp://u:hunter2@host/p", []string{"holds no password"}, "hunter2"},
		{"sftp://host", []string{"no path"}, ""},
		{"sftp://host/", []string{"no path"}, ""},
		{"sftp:///srv", []string{"no host"}, ""},
	}
	for _, tt := range tests {
		_, err := Parse(tt.url)
		if err == nil {
			t.Errorf("Parse(%q) succeeded", tt.url)
			continue
		}
		for _, s := range tt.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("Parse(%q) = %q, want it to say %q", tt.url, err, s)
			}
		}
		if tt.mustHide != "" && strings.Contains(err.Error(), tt.mustHide) {
			t.Errorf("Parse(%q) = %q shows the secret", tt.url, err)
		}
	}
}
