package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"

	"github.com/minio/minio-go/v7"

	"github.com/brr-dev/brr/internal/repo"
)

// S3 error codes this package tells apart.
const (
	codeNoSuchKey             = "NoSuchKey"
	codeNoSuchBucket          = "NoSuchBucket"
	codeInvalidAccessKeyID    = "InvalidAccessKeyId"
	codeUserNotFound          = "XAdminUserNotFound" // versitygw's InvalidAccessKeyId
	codeSignatureDoesNotMatch = "SignatureDoesNotMatch"
	codeAccessDenied          = "AccessDenied"
	codeRequestTimeTooSkewed  = "RequestTimeTooSkewed"
	codeExpiredToken          = "ExpiredToken"
	codeInvalidToken          = "InvalidToken"
	codeInvalidRange          = "InvalidRange"
)

// code returns the S3 error code of err, or "" when err is no S3 error response.
func code(err error) string {
	var er minio.ErrorResponse
	if errors.As(err, &er) {
		return er.Code
	}
	return ""
}

// explain turns an error of a request to the server into one that says what was wrong
// and what to do, naming the server and, for a refused key, where the key came from;
// never a secret. The result wraps err.
func (b *Backend) explain(err error) error {
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) {
		// minio-go returns only this when the context ends while it retries, so name
		// the server that was being waited for.
		return fmt.Errorf("s3 server %s: no answer in time: %w", b.cfg.Endpoint, err)
	}
	c := code(err)
	switch c {
	case codeNoSuchBucket:
		return fmt.Errorf("bucket %q does not exist at %s; create it (e.g. `aws s3 mb s3://%s`, `mc mb ALIAS/%s`) or fix the repository URL: %w",
			b.cfg.Bucket, b.cfg.Endpoint, b.cfg.Bucket, b.cfg.Bucket, err)
	case codeInvalidAccessKeyID, codeUserNotFound:
		return fmt.Errorf("s3 server %s does not know the access key from %s (%s): check that the key is one of this server's: %w",
			b.cfg.Endpoint, b.cfg.Source, c, err)
	case codeSignatureDoesNotMatch:
		return fmt.Errorf("s3 server %s refused the secret key from %s (%s): check that the secret belongs to the access key, with no stray space or newline: %w",
			b.cfg.Endpoint, b.cfg.Source, c, err)
	case codeAccessDenied:
		return fmt.Errorf("s3 server %s denied access to bucket %q with the keys from %s (%s): check the keys, and that their policy allows listing the bucket and getting, putting and deleting its objects: %w",
			b.cfg.Endpoint, b.cfg.Bucket, b.cfg.Source, c, err)
	case codeExpiredToken, codeInvalidToken:
		return fmt.Errorf("s3 server %s refused the session token from %s (%s): temporary keys expire; renew them: %w",
			b.cfg.Endpoint, b.cfg.Source, c, err)
	case codeRequestTimeTooSkewed:
		return fmt.Errorf("this machine's clock differs from s3 server %s's by more than S3 allows (%s): set the clock right, e.g. run NTP (`timedatectl set-ntp true`): %w",
			b.cfg.Endpoint, c, err)
	case "":
	default:
		return fmt.Errorf("s3 server %s: %s: %w", b.cfg.Endpoint, c, err)
	}
	msg := err.Error()
	switch {
	case strings.Contains(msg, "server gave HTTP response to HTTPS client"):
		return fmt.Errorf("s3 server %s speaks plain http, not https: set tls off (s3:http://…) if that is intended: %w", b.cfg.Endpoint, err)
	case strings.Contains(msg, "malformed HTTP response") || strings.Contains(msg, "HTTP request to an HTTPS server"):
		return fmt.Errorf("s3 server %s speaks https, not plain http: set tls on: %w", b.cfg.Endpoint, err)
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return fmt.Errorf("s3 server %s unreachable (check the endpoint, its port and the network): %w", b.cfg.Endpoint, err)
	}
	return fmt.Errorf("s3 server %s: %w", b.cfg.Endpoint, err)
}

// opError wraps err of op on what (a handle, or a type for List): a missing object becomes
// repo.ErrNotExist, anything else is explained.
func (b *Backend) opError(op, what string, err error) error {
	if code(err) == codeNoSuchKey {
		return fmt.Errorf("%s %s: %w in %s", op, what, repo.ErrNotExist, b.Location())
	}
	return fmt.Errorf("%s %s: %w", op, what, b.explain(err))
}
