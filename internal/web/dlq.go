package web

import (
	"net/http"
	"time"

	"github.com/brr-dev/brr"
)

// DeadLetterList is the answer of GET /api/v1/dlq.
type DeadLetterList struct {
	// DeadLetters are the entries of the dead-letter stream, oldest first.
	DeadLetters []brr.DeadLetterEntry `json:"dead_letters"`
}

// DeadLettersRemoved is the answer of DELETE /api/v1/dlq and /api/v1/dlq/{id}.
type DeadLettersRemoved struct {
	// Removed is how many entries were removed.
	Removed int `json:"removed"`
	// Seqs are their sequences (DELETE /api/v1/dlq/{id} only).
	Seqs []uint64 `json:"seqs,omitempty"`
}

func (s *Server) listDead(w http.ResponseWriter, r *http.Request) error {
	entries, err := s.client.DeadLetters(r.Context())
	if err != nil {
		return err
	}
	if entries == nil {
		entries = []brr.DeadLetterEntry{}
	}
	writeJSON(w, http.StatusOK, DeadLetterList{DeadLetters: entries})
	return nil
}

// deadRef is the {id} of a dead-letter route: a job id or an entry's sequence (digits,
// which a job id may be too).
func deadRef(r *http.Request) (string, error) {
	ref := r.PathValue("id")
	if err := brr.ValidateID(ref); err != nil {
		return "", errorf(http.StatusBadRequest, "dead letter %q: give a job id or the seq of an entry (GET /api/v1/dlq lists them)", ref)
	}
	return ref, nil
}

func (s *Server) retryDead(w http.ResponseWriter, r *http.Request) error {
	ref, err := deadRef(r)
	if err != nil {
		return err
	}
	res, err := s.client.RetryDead(r.Context(), ref)
	if err != nil {
		return err
	}
	url := "/api/v1/jobs/" + res.ID
	w.Header().Set("Location", url)
	s.log.Info().Str("job_id", res.ID).Str("kind", string(res.Kind)).Str("pool", res.Pool).Str("client", clientIP(r)).Msg("dead job queued again over http")
	writeJSON(w, http.StatusAccepted, JobAccepted{PublishResult: res, URL: url})
	return nil
}

func (s *Server) removeDead(w http.ResponseWriter, r *http.Request) error {
	ref, err := deadRef(r)
	if err != nil {
		return err
	}
	removed, err := s.client.RemoveDead(r.Context(), ref)
	if err != nil {
		return err
	}
	out := DeadLettersRemoved{Removed: len(removed)}
	for _, e := range removed {
		out.Seqs = append(out.Seqs, e.Seq)
	}
	s.log.Info().Str("dead_letter", ref).Int("removed", out.Removed).Str("client", clientIP(r)).Msg("dead letters removed over http")
	writeJSON(w, http.StatusOK, out)
	return nil
}

// purgeDead removes every dead letter, or with before= those older than a duration
// back from now (7d) or a time.
func (s *Server) purgeDead(w http.ResponseWriter, r *http.Request) error {
	var before time.Time
	if v := r.URL.Query().Get("before"); v != "" {
		t, err := sinceParam(v, s.cfg.Now())
		if err != nil {
			return errorf(http.StatusBadRequest, "before %q: want a duration back from now such as 24h or 7d, or a time such as 2026-11-26T12:00:00Z", v)
		}
		before = t
	}
	n, err := s.client.PurgeDead(r.Context(), before)
	if err != nil {
		return err
	}
	s.log.Info().Int("removed", n).Time("before", before).Str("client", clientIP(r)).Msg("dead letters purged over http")
	writeJSON(w, http.StatusOK, DeadLettersRemoved{Removed: n})
	return nil
}
