// Package location parses repository URLs. It is the one place that knows which schemes
// exist and what each one's URL looks like, so that the worker's config, its validation
// and the docs agree (restic's location package is the model). It only parses: opening
// a backend needs that backend's options too and is the worker's business.
//
// The schemes:
//
//	file:///ABSOLUTE/PATH                   a directory on this machine
//	nats://BUCKET                           a JetStream object store on the worker's NATS
//	s3://HOST[:PORT]/BUCKET[/PREFIX]        an S3-compatible bucket, over https
//	s3:https://HOST[:PORT]/BUCKET[/PREFIX]  the same, spelled the restic way
//	s3:http://HOST[:PORT]/BUCKET[/PREFIX]   an S3 server without TLS (a local test server)
//	sftp://[USER@]HOST[:PORT]/PATH          a directory on a server reached over SSH
//
// A URL never holds a secret: one with a password or an access key in it is refused,
// since URLs are logged and sent in events.
package location

import (
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// Location is a parsed repository URL. Which fields are set depends on Scheme.
type Location struct {
	// Scheme is "file", "nats", "s3" or "sftp".
	Scheme string
	// Path is the directory of a file or sftp repository (absolute), or the key
	// prefix inside an s3 bucket ("" for the bucket's root; no leading or trailing
	// slash).
	Path string
	// Bucket is the object store bucket of a nats repository, or the s3 bucket.
	Bucket string
	// Host is the s3 endpoint or the sftp server: a name or an IP address, without
	// brackets.
	Host string
	// Port is the TCP port given in the URL; 0 when none was given (the scheme's
	// default: 443 or 80 for s3, 22 for sftp).
	Port int
	// User is the sftp login name; "" for the current user.
	User string
	// TLS says whether an s3 endpoint is spoken to over https.
	TLS bool
}

// scheme is one kind of repository URL.
type scheme struct {
	name  string // the scheme as written before "://"
	usage string // the URL's shape, for errors and docs
	parse func(raw, rest string) (Location, error)
}

var schemes = []scheme{
	{"file", "file:///ABSOLUTE/PATH", parseFile},
	{"nats", "nats://BUCKET", parseNATS},
	{"s3", "s3://HOST[:PORT]/BUCKET[/PREFIX]", parseS3},
	{"sftp", "sftp://[USER@]HOST[:PORT]/PATH", parseSFTP},
}

// Usages lists the shape of every scheme's URL, in the order the docs give them.
func Usages() []string {
	out := make([]string, len(schemes))
	for i, s := range schemes {
		out[i] = s.usage
	}
	return out
}

// Parse parses a repository URL. Its errors quote the URL (it holds no secret, or it is
// refused without being quoted) and say what a right one looks like.
func Parse(raw string) (Location, error) {
	s := strings.TrimSpace(raw)
	if s == "" {
		return Location{}, fmt.Errorf("no repository URL; want one of %s", strings.Join(Usages(), ", "))
	}
	// restic's spelling of an S3 endpoint with its protocol: s3:https://… or s3:http://…
	if rest, ok := strings.CutPrefix(s, "s3:"); ok && !strings.HasPrefix(rest, "//") {
		return parseS3Endpoint(raw, rest)
	}
	name, rest, ok := strings.Cut(s, "://")
	if !ok || name == "" {
		return Location{}, fmt.Errorf("%q: want one of %s", s, strings.Join(Usages(), ", "))
	}
	for _, sc := range schemes {
		if sc.name == strings.ToLower(name) {
			return sc.parse(s, rest)
		}
	}
	names := make([]string, len(schemes))
	for i, sc := range schemes {
		names[i] = sc.name + "://"
	}
	hint := ""
	if near := nearest(strings.ToLower(name)); near != "" {
		hint = fmt.Sprintf("; did you mean %s://?", near)
	}
	return Location{}, fmt.Errorf("unknown scheme %q (supported: %s)%s", name, strings.Join(names, ", "), hint)
}

// String gives the URL back in its canonical form. It holds no secret.
func (l Location) String() string {
	switch l.Scheme {
	case "file":
		return "file://" + filepath.ToSlash(l.Path)
	case "nats":
		return "nats://" + l.Bucket
	case "s3":
		u := "s3://"
		if !l.TLS {
			u = "s3:http://"
		}
		u += l.hostPort() + "/" + l.Bucket
		if l.Path != "" {
			u += "/" + l.Path
		}
		return u
	case "sftp":
		u := "sftp://"
		if l.User != "" {
			u += l.User + "@"
		}
		return u + l.hostPort() + l.Path
	}
	return l.Scheme + "://"
}

func (l Location) hostPort() string {
	if l.Port == 0 {
		if strings.Contains(l.Host, ":") {
			return "[" + l.Host + "]"
		}
		return l.Host
	}
	return net.JoinHostPort(l.Host, strconv.Itoa(l.Port))
}

func parseFile(raw, rest string) (Location, error) {
	if !strings.HasPrefix(rest, "/") {
		return Location{}, fmt.Errorf("%q: want file:///ABSOLUTE/PATH (three slashes, then an absolute path)", raw)
	}
	return Location{Scheme: "file", Path: filepath.Clean(rest)}, nil
}

// bucketPattern is what a JetStream object store accepts as a bucket name.
var bucketPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func parseNATS(raw, rest string) (Location, error) {
	if !bucketPattern.MatchString(rest) {
		return Location{}, fmt.Errorf("%q: want nats://BUCKET, a bucket name of letters, digits, '-' or '_'", raw)
	}
	return Location{Scheme: "nats", Bucket: rest}, nil
}

func parseS3(raw, rest string) (Location, error) {
	return parseS3Rest(raw, rest, true)
}

// parseS3Endpoint parses the s3:https://… and s3:http://… spellings.
func parseS3Endpoint(raw, rest string) (Location, error) {
	proto, after, ok := strings.Cut(rest, "://")
	switch {
	case ok && strings.EqualFold(proto, "https"):
		return parseS3Rest(raw, after, true)
	case ok && strings.EqualFold(proto, "http"):
		return parseS3Rest(raw, after, false)
	}
	return Location{}, fmt.Errorf("%q: want s3://HOST[:PORT]/BUCKET[/PREFIX], s3:https://… or s3:http://…", redact(raw))
}

// s3Bucket is what S3 accepts as a bucket name (the common rules; a server may be
// stricter).
var s3Bucket = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

func parseS3Rest(raw, rest string, tls bool) (Location, error) {
	want := "want s3://HOST[:PORT]/BUCKET[/PREFIX]"
	if strings.ContainsAny(rest, "?#") {
		return Location{}, fmt.Errorf("%q: no query or fragment; %s (the region and the rest are keys of the repo)", redact(raw), want)
	}
	hostPort, p, _ := strings.Cut(rest, "/")
	if strings.Contains(hostPort, "@") {
		return Location{}, fmt.Errorf("%q: an S3 URL holds no credentials (URLs are logged); name the environment variables that hold them (access_key_env and secret_key_env in the repo's config, --access-key-env and --secret-key-env of brr repo add), or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", redact(raw))
	}
	host, port, err := splitHostPort(hostPort)
	if err != nil {
		return Location{}, fmt.Errorf("%q: %v; %s", raw, err, want)
	}
	bucket, prefix, _ := strings.Cut(p, "/")
	if bucket == "" {
		return Location{}, fmt.Errorf("%q: no bucket; %s", raw, want)
	}
	if !s3Bucket.MatchString(bucket) {
		return Location{}, fmt.Errorf("%q: %q is not a valid bucket name (3-63 lower-case letters, digits, '.' or '-')", raw, bucket)
	}
	prefix = strings.Trim(path.Clean("/"+prefix), "/")
	return Location{Scheme: "s3", Host: host, Port: port, Bucket: bucket, Path: prefix, TLS: tls}, nil
}

func parseSFTP(raw, rest string) (Location, error) {
	want := "want sftp://[USER@]HOST[:PORT]/PATH"
	u, err := url.Parse("sftp://" + rest)
	if err != nil {
		return Location{}, fmt.Errorf("%q: %s", redact(raw), want)
	}
	if _, has := u.User.Password(); has {
		return Location{}, fmt.Errorf("%q: an sftp URL holds no password (URLs are logged); use a key file or an ssh agent", redact(raw))
	}
	host, port, err := splitHostPort(u.Host)
	if err != nil {
		return Location{}, fmt.Errorf("%q: %v; %s", raw, err, want)
	}
	if u.Path == "" || u.Path == "/" {
		return Location{}, fmt.Errorf("%q: no path; %s", raw, want)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Location{}, fmt.Errorf("%q: no query or fragment; %s", raw, want)
	}
	return Location{Scheme: "sftp", User: u.User.Username(), Host: host, Port: port, Path: path.Clean(u.Path)}, nil
}

// splitHostPort splits HOST[:PORT], where HOST may be a bracketed IPv6 address.
func splitHostPort(s string) (host string, port int, err error) {
	if s == "" {
		return "", 0, fmt.Errorf("no host")
	}
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		// No port: the whole is the host, brackets and all.
		h, p = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"), ""
		if strings.ContainsAny(h, "[]/ ") || (strings.Contains(h, ":") && !strings.HasPrefix(s, "[")) {
			return "", 0, fmt.Errorf("%q is not HOST or HOST:PORT", s)
		}
	}
	if h == "" {
		return "", 0, fmt.Errorf("no host in %q", s)
	}
	if p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", 0, fmt.Errorf("port %q is not 1-65535", p)
		}
		port = n
	}
	return h, port, nil
}

// redact hides what is between "://" and "@", where a URL would carry credentials.
func redact(s string) string {
	i := strings.Index(s, "://")
	if i < 0 {
		return s
	}
	at := strings.LastIndex(s, "@")
	if at < i {
		return s
	}
	return s[:i+3] + "REDACTED" + s[at:]
}

// nearest returns the scheme a mistyped one most likely meant, or "".
func nearest(name string) string {
	best, bestD := "", 3
	for _, sc := range schemes {
		if d := distance(name, sc.name); d < bestD {
			best, bestD = sc.name, d
		}
	}
	return best
}

// distance is the Levenshtein distance between a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
