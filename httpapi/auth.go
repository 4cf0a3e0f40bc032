package httpapi

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// Scope names what a bearer token lets its holder do.
type Scope string

// The scopes of the HTTP API. Each endpoint needs exactly one; a token of
// another scope gets 403.
const (
	// ScopeSessions covers session operations: /v1/sessions and below.
	ScopeSessions Scope = "sessions"
	// ScopeAdmin covers everything else that is not a probe: logging a
	// principal out everywhere, the cluster view, gossip key rotation.
	ScopeAdmin Scope = "admin"
	// scopeOpen marks the endpoints probes and scrapers reach without a
	// token: /livez, /readyz and /metrics.
	scopeOpen Scope = ""
	// scopePage marks the status page at /: the admin scope, whose token
	// may also come as the password of HTTP Basic auth (any user name),
	// since a browser cannot send a bearer header by itself.
	scopePage Scope = "admin (page)"
)

// Token is a bearer token and the scope it grants. Several tokens may
// grant one scope, so a token can be replaced without downtime: add the new
// one, move the clients, remove the old one.
type Token struct {
	Scope Scope
	Value string
}

// tokenSet holds the tokens by the SHA-256 of their value, so that every
// comparison runs over equal lengths in constant time, and no token is
// kept where a log line or a panic could print it.
type tokenSet []hashedToken

// hashedToken is a token's scope and the hash of its value.
type hashedToken struct {
	scope Scope
	sum   [sha256.Size]byte
}

// newTokenSet hashes tokens; empty values are dropped.
func newTokenSet(tokens []Token) tokenSet {
	var out tokenSet
	for _, t := range tokens {
		if t.Value != "" {
			out = append(out, hashedToken{scope: t.Scope, sum: sha256.Sum256([]byte(t.Value))})
		}
	}
	return out
}

// check returns whether the request's token grants scope: 0 if it does,
// else 401 (no valid token) or 403 (a valid token of another scope). Every
// token is compared, in constant time, whatever matched first. The token
// is the bearer's, or for scopePage (which grants as ScopeAdmin) the Basic
// auth password when there is no bearer.
func (ts tokenSet) check(r *http.Request, scope Scope) int {
	value, ok := bearer(r)
	if scope == scopePage {
		scope = ScopeAdmin
		if !ok {
			_, value, ok = r.BasicAuth()
		}
	}
	if !ok {
		return http.StatusUnauthorized
	}
	sum := sha256.Sum256([]byte(value))
	granted, known := 0, 0
	for _, t := range ts {
		match := subtle.ConstantTimeCompare(sum[:], t.sum[:])
		known |= match
		granted |= match & boolInt(t.scope == scope)
	}
	switch {
	case granted == 1:
		return 0
	case known == 1:
		return http.StatusForbidden
	}
	return http.StatusUnauthorized
}

// boolInt is 1 for true, 0 for false.
func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	return strings.TrimSpace(h[len(prefix):]), true
}

// authorize reports whether r may reach an endpoint of scope, answering
// 401 or 403 (JSON, like every error) when it may not. With
// Config.Insecure every request may.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request, scope Scope) bool {
	if scope == scopeOpen || h.cfg.Insecure {
		return true
	}
	switch h.tokens.check(r, scope) {
	case 0:
		return true
	case http.StatusForbidden:
		granted := scope
		if scope == scopePage {
			granted = ScopeAdmin
		}
		writeError(w, r, http.StatusForbidden, "forbidden", "this token does not grant the "+string(granted)+" scope")
	default:
		if scope == scopePage {
			// A browser prompts for credentials on a Basic challenge.
			w.Header().Set("WWW-Authenticate", `Basic realm="tandem"`)
			writeError(w, r, http.StatusUnauthorized, "unauthorized", "the admin token is required, as the password of HTTP Basic auth (any user name) or as a bearer token")
			break
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="tandem"`)
		writeError(w, r, http.StatusUnauthorized, "unauthorized", "a bearer token is required (Authorization: Bearer <token>)")
	}
	return false
}
