package brr

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// MissingIntervals is how many of its heartbeat intervals a worker may stay silent before
// listings mark it missing.
const MissingIntervals = 3

// MissingAt reports whether the worker that sent heartbeat w has been silent at now for
// more than MissingIntervals of its heartbeat intervals.
func (w WorkerInfo) MissingAt(now time.Time) bool {
	return now.Sub(w.Time) > MissingIntervals*w.interval()
}

func (w WorkerInfo) interval() time.Duration {
	if w.IntervalSeconds <= 0 {
		return 15 * time.Second
	}
	return time.Duration(w.IntervalSeconds * float64(time.Second))
}

// WorkersWindow is how far back listings look for heartbeats sent every interval: ten
// intervals, and at least 15 minutes. A worker silent for longer than that is no longer
// listed, not even as missing.
func WorkersWindow(interval time.Duration) time.Duration {
	return max(10*interval, 15*time.Minute)
}

// LatestWorkers reduces heartbeats to the latest of each worker, sorted by id: it drops
// the workers silent for longer than the WorkersWindow of their interval and marks those
// silent for more than MissingIntervals intervals Missing. It never returns nil.
func LatestWorkers(heartbeats []WorkerInfo, now time.Time) []WorkerInfo {
	latest := make(map[string]WorkerInfo, len(heartbeats))
	for _, hb := range heartbeats {
		if cur, ok := latest[hb.ID]; !ok || hb.Time.After(cur.Time) {
			latest[hb.ID] = hb
		}
	}
	out := make([]WorkerInfo, 0, len(latest))
	for _, hb := range latest {
		if now.Sub(hb.Time) > WorkersWindow(hb.interval()) {
			continue
		}
		hb.Missing = hb.MissingAt(now)
		out = append(out, hb)
	}
	slices.SortFunc(out, func(a, b WorkerInfo) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Workers lists the workers that sent a heartbeat (brr.events.health.worker) within the
// WorkersWindow of the newest heartbeat's interval: the latest heartbeat of each, sorted
// by id, those silent for more than MissingIntervals intervals marked Missing. It reads
// the event stream, so it works with no worker up; "now" is this host's clock.
func (c *Client) Workers(ctx context.Context) ([]WorkerInfo, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if err := c.checkConnected(); err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	name := c.subj.EventsStream()
	stream, err := c.js.Stream(ctx, name)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, fmt.Errorf("list workers: %w", c.noStream(name))
		}
		return nil, fmt.Errorf("list workers: look up stream %s: %w", name, c.publishErr(err))
	}
	subject := c.subj.Event(&Event{Type: EventHealth, Status: Status(CheckWorker)})
	// The newest heartbeat says how often workers beat, hence how far back to look.
	last, err := stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return []WorkerInfo{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list workers: read the last heartbeat: %w", err)
	}
	interval := 15 * time.Second
	if e, err := DecodeEvent(last.Data); err == nil && e.Heartbeat != nil {
		interval = e.Heartbeat.interval()
	}
	now := time.Now()
	since := now.Add(-WorkersWindow(interval))
	var beats []WorkerInfo
	cfg := jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subject},
		DeliverPolicy:  jetstream.DeliverByStartTimePolicy,
		OptStartTime:   &since,
	}
	err = c.scan(ctx, name, cfg, func(m jetstream.Msg) {
		if e, err := DecodeEvent(m.Data()); err == nil && e.Heartbeat != nil && e.Heartbeat.ID != "" {
			beats = append(beats, *e.Heartbeat)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	return LatestWorkers(beats, now), nil
}

// WorkerInfo is a worker's heartbeat, published on brr.events.health.worker every
// health interval, and a row of `brr workers`.
type WorkerInfo struct {
	ID          string   `json:"id"`
	Host        string   `json:"host"`
	Version     string   `json:"version"`
	Pools       []string `json:"pools"`
	Concurrency int      `json:"concurrency"`
	InFlight    int      `json:"in_flight"`
	// JobsDone and JobsFailed count this worker's jobs since it started (failed
	// includes dead).
	JobsDone   int64     `json:"jobs_done"`
	JobsFailed int64     `json:"jobs_failed"`
	Started    time.Time `json:"started"`
	// UptimeSeconds is the time since Started when the heartbeat was sent.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// DiskFreeBytes is the free space of the file system of the worker's data dir, for
	// unprivileged users; DiskTotalBytes is its size.
	DiskFreeBytes  uint64 `json:"disk_free_bytes"`
	DiskTotalBytes uint64 `json:"disk_total_bytes"`
	// NATSRTTMS is the round trip to the NATS server, in milliseconds.
	NATSRTTMS float64 `json:"nats_rtt_ms"`
	// IntervalSeconds is the worker's heartbeat interval.
	IntervalSeconds float64 `json:"interval_seconds"`
	// Time is when the heartbeat was sent.
	Time time.Time `json:"time"`
	// RefusedRepos are the repos of the worker's config or its pools' registry that it does
	// not serve, each with why (RefusedRepo.Reason). Empty when it serves every one.
	RefusedRepos []RefusedRepo `json:"refused_repos,omitempty"`
	// Repos are the repos the worker serves (absent from workers of before runtime
	// repos).
	Repos []string `json:"repos,omitempty"`
	// RepoKeys is, for each repo the worker serves, the id of the key it opened the repo
	// with (brr key list marks each key with the workers that use it).
	RepoKeys map[string]string `json:"repo_keys,omitempty"`
	// Sources are the named sources of the worker's config, sorted by name, without the
	// text of their commands and hooks (see SourceInfo). Absent from workers of before
	// named sources, and from workers with none.
	Sources []SourceInfo `json:"sources,omitempty"`
	// Missing is set by listings (not in heartbeats): no heartbeat within three intervals.
	Missing bool `json:"missing,omitempty"`
}

// RepoRegistration is what a pool agreed a repo name means: the repository (its id and
// location) that the first worker of the pool to serve a repo of that name registered, in
// the KV bucket BRR_REPOS under <pool>.<repo>. It stays until someone removes it.
type RepoRegistration struct {
	Pool string `json:"pool"`
	Repo string `json:"repo"`
	// ID is the repository's id (from its config), Location its URL without secrets.
	ID       string `json:"id"`
	Location string `json:"location"`
	// Worker and Host name the worker that registered it; Time is when. A repo added
	// with `brr repo add` has no id until a worker opens or creates it; Worker is then
	// the user who added it.
	Worker string    `json:"worker"`
	Host   string    `json:"host"`
	Time   time.Time `json:"time"`
	// Spec is how every worker of the pool opens the repo: its URL and options, the names
	// of the variables and files that hold its secrets on each worker, never a secret.
	// Nil in registrations written before repos could be added at runtime: those only
	// name the repository that workers with the repo in their config open.
	Spec *RepoSpec `json:"spec,omitempty"`
	// ReplicateTo is the repo's replication policy: the repos of the pool each snapshot
	// committed to it is replicated to. Nil when none was ever set; a worker's config
	// (replicate:) seeds it then.
	ReplicateTo *[]string `json:"replicate_to,omitempty"`
}

// RepoSpec is a repository as workers open it: the url and the keys of a repo in the
// worker's config (docs/configuration.md) and of `brr repo add`. It holds no secret: the
// password and the credentials are in the environment variables and files it names,
// on each worker.
type RepoSpec struct {
	URL         string `json:"url" yaml:"url"`
	KeyFile     string `json:"key_file,omitempty" yaml:"key_file,omitempty"`
	PasswordEnv string `json:"password_env,omitempty" yaml:"password_env,omitempty"`
	// AppendOnly makes workers never delete or overwrite anything in the repo but its
	// locks and prune plans: prune and checkpoint removal are refused.
	AppendOnly bool `json:"append_only,omitempty" yaml:"append_only,omitempty"`
	// LimitUpload and LimitDownload cap the repo's traffic, in KiB/s per worker; 0 is no
	// limit.
	LimitUpload   int `json:"limit_upload,omitempty" yaml:"limit_upload,omitempty"`
	LimitDownload int `json:"limit_download,omitempty" yaml:"limit_download,omitempty"`
	// The keys of an s3:// repo. The credentials come from the environment variables
	// they name (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN when they
	// name none), else from a credentials file; two repos naming different variables use
	// two accounts.
	Region string `json:"region,omitempty" yaml:"region,omitempty"`
	// PathStyle is "auto" (the default), "path" (https://host/bucket, MinIO and most
	// self-hosted servers) or "virtual" (https://bucket.host).
	PathStyle       string `json:"path_style,omitempty" yaml:"path_style,omitempty"`
	AccessKeyEnv    string `json:"access_key_env,omitempty" yaml:"access_key_env,omitempty"`
	SecretKeyEnv    string `json:"secret_key_env,omitempty" yaml:"secret_key_env,omitempty"`
	SessionTokenEnv string `json:"session_token_env,omitempty" yaml:"session_token_env,omitempty"`
	// CredentialsFile is an AWS shared credentials file; Profile its section ("default"
	// when empty).
	CredentialsFile string `json:"credentials_file,omitempty" yaml:"credentials_file,omitempty"`
	Profile         string `json:"profile,omitempty" yaml:"profile,omitempty"`
	// The keys of an sftp:// repo. SSHKeyFile is the private key to log in with; without
	// it the ssh agent at $SSH_AUTH_SOCK is asked, else ~/.ssh/id_ed25519, id_ecdsa or
	// id_rsa is used. KnownHosts is the file the server's host key must be in
	// (~/.ssh/known_hosts when empty).
	SSHKeyFile string `json:"ssh_key_file,omitempty" yaml:"ssh_key_file,omitempty"`
	KnownHosts string `json:"known_hosts,omitempty" yaml:"known_hosts,omitempty"`
}

// Why a worker does not serve a repo it has or that its pool registered (RefusedRepo).
const (
	// RefusedConflict: the pool registered the name for another repository.
	RefusedConflict = "conflict"
	// RefusedUnavailable: the worker cannot open the repo the pool registered, most often
	// because it lacks the repo's secret (its password, key file or credentials).
	RefusedUnavailable = "unavailable"
)

// RefusedRepo is a repo that a worker has, or that its pool registered, but that it does
// not serve: the pool registered the name for another repository (RefusedConflict), or
// the worker cannot open it, most often for lack of its secret (RefusedUnavailable). Its
// jobs are left to the workers of the pool that serve it.
type RefusedRepo struct {
	Repo string `json:"repo"`
	// Reason is RefusedConflict or RefusedUnavailable (empty in heartbeats of workers
	// from before runtime repos: RefusedConflict).
	Reason string `json:"reason,omitempty"`
	// Pool is the pool whose registration it disagrees with.
	Pool string `json:"pool"`
	// ID is this worker's repository of that name, empty when the worker has none (it did
	// not create one, since the one it would create would be another repository); Location
	// is where this worker's repo is or would be.
	ID       string `json:"id,omitempty"`
	Location string `json:"location"`
	// Registered is what the pool registered under the name.
	Registered RepoRegistration `json:"registered"`
	// Message says, for people, what is wrong and how to fix it.
	Message string `json:"message"`
}
