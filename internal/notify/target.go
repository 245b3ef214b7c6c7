package notify

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/brr-dev/brr"
)

// Severity ranks an event for a target's filter: info, warning or critical.
type Severity int

// The severities, from least to most urgent.
const (
	Info Severity = iota
	Warning
	Critical
)

func (s Severity) String() string {
	switch s {
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	}
	return "info"
}

// ParseSeverity reads info, warning (or warn) or critical; empty is info.
func ParseSeverity(s string) (Severity, error) {
	switch s {
	case "", "info":
		return Info, nil
	case "warning", "warn":
		return Warning, nil
	case "critical":
		return Critical, nil
	}
	return Info, fmt.Errorf("%q: must be one of info, warning, critical", s)
}

// SeverityOf is how urgent e is: a health check's status (ok info, warn warning,
// critical critical); a job that failed or died, a failed replication and a failed
// drill are critical; a job being retried is a warning; everything else is info.
func SeverityOf(e *brr.Event) Severity {
	if e.Check != nil {
		switch e.Check.Status {
		case brr.HealthCritical:
			return Critical
		case brr.HealthWarn:
			return Warning
		}
		return Info
	}
	switch e.Status {
	case brr.StatusFailed, brr.StatusDead, brr.StatusDrillFailed:
		return Critical
	case brr.StatusRetrying:
		return Warning
	}
	return Info
}

// Shape is the form of the request a target gets.
type Shape string

// The shapes.
const (
	// ShapeBrr posts the event as it is on the stream: brr's event JSON (docs/events.md).
	ShapeBrr Shape = "brr"
	// ShapeSlack posts {"text": "..."}, what Slack's incoming webhooks and the receivers
	// compatible with them (Mattermost, Rocket.Chat, Discord's /slack endpoint) take.
	ShapeSlack Shape = "slack"
	// ShapeNtfy posts the summary as plain text with ntfy's Title, Priority and Tags
	// headers, to a topic URL such as https://ntfy.sh/my-backups.
	ShapeNtfy Shape = "ntfy"
)

// Shapes lists the shapes, for error messages.
var Shapes = []Shape{ShapeBrr, ShapeSlack, ShapeNtfy}

// The defaults of a Target's zero fields.
const (
	DefaultTimeout = 10 * time.Second
	DefaultMaxAge  = 24 * time.Hour
	DefaultQueue   = 1000
)

// Target is one webhook: where to post, which events, in which shape, signed with which
// secret. Every worker with the same target shares its durable consumer, so each
// notification is sent by one of them.
type Target struct {
	// Name names the target's durable consumer, notify-<name>; empty: a hash of URL, so
	// that workers configured alike share it.
	Name string
	// URL is where notifications are posted (http or https).
	URL string
	// Events are subject filters on the event stream, such as brr.events.job.*.dead.
	Events []string
	// MinSeverity drops events below it (see SeverityOf).
	MinSeverity Severity
	Shape       Shape
	// Secret, when set, signs each request: X-Brr-Signature is
	// "sha256=" + hex(HMAC-SHA256(Secret, X-Brr-Timestamp + "." + body)).
	Secret []byte
	// Timeout bounds one attempt to post.
	Timeout time.Duration
	// MaxAge drops a notification older than this (by the event's time in the stream)
	// instead of posting it: a receiver that was down a day is not flooded with news of
	// yesterday.
	MaxAge time.Duration
	// Queue bounds the notifications waiting for the receiver: with more than Queue
	// behind it, the oldest is dropped.
	Queue int
}

// withDefaults fills in the zero fields.
func (t Target) withDefaults() Target {
	if t.Name == "" {
		t.Name = DefaultName(t.URL)
	}
	if t.Shape == "" {
		t.Shape = ShapeBrr
	}
	if t.Timeout <= 0 {
		t.Timeout = DefaultTimeout
	}
	if t.MaxAge <= 0 {
		t.MaxAge = DefaultMaxAge
	}
	if t.Queue <= 0 {
		t.Queue = DefaultQueue
	}
	return t
}

// DefaultName is the name of a target without one: 12 hex digits of the SHA-256 of its
// URL (the URL itself may hold a token, and a consumer's name is visible to every NATS
// user who can list consumers).
func DefaultName(rawURL string) string {
	sum := sha256.Sum256([]byte(rawURL))
	return hex.EncodeToString(sum[:6])
}

// Consumer is the name of the durable consumer of the target called name.
func Consumer(name string) string { return "notify-" + name }

var namePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidateURL checks that s is an http or https URL with a host.
func ValidateURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return fmt.Errorf("%q: want an http:// or https:// URL such as https://hooks.example.com/brr", Redact(s))
	}
	return nil
}

// ValidateName checks a target's name.
func ValidateName(name string) error {
	if !namePattern.MatchString(name) {
		return fmt.Errorf("%q: use 1-64 letters, digits, '-' or '_'", name)
	}
	return nil
}

// ValidateEvents checks that events are subject filters of the event stream of s that
// do not overlap (JetStream refuses overlapping filters on one consumer).
func ValidateEvents(s brr.Subjects, events []string) error {
	root := strings.TrimSuffix(s.Events(""), ">")
	if len(events) == 0 {
		return fmt.Errorf("name at least one subject filter, such as %s", root+"job.*.dead")
	}
	var errs []error
	for i, e := range events {
		if !server.IsValidSubject(e) || !strings.HasPrefix(e, root) || e == root {
			errs = append(errs, fmt.Errorf("%q: want a subject filter of the event stream, starting with %s, such as %s or %s",
				e, root, root+"job.*.dead", root+"health.>"))
			continue
		}
		for _, prev := range events[:i] {
			if server.SubjectsCollide(prev, e) {
				errs = append(errs, fmt.Errorf("%q overlaps %q: an event may match only one filter of a target; drop one or narrow it", e, prev))
			}
		}
	}
	return errors.Join(errs...)
}

// ParseShape reads a shape; empty is ShapeBrr.
func ParseShape(s string) (Shape, error) {
	if s == "" {
		return ShapeBrr, nil
	}
	for _, sh := range Shapes {
		if Shape(s) == sh {
			return sh, nil
		}
	}
	return "", fmt.Errorf("%q: unknown shape (known: brr, slack, ntfy)", s)
}

// Redact is rawURL fit for a log: its scheme and host, without the path and query that
// often hold the webhook's token.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err == nil && u.Host != "" {
		return u.Scheme + "://" + u.Host + "/…"
	}
	// Not a URL with a host: its text up to the first slash, which is where a token
	// would start.
	if head, _, cut := strings.Cut(rawURL, "/"); cut {
		return head + "/…"
	}
	if len(rawURL) > 12 {
		return rawURL[:12] + "…"
	}
	return rawURL
}
