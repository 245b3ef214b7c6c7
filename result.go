package brr

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Result is what a job produced; the field of the job's kind is set. It travels in the
// job's succeeded event (and, for verify, in failed ones too: the damage found).
type Result struct {
	Backup  *BackupResult  `json:"backup,omitempty"`
	Restore *RestoreResult `json:"restore,omitempty"`
	Verify  *VerifyResult  `json:"verify,omitempty"`
	Ping    *PingResult    `json:"ping,omitempty"`

	Replicate  *ReplicateResult  `json:"replicate,omitempty"`
	Prune      *PruneResult      `json:"prune,omitempty"`
	Checkpoint *CheckpointResult `json:"checkpoint,omitempty"`
	Drill      *DrillResult      `json:"drill,omitempty"`
	Key        *KeyResult        `json:"key,omitempty"`
}

// results opens the KV bucket BRR_RESULTS, which keeps the latest lifecycle event of every
// job, with an error that says what to do when it does not exist yet.
func (c *Client) results(ctx context.Context) (jetstream.KeyValue, error) {
	if err := c.checkConnected(); err != nil {
		return nil, err
	}
	kv, err := c.js.KeyValue(ctx, c.subj.ResultsBucket())
	if err != nil {
		if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, c.noStream("KV_" + c.subj.ResultsBucket())
		}
		return nil, fmt.Errorf("open bucket %s: %w", c.subj.ResultsBucket(), c.publishErr(err))
	}
	return kv, nil
}

// Job returns the latest lifecycle event of job id, or an error wrapping ErrNotFound.
func (c *Client) Job(ctx context.Context, id string) (*Event, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	kv, err := c.results(ctx)
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	entry, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) || errors.Is(err, jetstream.ErrKeyDeleted) {
		return nil, fmt.Errorf("job %s: %w (no worker has taken it yet, or it expired)", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	e, err := DecodeEvent(entry.Value())
	if err != nil {
		return nil, fmt.Errorf("get job %s: %w", id, err)
	}
	return e, nil
}

// Jobs returns the latest lifecycle event of the limit most recently updated jobs, newest
// first; limit <= 0 means every job in the results bucket.
func (c *Client) Jobs(ctx context.Context, limit int) ([]*Event, error) {
	ctx, cancel := withTimeout(ctx)
	defer cancel()
	if _, err := c.results(ctx); err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	name := "KV_" + c.subj.ResultsBucket()
	st, err := c.js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("list jobs: %w", err)
	}
	last := st.CachedInfo().State.LastSeq
	keyPrefix := "$KV." + c.subj.ResultsBucket() + "."
	// Older revisions of a key are gone or older than its latest, so the newest stream
	// messages are the newest jobs: read a window from the end, widen it until it holds
	// limit jobs or the whole stream.
	window := uint64(4*limit + 64)
	for {
		start := uint64(1)
		if limit > 0 && last > window {
			start = last - window + 1
		}
		type rev struct {
			seq uint64
			e   *Event
		}
		latest := map[string]rev{}
		cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{keyPrefix + ">"}, DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: start}
		err := c.scan(ctx, name, cfg, func(m jetstream.Msg) {
			key := strings.TrimPrefix(m.Subject(), keyPrefix)
			md, err := m.Metadata()
			if err != nil {
				return
			}
			if m.Headers().Get("KV-Operation") != "" || m.Headers().Get("Nats-Marker-Reason") != "" {
				delete(latest, key)
				return
			}
			e, err := DecodeEvent(m.Data())
			if err != nil {
				return
			}
			latest[key] = rev{md.Sequence.Stream, e}
		})
		if err != nil {
			return nil, fmt.Errorf("list jobs: %w", err)
		}
		if limit <= 0 || len(latest) >= limit || start == 1 {
			revs := make([]rev, 0, len(latest))
			for _, r := range latest {
				revs = append(revs, r)
			}
			sort.Slice(revs, func(i, j int) bool { return revs[i].seq > revs[j].seq })
			if limit > 0 && len(revs) > limit {
				revs = revs[:limit]
			}
			out := make([]*Event, len(revs))
			for i, r := range revs {
				out[i] = r.e
			}
			return out, nil
		}
		window *= 4
	}
}
