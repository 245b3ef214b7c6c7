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
	"sync"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/brr-dev/brr/internal/repo"
	"github.com/brr-dev/brr/internal/repo/backendtest"
	"github.com/brr-dev/brr/internal/repo/s3"
	"github.com/brr-dev/brr/internal/testkit"
)

// config returns the configuration of a repository under prefix in bucket on srv.
func config(srv *testkit.S3Server, bucket, prefix string) s3.Config {
	return s3.Config{
		Endpoint:    srv.Endpoint,
		Bucket:      bucket,
		Prefix:      prefix,
		Credentials: s3.Credentials{AccessKey: srv.AccessKey, SecretKey: srv.SecretKey, Source: "the test server's keys"},
		PartSize:    s3.MinPartSize, // so that backendtest's 20 MiB object goes in parts
	}
}

func open(t *testing.T, cfg s3.Config) *s3.Backend {
	t.Helper()
	be, err := s3.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

func TestConformance(t *testing.T) {
	srv := testkit.StartS3(t)
	srv.Bucket(t, "brr-conformance")
	n := 0
	backendtest.Run(t, func(t *testing.T) repo.Backend {
		n++
		return open(t, config(srv, "brr-conformance", fmt.Sprintf("repos/%d", n)))
	})
}

// TestConformanceBucketRoot runs the suite on repositories at the root of their bucket,
// with no prefix, and the default part size.
func TestConformanceBucketRoot(t *testing.T) {
	srv := testkit.StartS3(t)
	n := 0
	backendtest.Run(t, func(t *testing.T) repo.Backend {
		n++
		bucket := srv.Bucket(t, fmt.Sprintf("root-%d", n))
		cfg := config(srv, bucket, "")
		cfg.PartSize = 0
		return open(t, cfg)
	})
}

// TestLayout shows where objects land in the bucket: the file backend's layout under
// the prefix.
func TestBadNames(t *testing.T) {
	srv := testkit.StartS3(t)
	backendtest.BadNames(t, open(t, config(srv, srv.Bucket(t, "brr-names"), "repo")))
}

func TestLayout(t *testing.T) {
	srv := testkit.StartS3(t)
	bucket := srv.Bucket(t, "brr-layout")
	be := open(t, config(srv, bucket, "/site-a/repo/"))
	if got, want := be.Location(), "s3:http://"+srv.Endpoint+"/brr-layout/site-a/repo"; got != want {
		t.Fatalf("Location() = %q, want %q", got, want)
	}
	ctx := context.Background()
	pack := "ab" + backendtest.RandomID(t)[2:]
	snap := backendtest.RandomID(t)
	for _, h := range []repo.Handle{{Type: repo.PackFile, Name: pack}, {Type: repo.SnapshotFile, Name: snap}, {Type: repo.ConfigFile, Name: "config"}} {
		if err := be.Save(ctx, h, repo.NewByteReader([]byte(h.String()))); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []string{"site-a/repo/data/ab/" + pack, "site-a/repo/snapshots/" + snap, "site-a/repo/config"} {
		if _, err := os.Stat(filepath.Join(srv.Dir, bucket, p)); err != nil {
			t.Errorf("object %s: %v", p, err)
		}
	}
	// Keys that are no object of the repository are not listed: a directory marker, a
	// pack in the wrong directory, a hidden name.
	for _, p := range []string{"site-a/repo/data/cd/" + pack, "site-a/repo/data/" + pack, "site-a/repo/snapshots/.tmp"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(srv.Dir, bucket, p)), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(srv.Dir, bucket, p), []byte("stray"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for ft, want := range map[repo.FileType]string{repo.PackFile: pack, repo.SnapshotFile: snap, repo.ConfigFile: "config"} {
		var got []string
		if err := be.List(ctx, ft, func(fi repo.FileInfo) error { got = append(got, fi.Name); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0] != want {
			t.Errorf("List(%s) = %v, want only %s", ft, got, want)
		}
	}
	// A repository whose prefix starts like this one's sees none of its objects.
	other := open(t, config(srv, bucket, "site-a/rep"))
	if err := other.List(ctx, repo.SnapshotFile, func(fi repo.FileInfo) error {
		return fmt.Errorf("site-a/rep lists %s of site-a/repo", fi.Name)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestListPages lists more objects than one page (1000 keys) holds.
func TestListPages(t *testing.T) {
	srv := testkit.StartS3(t)
	be := open(t, config(srv, srv.Bucket(t, "brr-pages"), "r"))
	const n = 1100
	ctx := context.Background()
	want := map[string]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i := 0; i < n; i++ {
		h := repo.Handle{Type: repo.IndexFile, Name: backendtest.RandomID(t)}
		want[h.Name] = true
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := be.Save(ctx, h, repo.NewByteReader([]byte("i"))); err != nil {
				mu.Lock()
				t.Error(err)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	got := 0
	if err := be.List(ctx, repo.IndexFile, func(fi repo.FileInfo) error {
		if !want[fi.Name] {
			return fmt.Errorf("listed %s, which was not saved", fi.Name)
		}
		got++
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if got != n {
		t.Fatalf("List returned %d objects, want %d", got, n)
	}
}

// counter is a transport that counts the requests it carries by their query
// parameters, the requests that got no answer, and the bytes of the bodies of the
// answers to GETs.
type counter struct {
	next     http.RoundTripper
	gotBytes atomic.Int64
	failed   atomic.Int64
	mu       sync.Mutex
	queries  map[string]int
	// after, when set, is called after each request has its answer.
	after func(req *http.Request)
}

func newCounter(t *testing.T) *counter {
	tr, err := minio.DefaultTransport(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &counter{next: tr, queries: map[string]int{}}
}

func (c *counter) RoundTrip(req *http.Request) (*http.Response, error) {
	c.mu.Lock()
	for k := range req.URL.Query() {
		c.queries[req.Method+" "+k]++
	}
	if req.Method == http.MethodPut && req.Header.Get("Content-Md5") == "" {
		c.queries["PUT without Content-MD5"]++
	}
	c.mu.Unlock()
	resp, err := c.next.RoundTrip(req)
	if err != nil {
		c.failed.Add(1)
	}
	if c.after != nil {
		c.after(req)
	}
	if err == nil && req.Method == http.MethodGet {
		resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.gotBytes}
	}
	return resp, err
}

func (c *counter) count(query string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.queries[query]
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// TestRangeLoadReadsOnlyTheRange counts the bytes that reach the client: a Load of a
// few bytes of a large pack transfers those bytes, not the pack.
func TestRangeLoadReadsOnlyTheRange(t *testing.T) {
	srv := testkit.StartS3(t)
	cfg := config(srv, srv.Bucket(t, "brr-range"), "")
	tr := newCounter(t)
	cfg.Transport = tr
	be := open(t, cfg)
	ctx := context.Background()
	const size = 8 << 20
	data := backendtest.RandomData(t, size)
	h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
	if err := be.Save(ctx, h, repo.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct{ offset, length int64 }{{3 << 20, 1000}, {0, 1}, {size - 4096, 0}, {size - 10, 10}} {
		before := tr.gotBytes.Load()
		got, err := be.Load(ctx, h, r.offset, r.length)
		if err != nil {
			t.Fatal(err)
		}
		want := r.length
		if want == 0 {
			want = size - r.offset
		}
		if !bytes.Equal(got, data[r.offset:r.offset+want]) {
			t.Fatalf("Load(%d, %d) returned the wrong bytes", r.offset, r.length)
		}
		if moved := tr.gotBytes.Load() - before; moved != want {
			t.Errorf("Load(%d, %d) moved %d bytes of answer body, want exactly the %d asked for", r.offset, r.length, moved, want)
		}
	}
}

// TestMultipart saves an object larger than the part size: it goes up in parts, and
// loads back whole.
func TestMultipart(t *testing.T) {
	srv := testkit.StartS3(t)
	cfg := config(srv, srv.Bucket(t, "brr-multipart"), "p")
	tr := newCounter(t)
	cfg.Transport = tr
	be := open(t, cfg)
	ctx := context.Background()
	data := backendtest.RandomData(t, 3*s3.MinPartSize+12345)
	h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
	if err := be.Save(ctx, h, repo.NewByteReader(data)); err != nil {
		t.Fatal(err)
	}
	if got, want := tr.count("PUT partNumber"), 4; got != want {
		t.Errorf("Save of %d bytes in parts of %d: %d part uploads, want %d", len(data), s3.MinPartSize, got, want)
	}
	if got, want := tr.count("POST uploadId"), 1; got != want {
		t.Errorf("Save: %d completed multipart uploads, want %d", got, want)
	}
	got, err := be.Load(ctx, h, 0, 0)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("Load after a multipart Save = %d bytes, %v; want the %d saved", len(got), err, len(data))
	}
	// An object of one part size exactly is one PUT.
	small := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
	if err := be.Save(ctx, small, repo.NewByteReader(data[:s3.MinPartSize])); err != nil {
		t.Fatal(err)
	}
	if got := tr.count("PUT partNumber"); got != 4 {
		t.Errorf("Save of one part size went in parts (%d part uploads in all)", got)
	}
	// Both ways every body carries its MD5 (Object Lock buckets require it), though
	// neither was copied into a buffer to hash it.
	if got := tr.count("PUT without Content-MD5"); got != 0 {
		t.Errorf("%d PUTs without a Content-MD5", got)
	}
}

func TestConfigErrors(t *testing.T) {
	ctx := context.Background()
	keys := s3.Credentials{AccessKey: "AKID", SecretKey: "very-secret"}
	cases := []struct {
		name string
		cfg  s3.Config
		want string
	}{
		{"no endpoint", s3.Config{Bucket: "b", Credentials: keys}, "no endpoint"},
		{"scheme in endpoint", s3.Config{Endpoint: "https://s3.example.com", Bucket: "b", Credentials: keys}, "not a host[:port]"},
		{"no bucket", s3.Config{Endpoint: "s3.example.com", Credentials: keys}, "no bucket"},
		{"small parts", s3.Config{Endpoint: "s3.example.com", Bucket: "bkt", PartSize: 1 << 20, Credentials: keys}, "below the S3 minimum"},
		{"path style", s3.Config{Endpoint: "s3.example.com", Bucket: "bkt", PathStyle: "dns", Credentials: keys}, `path style "dns"`},
		{"half a key", s3.Config{Endpoint: "s3.example.com", Bucket: "bkt", Credentials: s3.Credentials{AccessKey: "AKID"}}, "only one of the access key and the secret key"},
		{"missing file", s3.Config{Endpoint: "s3.example.com", Bucket: "bkt", CredentialsFile: filepath.Join(t.TempDir(), "none")}, "read s3 credentials from"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := s3.Open(ctx, tc.cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open = %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "very-secret") {
				t.Fatalf("error %q holds the secret key", err)
			}
		})
	}
}

// TestInterruptedMultipart cancels a Save after its first part went up: no object
// appears, and the upload is aborted rather than left to hold the parts.
func TestInterruptedMultipart(t *testing.T) {
	srv := testkit.StartS3(t)
	cfg := config(srv, srv.Bucket(t, "brr-interrupted"), "")
	tr := newCounter(t)
	cfg.Transport = tr
	be := open(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	tr.after = func(req *http.Request) {
		if req.Method == http.MethodPut && req.URL.Query().Has("partNumber") {
			cancel()
		}
	}
	h := repo.Handle{Type: repo.PackFile, Name: backendtest.RandomID(t)}
	if err := be.Save(ctx, h, repo.NewByteReader(backendtest.RandomData(t, 4*s3.MinPartSize))); err == nil {
		t.Fatal("Save cancelled after its first part succeeded")
	}
	if _, err := be.Stat(context.Background(), h); !repo.IsNotExist(err) {
		t.Fatalf("Stat after an interrupted Save: err = %v, want ErrNotExist", err)
	}
	if tr.count("PUT partNumber") == 0 {
		t.Fatal("the Save sent no part: nothing was interrupted")
	}
	client, err := minio.New(srv.Endpoint, &minio.Options{Creds: credentials.NewStaticV4(srv.AccessKey, srv.SecretKey, "")})
	if err != nil {
		t.Fatal(err)
	}
	for u := range client.ListIncompleteUploads(context.Background(), "brr-interrupted", "", true) {
		if u.Err != nil {
			t.Fatal(u.Err)
		}
		t.Errorf("upload %s of %s left behind", u.UploadID, u.Key)
	}
}
