// Package httpapi serves a Tandem node over HTTP, for standalone nodes and
// their operators: session CRUD in JSON or msgpack, owner lookup for
// balancers and smart clients, health, readiness, the cluster view and
// Prometheus metrics.
//
// Every error is a JSON object {"error": "...", "code": "..."} with a
// fitting status, and a request that fails changes nothing.
package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandem-io/tandem"
)

// Content types the API speaks.
const (
	contentJSON       = "application/json"
	contentMsgpack    = "application/msgpack"
	contentMergePatch = "application/merge-patch+json"
)

// Config configures the handler.
type Config struct {
	// MaxBodyBytes bounds request bodies; larger ones get 413 before they
	// are read. Zero means DefaultMaxBodyBytes of the node's
	// MaxSessionBytes.
	MaxBodyBytes int64
	// RequestTimeout bounds each request's session operation, retries
	// included. Zero means 5s.
	RequestTimeout time.Duration
	// Logger receives request errors; nil discards them.
	Logger *slog.Logger
	// Tokens are the bearer tokens the API accepts, each granting one
	// scope. Every endpoint but /livez, /readyz and /metrics needs one:
	// without a token a request gets 401, with a token of another scope
	// 403. With no tokens and Insecure unset, only those three answer.
	Tokens []Token
	// Insecure serves every endpoint without a token. It is the explicit
	// choice of `tandem serve -insecure` and of tests.
	Insecure bool
}

// DefaultMaxBodyBytes is the body limit for a node whose sessions may
// take maxSessionBytes encoded: twice that, since JSON spells most values
// in more bytes than msgpack does (quotes, escapes, digits), plus 64 KiB
// for the body's own fields. A body within it may still make a session
// over the limit, which the write refuses (413, too_large).
func DefaultMaxBodyBytes(maxSessionBytes int) int64 {
	return 2*int64(maxSessionBytes) + 64<<10
}

// Handler is the HTTP API of one node.
type Handler struct {
	node   *tandem.Node
	cfg    Config
	log    *slog.Logger
	mux    *http.ServeMux
	tokens tokenSet
}

// New returns the HTTP API of node.
func New(node *tandem.Node, cfg Config) *Handler {
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes(node.Limits().MaxSessionBytes)
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{node: node, cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), tokens: newTokenSet(cfg.Tokens)}
	h.route("/v1/sessions", ScopeSessions, map[string]http.HandlerFunc{http.MethodPost: h.create})
	h.route("/v1/sessions/{id}", ScopeSessions, map[string]http.HandlerFunc{
		http.MethodGet:    h.get,
		http.MethodHead:   h.get,
		http.MethodPut:    h.put,
		http.MethodPatch:  h.patch,
		http.MethodDelete: h.delete,
	})
	h.route("/v1/sessions/{id}/owners", ScopeSessions, map[string]http.HandlerFunc{http.MethodGet: h.owners})
	h.route("/v1/principals/{name}/sessions", ScopeAdmin, map[string]http.HandlerFunc{http.MethodDelete: h.invalidatePrincipal})
	h.route("/v1/cluster", ScopeAdmin, map[string]http.HandlerFunc{http.MethodGet: h.cluster})
	h.routeKeys()
	h.route("/metrics", scopeOpen, map[string]http.HandlerFunc{http.MethodGet: promhttp.HandlerFor(newRegistry(node), promhttp.HandlerOpts{}).ServeHTTP})
	h.route("/livez", scopeOpen, map[string]http.HandlerFunc{http.MethodGet: h.livez})
	h.route("/readyz", scopeOpen, map[string]http.HandlerFunc{http.MethodGet: h.readyz})
	h.route("/{$}", scopePage, map[string]http.HandlerFunc{http.MethodGet: h.status, http.MethodHead: h.status}) // the status page (status.go)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, r, http.StatusNotFound, "not_found", fmt.Sprintf("no such endpoint: %s", r.URL.Path))
	})
	return h
}

// route registers handlers for pattern by method, each reachable only with
// a token of scope (authorize); other methods get a JSON 405 with an Allow
// header.
func (h *Handler) route(pattern string, scope Scope, byMethod map[string]http.HandlerFunc) {
	var allowed []string
	for m := range byMethod {
		allowed = append(allowed, m)
	}
	allow := strings.Join(sorted(allowed), ", ")
	h.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		if !h.authorize(w, r, scope) {
			return
		}
		fn, ok := byMethod[r.Method]
		if !ok {
			w.Header().Set("Allow", allow)
			writeError(w, r, http.StatusMethodNotAllowed, "method_not_allowed", fmt.Sprintf("%s does not allow %s", pattern, r.Method))
			return
		}
		// Answers in JSON or msgpack need an Accept that takes one: 406
		// before anything is done otherwise. Not /metrics or the status
		// page (their own types), a session's DELETE (204, no content), or
		// the probes, which answer JSON whatever a prober sends (RFC 9110
		// lets a server disregard Accept).
		negotiated := scope != scopePage && !(pattern == "/v1/sessions/{id}" && r.Method == http.MethodDelete)
		switch pattern {
		case "/metrics", "/livez", "/readyz":
			negotiated = false
		}
		if negotiated && !acceptable(w, r) {
			return
		}
		fn(w, r)
	})
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

// ctx bounds a request's session operation.
func (h *Handler) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), h.cfg.RequestTimeout)
}

// create handles POST /v1/sessions: a new session with a server-made id.
func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	body, ok := h.readSessionBody(w, r)
	if !ok {
		return
	}
	if body.ID != "" {
		writeError(w, r, http.StatusBadRequest, "invalid", "POST /v1/sessions makes the id; to choose it, PUT /v1/sessions/{id}")
		return
	}
	op, err := body.op(NewID())
	if err != nil {
		writeError(w, r, http.StatusBadRequest, "invalid", err.Error())
		return
	}
	op.IfAbsent = true
	ctx, cancel := h.ctx(r)
	defer cancel()
	s, err := h.node.Do(ctx, op)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/sessions/"+s.ID)
	writeSession(w, r, http.StatusCreated, s)
}

// NewID returns a fresh session id: 128 bits from crypto/rand, URL-safe.
func NewID() string { return tandem.NewID() }

// get handles GET and HEAD /v1/sessions/{id}; ?touch=false leaves the idle
// deadline alone, and so does every HEAD (a HEAD is not an access: RFC
// 9110 9.3.2 makes it GET without the content, and a monitor probing with
// it must not keep a session alive).
func (h *Handler) get(w http.ResponseWriter, r *http.Request) {
	h.serveOp(w, r, http.StatusOK, func(id string) (*tandem.Op, bool) {
		noTouch := r.Method == http.MethodHead
		if v := r.URL.Query().Get("touch"); v != "" {
			touch, err := strconv.ParseBool(v)
			if err != nil {
				writeError(w, r, http.StatusBadRequest, "invalid", "touch must be true or false")
				return nil, false
			}
			noTouch = noTouch || !touch
		}
		return &tandem.Op{Kind: tandem.OpGet, ID: id, NoTouch: noTouch}, true
	})
}

// put handles PUT /v1/sessions/{id}: create or replace, conditional on
// If-Match and If-None-Match. It answers 201 with Location when it
// created the session (serveOp says how it knows), 200 when it replaced
// one. The read-only fields of a session answer (id, version, created_at,
// last_access_at, expires_at) are ignored, so that a GET's body can be
// PUT back; an id other than the path's is refused.
func (h *Handler) put(w http.ResponseWriter, r *http.Request) {
	h.serveOp(w, r, http.StatusOK, func(id string) (*tandem.Op, bool) {
		body, ok := h.readSessionBody(w, r)
		if !ok {
			return nil, false
		}
		if body.ID != "" && body.ID != id {
			writeError(w, r, http.StatusBadRequest, "invalid", fmt.Sprintf("the body's id %q is not the path's %q; a session's id cannot change", body.ID, id))
			return nil, false
		}
		op, err := body.op(id)
		if err != nil {
			writeError(w, r, http.StatusBadRequest, "invalid", err.Error())
			return nil, false
		}
		return op, true
	})
}

// patch handles PATCH /v1/sessions/{id}: a JSON merge patch (RFC 7396) of
// the attributes, or its msgpack equivalent; conditional on If-Match.
func (h *Handler) patch(w http.ResponseWriter, r *http.Request) {
	h.serveOp(w, r, http.StatusOK, func(id string) (*tandem.Op, bool) { return h.readPatch(w, r, id) })
}

// delete handles DELETE /v1/sessions/{id}, conditional on If-Match.
func (h *Handler) delete(w http.ResponseWriter, r *http.Request) {
	h.serveOp(w, r, http.StatusNoContent, func(id string) (*tandem.Op, bool) {
		return &tandem.Op{Kind: tandem.OpDelete, ID: id}, true
	})
}

// serveOp runs the op that build makes for the session in the path, made
// conditional by If-Match and If-None-Match (doConditional), and answers
// with the session (or nothing, for 204). build answers the request itself
// when it returns false.
//
// A PUT that creates answers 201 with Location. Whether it created is
// read from the engine's answer to the write itself, so no other write can
// get in between: a put of a session that does not exist for readers
// (never written, deleted or expired) gives it the write's time as both
// its creation and its last access, while a put that replaces keeps the
// creation time of the session it replaces, which is always earlier. The
// version cannot tell, since versions keep growing across deletes. (Under
// a clock that does not advance between two writes, as only a test's fake
// clock does, a replace would look like a create.) A retry that the
// engine recognises by its Idempotency-Key answers the session as it is.
func (h *Handler) serveOp(w http.ResponseWriter, r *http.Request, status int, build func(id string) (*tandem.Op, bool)) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	read := r.Method == http.MethodGet || r.Method == http.MethodHead
	var pre preconditions
	if !read { // preconditions on reads are not evaluated
		if pre, ok = parsePreconditions(w, r); !ok {
			return
		}
	}
	op, ok := build(id)
	if !ok {
		return
	}
	op.RequestID = r.Header.Get("Idempotency-Key")
	if !read && !parseIdempotencyAge(w, r, h.node.Now(), op) {
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	var s *tandem.Session
	var err error
	if read {
		s, err = h.node.Do(ctx, op)
	} else {
		s, err = h.doConditional(ctx, op, pre)
	}
	switch {
	case err != nil:
		h.fail(w, r, err)
	case status == http.StatusNoContent:
		w.WriteHeader(status)
	case op.Kind == tandem.OpPut && s.Created.Equal(s.LastAccess):
		w.Header().Set("Location", "/v1/sessions/"+s.ID)
		writeSession(w, r, http.StatusCreated, s)
	default:
		writeSession(w, r, status, s)
	}
}

// invalidatePrincipal handles DELETE /v1/principals/{name}/sessions: log
// a user out everywhere. It answers how many sessions it deleted.
func (h *Handler) invalidatePrincipal(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if name == "" || len(name) > 1024 {
		writeError(w, r, http.StatusBadRequest, "invalid_principal", "principal must be 1–1024 bytes")
		return
	}
	ctx, cancel := h.ctx(r)
	defer cancel()
	n, err := h.node.InvalidatePrincipal(ctx, name)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	writeValue(w, r, http.StatusOK, map[string]any{"principal": name, "deleted": n})
}

// memberView is an owner as balancers see it.
type memberView struct {
	Name string `json:"name" msgpack:"name"`
	HTTP string `json:"http" msgpack:"http"`
}

// ownersView answers GET /v1/sessions/{id}/owners.
type ownersView struct {
	Primary memberView  `json:"primary" msgpack:"primary"`
	Buddy   *memberView `json:"buddy" msgpack:"buddy"`
	Epoch   uint64      `json:"epoch" msgpack:"epoch"`
}

// owners handles GET /v1/sessions/{id}/owners.
func (h *Handler) owners(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(w, r)
	if !ok {
		return
	}
	primary, buddy, epoch, err := h.node.Owners(id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	v := ownersView{Primary: memberView{primary.Name, primary.HTTP}, Epoch: epoch}
	if buddy.Name != "" {
		v.Buddy = &memberView{buddy.Name, buddy.HTTP}
	}
	writeValue(w, r, http.StatusOK, v)
}

// cluster handles GET /v1/cluster.
func (h *Handler) cluster(w http.ResponseWriter, r *http.Request) {
	writeValue(w, r, http.StatusOK, h.node.Status())
}

// livez handles GET /livez: the process answers.
func (h *Handler) livez(w http.ResponseWriter, r *http.Request) {
	writeValue(w, r, http.StatusOK, map[string]any{"live": true})
}

// readyz handles GET /readyz: 200 once the node has joined and holds every
// partition it owns, 503 before that and while it leaves. The body is
// tandem.Readiness: {"ready": false, "reason": "joining" | "catching_up" |
// "draining" | "too_few_members", "detail": "...", ...}.
func (h *Handler) readyz(w http.ResponseWriter, r *http.Request) {
	rd := h.node.Readiness()
	status := http.StatusOK
	if !rd.Ready {
		status = http.StatusServiceUnavailable
	}
	writeValue(w, r, status, rd)
}

// pathID returns the session id in the path, or answers 400.
func pathID(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if err := tandem.ValidateID(id); err != nil {
		writeError(w, r, http.StatusBadRequest, "invalid_id", err.Error())
		return "", false
	}
	return id, true
}

// fail answers a failed session operation with the user-facing account
// of userError; the full error (which node forwarded what) goes to the
// log: at warn for 5xx, at debug otherwise.
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := userError(err, r)
	level := slog.LevelDebug
	if status >= 500 {
		level = slog.LevelWarn
	}
	h.log.Log(r.Context(), level, "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	writeError(w, r, status, code, msg)
}
