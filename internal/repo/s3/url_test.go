package s3_test

import (
	"strings"
	"testing"

	"github.com/brr-dev/brr/internal/repo/s3"
)

func TestParseURL(t *testing.T) {
	ok := []struct {
		url                      string
		endpoint, bucket, prefix string
		tls                      bool
	}{
		{"s3://s3.amazonaws.com/backups", "s3.amazonaws.com", "backups", "", true},
		{"s3://s3.eu-west-1.amazonaws.com/backups/brr/site-a", "s3.eu-west-1.amazonaws.com", "backups", "brr/site-a", true},
		{"s3:https://minio.internal:9000/b/p/", "minio.internal:9000", "b", "p", true},
		{"s3:http://127.0.0.1:7070/brr-repo/offsite", "127.0.0.1:7070", "brr-repo", "offsite", false},
		{"s3:http://[::1]:7070/b", "[::1]:7070", "b", "", false},
	}
	for _, tc := range ok {
		cfg, err := s3.ParseURL(tc.url)
		if err != nil {
			t.Errorf("ParseURL(%q): %v", tc.url, err)
			continue
		}
		if cfg.Endpoint != tc.endpoint || cfg.Bucket != tc.bucket || cfg.Prefix != tc.prefix || cfg.TLS != tc.tls {
			t.Errorf("ParseURL(%q) = endpoint %q bucket %q prefix %q tls %v, want %q %q %q %v",
				tc.url, cfg.Endpoint, cfg.Bucket, cfg.Prefix, cfg.TLS, tc.endpoint, tc.bucket, tc.prefix, tc.tls)
		}
	}
	bad := []struct{ url, want string }{
		{"file:///srv/repo", "is not s3://"},
		{"s3:ftp://host/b", "none of"},
		{"s3://host", "no host or no bucket"},
		{"s3:///bucket", "no host or no bucket"},
		{"s3://AKID:very-secret@host/b", "holds keys"},
		{"s3://host/b?region=x", "query"},
	}
	for _, tc := range bad {
		_, err := s3.ParseURL(tc.url)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURL(%q) = %v, want an error with %q", tc.url, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "very-secret") {
			t.Errorf("ParseURL(%q): error %q holds the secret", tc.url, err)
		}
	}
}
