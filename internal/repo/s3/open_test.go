package s3_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/s3"
	"github.com/brr-dev/brr/internal/testkit"
)

// wantErr fails the test unless err holds every one of want, and none of the secrets.
func wantErr(t *testing.T, err error, secrets []string, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("err = nil, want an error with %q", want)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	for _, s := range secrets {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error %q holds a secret", err)
		}
	}
}

func TestOpenMissingBucket(t *testing.T) {
	srv := testkit.StartS3(t)
	_, err := s3.Open(context.Background(), config(srv, "brr-missing", "repo"))
	wantErr(t, err, []string{srv.SecretKey},
		`bucket "brr-missing" does not exist at `+srv.Endpoint, "aws s3 mb s3://brr-missing", "fix the repository URL")
}

func TestOpenBadCredentials(t *testing.T) {
	srv := testkit.StartS3(t)
	bucket := srv.Bucket(t, "brr-creds")
	ctx := context.Background()

	wrongSecret := config(srv, bucket, "")
	wrongSecret.SecretKey = "not-the-secret"
	_, err := s3.Open(ctx, wrongSecret)
	wantErr(t, err, []string{srv.SecretKey, "not-the-secret"},
		"s3 server "+srv.Endpoint+" refused the secret key from the test server's keys", "SignatureDoesNotMatch")

	wrongKey := config(srv, bucket, "")
	wrongKey.AccessKey = "nobody"
	_, err = s3.Open(ctx, wrongKey)
	wantErr(t, err, []string{srv.SecretKey}, "does not know the access key from the test server's keys")
}

// TestCredentialSources opens the repository with keys from each place they can come
// from: named environment variables, a credentials file's profile, the AWS variables.
func TestCredentialSources(t *testing.T) {
	srv := testkit.StartS3(t)
	bucket := srv.Bucket(t, "brr-sources")
	ctx := context.Background()
	bare := config(srv, bucket, "")
	bare.Credentials = s3.Credentials{}
	for _, v := range []string{"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"} {
		t.Setenv(v, "")
	}

	if _, err := s3.Open(ctx, bare); err == nil || !strings.Contains(err.Error(), "no s3 credentials") {
		t.Fatalf("Open without keys = %v, want an error saying there are none", err)
	}

	t.Setenv("OFFSITE_KEY", srv.AccessKey)
	t.Setenv("OFFSITE_SECRET", srv.SecretKey)
	creds, err := s3.CredentialsFromEnv("OFFSITE_KEY", "OFFSITE_SECRET", "")
	if err != nil {
		t.Fatal(err)
	}
	cfg := bare
	cfg.Credentials = creds
	if _, err := s3.Open(ctx, cfg); err != nil {
		t.Fatalf("keys from OFFSITE_KEY and OFFSITE_SECRET: %v", err)
	}
	t.Setenv("OFFSITE_SECRET", "wrong")
	cfg.Credentials, _ = s3.CredentialsFromEnv("OFFSITE_KEY", "OFFSITE_SECRET", "")
	_, err = s3.Open(ctx, cfg)
	wantErr(t, err, []string{"wrong"}, "environment variables OFFSITE_KEY and OFFSITE_SECRET")
	_, err = s3.CredentialsFromEnv("OFFSITE_KEY", "NOT_SET_ANYWHERE", "")
	wantErr(t, err, []string{srv.AccessKey}, "NOT_SET_ANYWHERE is empty or not set")

	file := filepath.Join(t.TempDir(), "credentials")
	ini := "[default]\naws_access_key_id = nobody\naws_secret_access_key = nothing\n\n" +
		"[offsite]\naws_access_key_id = " + srv.AccessKey + "\naws_secret_access_key = " + srv.SecretKey + "\n"
	if err := os.WriteFile(file, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg = bare
	cfg.CredentialsFile, cfg.Profile = file, "offsite"
	if _, err := s3.Open(ctx, cfg); err != nil {
		t.Fatalf("keys from profile offsite of %s: %v", file, err)
	}
	cfg.Profile = ""
	_, err = s3.Open(ctx, cfg)
	wantErr(t, err, []string{"nothing", srv.SecretKey}, `profile "default" of `+file)
	cfg.Profile = "absent"
	_, err = s3.Open(ctx, cfg)
	wantErr(t, err, nil, `read s3 credentials from profile "absent"`)

	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	if _, err := s3.Open(ctx, bare); err != nil {
		t.Fatalf("keys from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY: %v", err)
	}
}

// TestServerRestart stops the server under an open backend: operations fail with an
// error that names the server, and work again once it is back, on the same Backend.
func TestServerRestart(t *testing.T) {
	srv := testkit.StartS3(t)
	cfg := config(srv, srv.Bucket(t, "brr-restart"), "repo")
	cfg.MaxRetries = 2 // fail within a second while the server is down
	be := open(t, cfg)
	ctx := context.Background()
	h := repo.Handle{Type: repo.SnapshotFile, Name: backendtest.RandomID(t)}
	if err := be.Save(ctx, h, repo.NewByteReader([]byte("before"))); err != nil {
		t.Fatal(err)
	}

	srv.Stop()
	for name, op := range map[string]func() error{
		"Save": func() error {
			return be.Save(ctx, repo.Handle{Type: repo.SnapshotFile, Name: backendtest.RandomID(t)}, repo.NewByteReader([]byte("x")))
		},
		"Load": func() error { _, err := be.Load(ctx, h, 0, 0); return err },
		"List": func() error { return be.List(ctx, repo.SnapshotFile, func(repo.FileInfo) error { return nil }) },
	} {
		err := op()
		wantErr(t, err, []string{srv.SecretKey}, "s3 server "+srv.Endpoint+" unreachable")
		if repo.IsNotExist(err) {
			t.Errorf("%s while the server is down: %v is ErrNotExist", name, err)
		}
		t.Logf("%s while the server is down: %v", name, err)
	}

	srv.Start()
	h2 := repo.Handle{Type: repo.SnapshotFile, Name: backendtest.RandomID(t)}
	if err := be.Save(ctx, h2, repo.NewByteReader([]byte("after"))); err != nil {
		t.Fatalf("Save after the restart: %v", err)
	}
	for h, want := range map[repo.Handle]string{h: "before", h2: "after"} {
		if got, err := be.Load(ctx, h, 0, 0); err != nil || !bytes.Equal(got, []byte(want)) {
			t.Fatalf("Load(%s) after the restart = %q, %v; want %q", h, got, err, want)
		}
	}
}

// TestRetriesAcrossRestart starts a Save while the server is down and brings the server
// back while minio-go retries: the Save succeeds without a retry loop of ours.
func TestRetriesAcrossRestart(t *testing.T) {
	srv := testkit.StartS3(t)
	cfg := config(srv, srv.Bucket(t, "brr-retry"), "") // minio-go's 10 attempts
	tr := newCounter(t)
	cfg.Transport = tr
	be := open(t, cfg)
	ctx := context.Background()
	srv.Stop()
	done := make(chan error, 1)
	h := repo.Handle{Type: repo.IndexFile, Name: backendtest.RandomID(t)}
	go func() { done <- be.Save(ctx, h, repo.NewByteReader([]byte("index"))) }()
	testkit.Eventually(t, 10*time.Second, "a request of the Save to fail", func() bool { return tr.failed.Load() > 0 })
	srv.Start()
	if err := <-done; err != nil {
		t.Fatalf("Save while the server came back: %v", err)
	}
	if got, err := be.Load(ctx, h, 0, 0); err != nil || string(got) != "index" {
		t.Fatalf("Load = %q, %v", got, err)
	}
}

func TestLocationHasNoSecret(t *testing.T) {
	srv := testkit.StartS3(t)
	cfg := config(srv, srv.Bucket(t, "brr-location"), "a/b")
	cfg.TLS = false
	be := open(t, cfg)
	if got, want := be.Location(), "s3:http://"+srv.Endpoint+"/brr-location/a/b"; got != want {
		t.Fatalf("Location() = %q, want %q", got, want)
	}
	if strings.Contains(be.Location(), srv.AccessKey) || strings.Contains(be.Location(), srv.SecretKey) {
		t.Fatalf("Location() = %q holds a key", be.Location())
	}
}

func TestConfigPrintsNoSecret(t *testing.T) {
	cfg := s3.Config{
		Endpoint:    "s3.example.com",
		Bucket:      "bkt",
		Prefix:      "p",
		TLS:         true,
		Credentials: s3.Credentials{AccessKey: "AKID", SecretKey: "very-secret", SessionToken: "token-secret", Source: "environment variables A and B"},
	}
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		got := fmt.Sprintf(f, cfg) + fmt.Sprintf(f, cfg.Credentials) + fmt.Sprintf(f, &cfg)
		if strings.Contains(got, "very-secret") || strings.Contains(got, "token-secret") {
			t.Errorf("Sprintf(%q) = %q, holds a secret", f, got)
		}
	}
	if got, want := cfg.String(), "s3://s3.example.com/bkt/p (keys from environment variables A and B)"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

// skewed answers every request as S3 answers one signed by a clock more than 15
// minutes off, which a test cannot make a real server see.
type skewed struct{}

func (skewed) RoundTrip(req *http.Request) (*http.Response, error) {
	body := `<?xml version="1.0" encoding="UTF-8"?><Error><Code>RequestTimeTooSkewed</Code>` +
		`<Message>The difference between the request time and the current time is too large.</Message></Error>`
	return &http.Response{
		StatusCode: http.StatusForbidden,
		Status:     "403 Forbidden",
		Header:     http.Header{"Content-Type": {"application/xml"}},
		Body:       io.NopCloser(strings.NewReader(body)),
		Request:    req,
	}, nil
}

func TestOpenClockSkew(t *testing.T) {
	cfg := s3.Config{
		Endpoint:    "s3.example.com",
		Bucket:      "bkt",
		Region:      "us-east-1",
		Credentials: s3.Credentials{AccessKey: "AKID", SecretKey: "very-secret"},
		Transport:   skewed{},
	}
	_, err := s3.Open(context.Background(), cfg)
	wantErr(t, err, []string{"very-secret"}, "this machine's clock differs from s3 server s3.example.com's", "RequestTimeTooSkewed", "NTP")
}
