package web

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestCancelJobAPI cancels a job no worker has (202, and the request is stored), a
// finished job (409 that says how it ended), and checks that cancel needs the key.
func TestCancelJobAPI(t *testing.T) {
	f := setup(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	var eb errorBody
	decode(t, f.do("DELETE", "/api/v1/jobs/not-yet", "", nil), http.StatusUnauthorized, &eb)

	var jc JobCancel
	decode(t, f.do("DELETE", "/api/v1/jobs/not-yet", testKey, nil), http.StatusAccepted, &jc)
	if jc.ID != "not-yet" || jc.Status != "" || jc.URL != "/api/v1/jobs/not-yet" {
		t.Errorf("cancel of a job no worker has = %+v", jc)
	}

	decode(t, f.post("/api/v1/jobs", `{"kind":"ping","id":"pinged"}`), http.StatusAccepted, &JobAccepted{})
	if _, err := f.client.Wait(ctx, "pinged", nil); err != nil {
		t.Fatalf("wait ping: %v", err)
	}
	decode(t, f.do("DELETE", "/api/v1/jobs/pinged", testKey, nil), http.StatusConflict, &eb)
	if !strings.Contains(eb.Error, "ended succeeded") {
		t.Errorf("409 says %q, want how the job ended", eb.Error)
	}
	decode(t, f.do("DELETE", "/api/v1/jobs/bad%20id", testKey, nil), http.StatusBadRequest, &eb)

}
