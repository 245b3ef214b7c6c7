package health

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/brr-dev/brr"
)

// SnapshotsCheckName is the name of the check that lists the repositories' snapshots
// once per interval and reports the rpo and replication_lag results from that listing.
const SnapshotsCheckName = "snapshots"

// maxInventorySources bounds the (repo, source) pairs an inventory keeps, and so the
// label values of the snapshot metrics; the sources with an RPO come first.
const maxInventorySources = 200

// SnapshotLister lists the snapshots of a repo, oldest first, of every source when source
// is empty. *jobs.Engine implements it.
type SnapshotLister interface {
	Snapshots(ctx context.Context, repo, source string) ([]brr.Snapshot, error)
}

// SnapshotCheck lists the snapshots of every repo and reports:
//   - rpo, per source with a recovery point objective: critical when no repo has a
//     snapshot of it newer than the objective;
//   - replication_lag, per replication target ("local->offsite"): how many snapshots of
//     the source repo the target lacks and how old the oldest of them is; warn past
//     LagWarn, critical past LagCritical.
//
// Its memo is the Inventory, which every worker's Monitor reads for the snapshot metrics.
type SnapshotCheck struct {
	Lister SnapshotLister
	// Repos are the repos to list: those the worker serves now.
	Repos func() []string
	// Partial, when set and true, says the worker does not serve all the pool's repos
	// now: it sits the check's turns out (see Sitter) rather than measure the pool
	// wrongly (an RPO missed for want of the snapshots of a repo it refuses).
	Partial func() bool
	// RPO is the recovery point objective of each source: how old its newest snapshot
	// may be.
	RPO map[string]time.Duration
	// Watched are the watched sources, by what their snapshots are of, each with how
	// long a change may wait for a snapshot that holds it (the watch's max_delay and a
	// margin). Their rpo result is also critical when the worker that watches one says
	// (in its heartbeat, read through Workers) that a change older than that is in no
	// committed snapshot; a source in which nothing changed is not. The source's RPO
	// still bounds the age of its newest snapshot, which the watch's rescans keep young:
	// it catches a watch that stopped.
	Watched map[string]time.Duration
	// Workers are the live workers' latest heartbeats; nil reads none.
	Workers func() []brr.WorkerInfo
	// Replicate is the replication policy now: repo → the repos its snapshots are copied
	// to.
	Replicate func() map[string][]string
	// LagWarn (default 15m) and LagCritical (default 1h) bound the age of the oldest
	// snapshot a target lacks.
	LagWarn, LagCritical time.Duration
}

// Inventory is what the snapshots check found: per repo and source, how many snapshots
// and the newest; per replication target, its lag.
type Inventory struct {
	Time    time.Time         `json:"time"`
	Sources []SourceSnapshots `json:"sources"`
	Lags    []Lag             `json:"lags"`
	// Unread names the repos that could not be listed, with why.
	Unread map[string]string `json:"unread,omitempty"`
	// Dropped counts the (repo, source) pairs left out past the limit of 200.
	Dropped int `json:"dropped,omitempty"`
}

// SourceSnapshots counts the snapshots of one source in one repo.
type SourceSnapshots struct {
	Repo   string    `json:"repo"`
	Source string    `json:"source"`
	Count  int       `json:"count"`
	Newest time.Time `json:"newest"`
}

// Lag is how far replication target To is behind repo From.
type Lag struct {
	From string `json:"from"`
	To   string `json:"to"`
	// Behind counts the snapshots of From that To lacks; AgeSeconds is the age of the
	// oldest of them (0 when Behind is 0).
	Behind     int     `json:"behind"`
	AgeSeconds float64 `json:"age_seconds"`
}

// Name returns SnapshotsCheckName.
// policy is the replication policy now; none without Replicate.
func (c *SnapshotCheck) policy() map[string][]string {
	if c.Replicate == nil {
		return nil
	}
	return c.Replicate()
}

// SitOut is Partial's answer.
func (c *SnapshotCheck) SitOut() bool { return c.Partial != nil && c.Partial() }

func (c *SnapshotCheck) Name() string { return SnapshotsCheckName }

// Run lists the repos and measures.
func (c *SnapshotCheck) Run(ctx context.Context, t Tick) (Outcome, error) {
	lists := map[string][]brr.Snapshot{}
	unread := map[string]string{}
	for _, name := range c.Repos() {
		sns, err := c.Lister.Snapshots(ctx, name, "")
		if err != nil {
			unread[name] = err.Error()
			continue
		}
		lists[name] = sns
	}
	inv := c.inventory(lists, unread, t.Now)
	var out Outcome
	out.Results = append(c.rpo(lists, unread, t.Now), c.lag(inv, unread)...)
	memo, err := json.Marshal(inv)
	if err != nil {
		return Outcome{}, fmt.Errorf("encode inventory: %w", err)
	}
	out.Memo = memo
	return out, nil
}

func (c *SnapshotCheck) inventory(lists map[string][]brr.Snapshot, unread map[string]string, now time.Time) Inventory {
	inv := Inventory{Time: now.UTC(), Sources: []SourceSnapshots{}, Lags: []Lag{}}
	if len(unread) > 0 {
		inv.Unread = unread
	}
	type key struct{ repo, source string }
	per := map[key]*SourceSnapshots{}
	for repoName, sns := range lists {
		for _, sn := range sns {
			k := key{repoName, sn.Source}
			s := per[k]
			if s == nil {
				s = &SourceSnapshots{Repo: repoName, Source: sn.Source}
				per[k] = s
			}
			s.Count++
			if sn.Time.After(s.Newest) {
				s.Newest = sn.Time.UTC()
			}
		}
	}
	for _, s := range per {
		inv.Sources = append(inv.Sources, *s)
	}
	// Sources with an RPO first, then by repo and source; the tail past the limit goes.
	slices.SortFunc(inv.Sources, func(a, b SourceSnapshots) int {
		_, ra := c.RPO[a.Source]
		_, rb := c.RPO[b.Source]
		if ra != rb {
			if ra {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Repo, b.Repo), cmp.Compare(a.Source, b.Source))
	})
	if len(inv.Sources) > maxInventorySources {
		inv.Dropped = len(inv.Sources) - maxInventorySources
		inv.Sources = inv.Sources[:maxInventorySources]
	}
	policy := c.policy()
	for _, from := range sortedKeys(policy) {
		src, ok := lists[from]
		if !ok {
			continue
		}
		for _, to := range policy[from] {
			dst, ok := lists[to]
			if !ok || to == from {
				continue
			}
			inv.Lags = append(inv.Lags, measureLag(from, to, src, dst, now))
		}
	}
	return inv
}

// measureLag counts the snapshots of src (repo from) that dst (repo to) lacks; a copy
// keeps its snapshot's id.
func measureLag(from, to string, src, dst []brr.Snapshot, now time.Time) Lag {
	has := make(map[string]bool, len(dst))
	for _, sn := range dst {
		has[sn.ID] = true
	}
	lag := Lag{From: from, To: to}
	var oldest time.Time
	for _, sn := range src {
		if has[sn.ID] {
			continue
		}
		lag.Behind++
		if oldest.IsZero() || sn.Time.Before(oldest) {
			oldest = sn.Time
		}
	}
	if lag.Behind > 0 {
		lag.AgeSeconds = max(now.Sub(oldest).Seconds(), 0)
	}
	return lag
}

// rpo returns a result per source with an RPO.
func (c *SnapshotCheck) rpo(lists map[string][]brr.Snapshot, unread map[string]string, now time.Time) []brr.HealthCheck {
	var out []brr.HealthCheck
	for _, source := range sortedKeys(c.RPO) {
		objective := c.RPO[source]
		var newest brr.Snapshot
		for _, sns := range lists {
			for _, sn := range sns {
				if sn.Source == source && sn.Time.After(newest.Time) {
					newest = sn
				}
			}
		}
		res := brr.HealthCheck{Check: brr.CheckRPO, Subject: source, Value: -1}
		switch {
		case newest.ID == "":
			res.Status = brr.HealthCritical
			res.Message = fmt.Sprintf("no snapshot of %s in %s: back it up now (brr backup %s) and schedule backups more often than every %s",
				source, repoList(lists), source, objective)
		default:
			age := max(now.Sub(newest.Time), 0)
			res.Value = age.Seconds()
			if age > objective {
				res.Status = brr.HealthCritical
				res.Message = fmt.Sprintf("the newest snapshot of %s is %s old (%s in repo %s), older than its RPO of %s: back it up now and check its schedule (brr schedule ls)",
					source, human(age), shortID(newest.ID), newest.Repo, objective)
			} else {
				res.Status = brr.HealthOK
				res.Message = fmt.Sprintf("the newest snapshot of %s is %s old (%s in repo %s), within its RPO of %s",
					source, human(age), shortID(newest.ID), newest.Repo, objective)
			}
		}
		c.unprotected(&res, source, now)
		res.Message += unreadNote(unread)
		out = append(out, res)
	}
	return out
}

// unprotected turns res critical when source is watched and the worker that watches it
// says that a change has waited longer than the watch's expectation for a snapshot; it
// adds to the message what the watch says otherwise.
func (c *SnapshotCheck) unprotected(res *brr.HealthCheck, source string, now time.Time) {
	expect, ok := c.Watched[source]
	if !ok || c.Workers == nil {
		return
	}
	var since time.Time
	var watcher string
	for _, w := range c.Workers() {
		if w.Missing {
			continue
		}
		for _, s := range w.Sources {
			if s.Watching == nil || s.Key() != source {
				continue
			}
			if watcher == "" {
				watcher = w.ID
			}
			if u := s.Watching.UnprotectedSince; u != nil && (since.IsZero() || u.Before(since)) {
				since, watcher = *u, w.ID
			}
		}
	}
	switch {
	case watcher == "":
		res.Message += "; no worker says it watches it now"
	case since.IsZero():
		res.Message += fmt.Sprintf("; every change the watch on worker %s saw is in a snapshot", watcher)
	default:
		age := max(now.Sub(since), 0)
		if age <= expect {
			res.Message += fmt.Sprintf("; a change the watch on worker %s saw %s ago waits for its backup (expected within %s)", watcher, human(age), expect)
			return
		}
		if res.Status != brr.HealthCritical {
			res.Status = brr.HealthCritical
			res.Message = fmt.Sprintf("a change to %s that the watch on worker %s saw %s ago is in no snapshot yet, longer than the %s a watched change may wait: "+
				"see its backup jobs (brr jobs, brr dlq) and the worker's log; the newest snapshot is %s old",
				source, watcher, human(age), expect, human(time.Duration(res.Value*float64(time.Second))))
		}
	}
}

// lag returns a result per replication target.
func (c *SnapshotCheck) lag(inv Inventory, unread map[string]string) []brr.HealthCheck {
	warnAfter, critAfter := cmp.Or(c.LagWarn, 15*time.Minute), cmp.Or(c.LagCritical, time.Hour)
	measured := map[string]Lag{}
	for _, l := range inv.Lags {
		measured[pairSubject(l.From, l.To)] = l
	}
	var out []brr.HealthCheck
	policy := c.policy()
	for _, from := range sortedKeys(policy) {
		for _, to := range policy[from] {
			if to == from {
				continue
			}
			subject := pairSubject(from, to)
			res := brr.HealthCheck{Check: brr.CheckReplicationLag, Subject: subject}
			l, ok := measured[subject]
			if !ok {
				res.Status = brr.HealthWarn
				note := unreadNote(unread)
				if note == "" {
					note = " (one of them is not open on the worker that ran the check)"
				}
				res.Message = fmt.Sprintf("cannot measure how far repo %s is behind repo %s%s", to, from, note)
				out = append(out, res)
				continue
			}
			age := time.Duration(l.AgeSeconds * float64(time.Second))
			res.Value = l.AgeSeconds
			switch {
			case l.Behind == 0:
				res.Status = brr.HealthOK
				res.Message = fmt.Sprintf("repo %s has every snapshot of repo %s", to, from)
			case age <= warnAfter:
				res.Status = brr.HealthOK
				res.Message = fmt.Sprintf("repo %s lacks %d snapshot(s) of repo %s, the oldest taken %s ago: replication is under way", to, l.Behind, from, human(age))
			default:
				res.Status = brr.HealthWarn
				limit := warnAfter
				if age > critAfter {
					res.Status, limit = brr.HealthCritical, critAfter
				}
				res.Message = fmt.Sprintf("repo %s lacks %d snapshot(s) of repo %s, the oldest taken %s ago (more than %s): "+
					"see brr events --kind replication and brr dlq, or copy them now with brr replicate all --from %s --to %s",
					to, l.Behind, from, human(age), limit, from, to)
			}
			out = append(out, res)
		}
	}
	return out
}

// pairSubject is the subject of a replication_lag result: "from->to".
func pairSubject(from, to string) string { return from + "->" + to }

// cutArrow splits a replication_lag subject into its repos.
func cutArrow(subject string) (from, to string, ok bool) { return strings.Cut(subject, "->") }

func repoList(lists map[string][]brr.Snapshot) string {
	names := sortedKeys(lists)
	if len(names) == 0 {
		return "any readable repo"
	}
	return "repo " + strings.Join(names, ", ")
}

// unreadNote is the part of a message that names the repos that could not be listed.
func unreadNote(unread map[string]string) string {
	var b strings.Builder
	for _, name := range sortedKeys(unread) {
		fmt.Fprintf(&b, " (could not list repo %s: %s)", name, unread[name])
	}
	return b.String()
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// human rounds d for a message: to the second under an hour, to the minute above.
func human(d time.Duration) string {
	if d >= time.Hour {
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}
