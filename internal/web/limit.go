package web

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Rate is a token bucket: PerSecond tokens added each second, up to Burst.
type Rate struct {
	PerSecond float64
	Burst     int
}

// Limits are the request rates one client address may use: reads (GET) and writes
// (POST) have buckets of their own, so a busy dashboard does not block a job.
type Limits struct {
	Reads  Rate
	Writes Rate
}

// DefaultLimits: a dashboard makes a dozen reads on load and a few a minute after;
// scripts posting jobs in bulk should pace themselves at two a second.
var DefaultLimits = Limits{
	Reads:  Rate{PerSecond: 20, Burst: 200},
	Writes: Rate{PerSecond: 2, Burst: 20},
}

func (l Limits) withDefaults() Limits {
	if l.Reads.PerSecond <= 0 || l.Reads.Burst <= 0 {
		l.Reads = DefaultLimits.Reads
	}
	if l.Writes.PerSecond <= 0 || l.Writes.Burst <= 0 {
		l.Writes = DefaultLimits.Writes
	}
	return l
}

// maxClients bounds the buckets a limiter keeps; past it, idle ones are forgotten.
const maxClients = 4096

// limiter keeps a token bucket per client address.
type limiter struct {
	rate    Rate
	now     func() time.Time
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(r Rate, now func() time.Time) *limiter {
	return &limiter{rate: r, now: now, buckets: map[string]*bucket{}}
}

// allow takes a token from client's bucket; when there is none it says how long until
// there is one.
func (l *limiter) allow(client string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.buckets[client]
	if b == nil {
		if len(l.buckets) >= maxClients {
			l.forget(now)
		}
		b = &bucket{lim: rate.NewLimiter(rate.Limit(l.rate.PerSecond), l.rate.Burst)}
		l.buckets[client] = b
	}
	b.seen = now
	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	need := 1 - b.lim.TokensAt(now)
	return false, time.Duration(need / l.rate.PerSecond * float64(time.Second))
}

// forget drops the buckets of clients idle long enough for them to be full again (so
// forgetting them changes nothing), and all of them if that is not enough.
func (l *limiter) forget(now time.Time) {
	full := time.Duration(float64(l.rate.Burst) / l.rate.PerSecond * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.seen) > full {
			delete(l.buckets, k)
		}
	}
	if len(l.buckets) >= maxClients {
		clear(l.buckets)
	}
}

// limit answers 429, with Retry-After, to a client that has used up its bucket.
func (s *Server) limit(w http.ResponseWriter, r *http.Request, a access) error {
	l, what := s.reads, "reads"
	if a == mutate {
		l, what = s.writes, "jobs"
	}
	ok, wait := l.allow(clientIP(r))
	if ok {
		return nil
	}
	secs := int(math.Ceil(wait.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	return errorf(http.StatusTooManyRequests, "too many %s from %s: at most %s a second (bursts of %d); try again in %d s",
		what, clientIP(r), formatRate(l.rate.PerSecond), l.rate.Burst, secs)
}

func formatRate(f float64) string { return strconv.FormatFloat(f, 'f', -1, 64) }

// clientIP is the address of the client's end of the connection. Headers such as
// X-Forwarded-For are not trusted: behind a proxy, all its clients share its bucket.
func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// String describes the limits, for the worker's start-up log.
func (l Limits) String() string {
	l = l.withDefaults()
	return fmt.Sprintf("reads %s/s (burst %d), jobs %s/s (burst %d) per client address",
		formatRate(l.Reads.PerSecond), l.Reads.Burst, formatRate(l.Writes.PerSecond), l.Writes.Burst)
}
