package web

import (
	"errors"
	"net/http"

	"github.com/brr-dev/brr"
)

// JobCancel is the answer to DELETE /api/v1/jobs/{id}: the cancel was asked, and what the
// job was doing then (see brr.CancelResult).
type JobCancel struct {
	brr.CancelResult
	// URL is where the job's state can be read; it ends cancelled.
	URL string `json:"url"`
}

// cancelJob asks the workers to cancel a job: 202 with what the job was doing, or 409
// when it had already ended (the error says how).
func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	res, err := s.client.Cancel(r.Context(), id, brr.CancelBy("http "+clientIP(r)))
	if errors.Is(err, brr.ErrJobEnded) {
		return errorf(http.StatusConflict, "%v", err)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, JobCancel{CancelResult: *res, URL: "/api/v1/jobs/" + id})
	return nil
}
