package s3

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

const (
	// DefaultPartSize is the part size of a multipart upload when Config.PartSize is 0.
	// A pack (16 MiB by default) is one PUT; larger objects go in parts of this size.
	DefaultPartSize = 16 << 20
	// MinPartSize is the smallest part S3 accepts (except for an upload's last part).
	MinPartSize = 5 << 20
)

// Config says where a repository is and how to reach it. It holds resolved values: the
// worker's configuration names environment variables, reads them and fills in the keys
// (see CredentialsFromEnv).
type Config struct {
	// Endpoint is the server's host or host:port, without a scheme: "s3.amazonaws.com",
	// "minio.internal:9000".
	Endpoint string
	// Bucket must exist; Open does not create it.
	Bucket string
	// Prefix is the repository's directory within the bucket; empty is the bucket's root.
	// Leading and trailing slashes are ignored.
	Prefix string
	// TLS selects https; false is plain http, for a server on a trusted network or loopback.
	TLS bool
	// Region is the bucket's region; empty asks the server once (GetBucketLocation).
	Region string
	// PathStyle is how a bucket is addressed: "path" (endpoint/bucket/key), "virtual"
	// (bucket.endpoint/key), or "" and "auto": virtual for Amazon and Aliyun endpoints,
	// path for others (an IP address, MinIO, most self-hosted servers).
	PathStyle string
	// Credentials are the keys. When AccessKey and SecretKey are empty, they are read from
	// CredentialsFile and Profile if either is set, else from the AWS_ACCESS_KEY_ID,
	// AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN environment variables; Open fails if
	// none has keys.
	Credentials
	// CredentialsFile is an AWS shared credentials file ("~/.aws/credentials" format);
	// empty with Profile set reads the AWS default files.
	CredentialsFile string
	// Profile is the file's profile; empty is $AWS_PROFILE, else "default".
	Profile string
	// PartSize is the part size of multipart uploads (0 is DefaultPartSize, at least
	// MinPartSize): an object larger than one part is uploaded in parts, one after the
	// other, each read twice from the object's file (to hash it, then to send it; each
	// part carries its MD5), and appears only when the upload completes.
	PartSize uint64
	// MaxRetries is how many times a request is tried (0 is minio-go's default, 10; 1 is
	// no retry). See the package comment.
	MaxRetries int
	// Transport carries the requests; nil is a transport with timeouts on dialling, the
	// TLS handshake and the response headers (but none on a whole transfer, which a large
	// pack on a slow link needs). Tests set one to count or break traffic.
	Transport http.RoundTripper
}

// Credentials are an access key pair, a session token for temporary keys, and where
// they came from.
type Credentials struct {
	AccessKey, SecretKey, SessionToken string
	// Source says where the keys came from, for error messages ("environment variables
	// BRR_S3_ACCESS_KEY and BRR_S3_SECRET_KEY"); it never holds a secret.
	Source string
}

// String describes c without its keys, so that printing a Config leaks none.
func (c Credentials) String() string {
	if c.AccessKey == "" {
		return "no keys"
	}
	return "keys from " + c.sourceOr("the repository's configuration")
}

// GoString is String, for %#v.
func (c Credentials) GoString() string { return c.String() }

func (c Credentials) sourceOr(def string) string {
	if c.Source != "" {
		return c.Source
	}
	return def
}

// String describes c without its keys: its location and where the keys come from.
func (c Config) String() string {
	keys := c.Credentials.String()
	switch {
	case c.AccessKey != "":
	case c.CredentialsFile != "" || c.Profile != "":
		keys = "keys from " + c.fileSource()
	default:
		keys = "keys from the AWS_* environment variables"
	}
	return c.location(strings.Trim(c.Prefix, "/")) + " (" + keys + ")"
}

// fileSource names the credentials file and profile c reads keys from.
func (c Config) fileSource() string {
	file := c.CredentialsFile
	if file == "" {
		file = "the AWS default credentials and config files"
	}
	profile := c.Profile
	if profile == "" {
		profile = os.Getenv("AWS_PROFILE")
	}
	if profile == "" {
		profile = "default"
	}
	return fmt.Sprintf("profile %q of %s", profile, file)
}

// GoString is String, for %#v.
func (c Config) GoString() string { return c.String() }

// CredentialsFromEnv reads keys from the environment variables named accessEnv,
// secretEnv and tokenEnv (tokenEnv may be empty: no session token). It fails when a
// named variable is empty or unset; the error names the variables, never their values.
func CredentialsFromEnv(accessEnv, secretEnv, tokenEnv string) (Credentials, error) {
	c := Credentials{
		AccessKey: os.Getenv(accessEnv),
		SecretKey: os.Getenv(secretEnv),
		Source:    fmt.Sprintf("environment variables %s and %s", accessEnv, secretEnv),
	}
	var missing []string
	if accessEnv == "" || c.AccessKey == "" {
		missing = append(missing, orNone(accessEnv))
	}
	if secretEnv == "" || c.SecretKey == "" {
		missing = append(missing, orNone(secretEnv))
	}
	if tokenEnv != "" {
		c.SessionToken = os.Getenv(tokenEnv)
		c.Source = fmt.Sprintf("environment variables %s, %s and %s", accessEnv, secretEnv, tokenEnv)
		if c.SessionToken == "" {
			missing = append(missing, tokenEnv)
		}
	}
	if len(missing) > 0 {
		return Credentials{}, fmt.Errorf("s3 credentials: environment variable %s is empty or not set", strings.Join(missing, ", "))
	}
	return c, nil
}

func orNone(name string) string {
	if name == "" {
		return "(no name given)"
	}
	return name
}

// location returns the repository's URL, without credentials.
func (c Config) location(prefix string) string {
	scheme := "s3://"
	if !c.TLS {
		scheme = "s3:http://"
	}
	loc := scheme + c.Endpoint + "/" + c.Bucket
	if prefix != "" {
		loc += "/" + prefix
	}
	return loc
}

// check validates c before anything is sent.
func (c Config) check() error {
	switch {
	case c.Endpoint == "":
		return errors.New("no endpoint given (want s3://HOST[:PORT]/BUCKET[/PREFIX])")
	case strings.Contains(c.Endpoint, "://") || strings.Contains(c.Endpoint, "/"):
		return fmt.Errorf("endpoint %q is not a host[:port] (the scheme is set by the tls setting)", c.Endpoint)
	case c.Bucket == "":
		return errors.New("no bucket given (want s3://HOST[:PORT]/BUCKET[/PREFIX])")
	case c.PartSize != 0 && c.PartSize < MinPartSize:
		return fmt.Errorf("part size %d is below the S3 minimum of %d (5 MiB)", c.PartSize, MinPartSize)
	}
	if _, err := c.bucketLookup(); err != nil {
		return err
	}
	if (c.AccessKey == "") != (c.SecretKey == "") {
		return fmt.Errorf("only one of the access key and the secret key is set (%s)", c.sourceOr("configuration"))
	}
	return nil
}

func (c Config) bucketLookup() (minio.BucketLookupType, error) {
	switch c.PathStyle {
	case "", "auto":
		return minio.BucketLookupAuto, nil
	case "path":
		return minio.BucketLookupPath, nil
	case "virtual":
		return minio.BucketLookupDNS, nil
	}
	return 0, fmt.Errorf("path style %q is none of auto, path, virtual", c.PathStyle)
}

// credentials resolves c's keys as Config.Credentials says, and returns where they came
// from. Keys from a file are read now, so that a missing file or profile fails Open
// rather than the first request.
func (c Config) credentials() (*credentials.Credentials, string, error) {
	if c.AccessKey != "" {
		return credentials.NewStaticV4(c.AccessKey, c.SecretKey, c.SessionToken), c.sourceOr("the repository's configuration"), nil
	}
	if c.CredentialsFile != "" || c.Profile != "" {
		src := c.fileSource()
		creds := credentials.NewFileAWSCredentials(c.CredentialsFile, c.Profile)
		v, err := creds.GetWithContext(nil)
		if err != nil {
			return nil, "", fmt.Errorf("read s3 credentials from %s: %w", src, err)
		}
		if v.AccessKeyID == "" || v.SecretAccessKey == "" {
			return nil, "", fmt.Errorf("read s3 credentials from %s: no aws_access_key_id and aws_secret_access_key there", src)
		}
		return creds, src, nil
	}
	if id, secret := firstEnv("AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"), firstEnv("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY"); id != "" && secret != "" {
		return credentials.NewEnvAWS(), "environment variables AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", nil
	}
	return nil, "", errors.New("no s3 credentials: configure the repository's access and secret key variables, " +
		"a credentials file or profile, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
}

func firstEnv(names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return ""
}
