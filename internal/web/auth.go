package web

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// authorize checks the caller's key where the route and the configuration need one.
// Keys are compared as SHA-256 digests in constant time, so neither the key's bytes nor
// its length leak through timing. Nothing here logs or echoes what the caller sent.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request, a access) error {
	if a == read && !s.cfg.ProtectReads {
		return nil
	}
	if s.keyHash == nil {
		return errorf(http.StatusForbidden, "this worker takes no jobs over HTTP: it has no API key; set http.api_key_file (or BRR_HTTP_API_KEY_FILE) to a file holding one and restart it")
	}
	token, ok := bearer(r)
	if !ok {
		w.Header().Set("WWW-Authenticate", `Bearer realm="brr"`)
		return errorf(http.StatusUnauthorized, "missing API key: send it as the header 'Authorization: Bearer KEY' (the key is in the worker's http.api_key_file)")
	}
	got := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(got[:], s.keyHash[:]) != 1 {
		w.Header().Set("WWW-Authenticate", `Bearer realm="brr", error="invalid_token"`)
		return errorf(http.StatusUnauthorized, "wrong API key: send the key in the worker's http.api_key_file as 'Authorization: Bearer KEY'")
	}
	return nil
}

// bearer returns the token of an "Authorization: Bearer TOKEN" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, token, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	token = strings.TrimSpace(token)
	return token, token != ""
}
