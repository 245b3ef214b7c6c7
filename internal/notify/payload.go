package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/brr-dev/brr"
)

// The headers of every request.
const (
	// HeaderSignature is "sha256=" + hex(HMAC-SHA256(secret, timestamp + "." + body)),
	// present when the target has a secret.
	HeaderSignature = "X-Brr-Signature"
	// HeaderTimestamp is the Unix time, in seconds, when the request was signed; part of
	// the signed text, so that a receiver can refuse an old request replayed.
	HeaderTimestamp = "X-Brr-Timestamp"
	// HeaderEventID is the event's id: the same on every attempt, so that a receiver can
	// drop a notification it already has (one sent again after a worker died between the
	// receiver's answer and its acknowledgement).
	HeaderEventID = "X-Brr-Event-Id"
	// HeaderSubject is the event's subject, such as brr.events.job.backup.dead.
	HeaderSubject = "X-Brr-Subject"
	// HeaderSeverity is info, warning or critical (see SeverityOf).
	HeaderSeverity = "X-Brr-Severity"
)

// Sign returns the value of HeaderSignature for body signed at ts with secret.
func Sign(secret []byte, ts string, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// Verify reports whether sig is the signature of body at ts with secret, and ts is
// within maxSkew of now: what a receiver written in Go does with a request.
func Verify(secret []byte, ts, sig string, body []byte, now time.Time, maxSkew time.Duration) bool {
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return false
	}
	if d := now.Sub(time.Unix(sec, 0)); d > maxSkew || d < -maxSkew {
		return false
	}
	return hmac.Equal([]byte(sig), []byte(Sign(secret, ts, body)))
}

// notification is one event on its way to a target.
type notification struct {
	subject  string
	data     []byte // the event as it is on the stream
	event    *brr.Event
	severity Severity
}

// Title is a one-line summary of the event, for people: "critical: backup job dead".
func (n *notification) Title() string {
	e := n.event
	var what string
	switch {
	case e.Type == brr.EventJob:
		what = fmt.Sprintf("%s job %s", e.Kind, e.Status)
	case e.Check != nil:
		what = fmt.Sprintf("health check %s %s", e.Check.Check, e.Check.Status)
	default:
		what = fmt.Sprintf("%s %s", e.Type, strings.ReplaceAll(string(e.Status), "_", " "))
	}
	return fmt.Sprintf("brr %s: %s", n.severity, what)
}

// Message is what happened in a few lines: the check's message or the job's error, and
// where (worker, repo, source, job).
func (n *notification) Message() string {
	e := n.event
	var lines []string
	switch {
	case e.Check != nil && e.Check.Message != "":
		lines = append(lines, e.Check.Message)
	case e.Error != "":
		lines = append(lines, e.Error)
	}
	var where []string
	add := func(k, v string) {
		if v != "" {
			where = append(where, k+" "+v)
		}
	}
	add("job", e.JobID)
	add("repo", e.Repo)
	add("source", e.Source)
	add("snapshot", e.Snapshot)
	if e.Check != nil {
		add("subject", e.Check.Subject)
	}
	add("worker", e.Worker)
	if len(where) > 0 {
		lines = append(lines, strings.Join(where, ", "))
	}
	lines = append(lines, n.subject+" at "+e.Time.UTC().Format(time.RFC3339))
	return strings.Join(lines, "\n")
}

// ntfy's priorities (1 min to 5 max) and tags (emoji short codes) by severity.
var (
	ntfyPriority = map[Severity]string{Info: "3", Warning: "4", Critical: "5"}
	ntfyTags     = map[Severity]string{Info: "information_source", Warning: "warning", Critical: "rotating_light"}
)

// request builds the POST of n to t, signed at now when t has a secret.
func (t *Target) request(n *notification, now time.Time) (*http.Request, error) {
	var body []byte
	contentType := "application/json"
	switch t.Shape {
	case ShapeSlack:
		b, err := json.Marshal(map[string]string{"text": "*" + n.Title() + "*\n" + n.Message()})
		if err != nil {
			return nil, fmt.Errorf("encode slack payload: %w", err)
		}
		body = b
	case ShapeNtfy:
		body = []byte(n.Message())
		contentType = "text/plain; charset=utf-8"
	default:
		body = n.data
	}
	req, err := http.NewRequest(http.MethodPost, t.URL, strings.NewReader(string(body)))
	if err != nil {
		return nil, fmt.Errorf("build request: %w", err)
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set("User-Agent", "brr-worker")
	req.Header.Set(HeaderEventID, n.event.ID)
	req.Header.Set(HeaderSubject, n.subject)
	req.Header.Set(HeaderSeverity, n.severity.String())
	if t.Shape == ShapeNtfy {
		req.Header.Set("Title", n.Title())
		req.Header.Set("Priority", ntfyPriority[n.severity])
		req.Header.Set("Tags", ntfyTags[n.severity])
	}
	if len(t.Secret) > 0 {
		ts := strconv.FormatInt(now.Unix(), 10)
		req.Header.Set(HeaderTimestamp, ts)
		req.Header.Set(HeaderSignature, Sign(t.Secret, ts, body))
	}
	return req, nil
}
