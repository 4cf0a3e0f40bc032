package tandem

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// MiddlewareConfig configures the session middleware; the zero value
// takes every default.
type MiddlewareConfig struct {
	// CookieName names the cookie that carries the session id (default
	// "tandem_session").
	CookieName string
	// RouteCookieName names the cookie that carries the name of the
	// session's primary node (default "tandem_route"). The middleware
	// re-sets it whenever the primary changes, after a failover and after
	// a failback alike, so a balancer can send the user to the node that
	// holds the session: HAProxy `use-server`, an nginx `map` on
	// $cookie_tandem_route.
	RouteCookieName string
	// Path and Domain scope both cookies (default path "/", no domain).
	Path, Domain string
	// Secure marks both cookies Secure, so browsers send them over HTTPS
	// only. Set it in production. Requests that arrive over TLS get Secure
	// cookies whatever it says; it is off by default so that plain
	// http://localhost works while developing.
	Secure bool
	// SameSite is the cookies' SameSite mode (default http.SameSiteLaxMode).
	// Both cookies are always HttpOnly.
	SameSite http.SameSite
	// Timeout bounds each session operation of a request, retries
	// included (default: the node's Config.RequestTimeout).
	Timeout time.Duration
	// Logger receives load and save failures (default: the node's logger).
	Logger *slog.Logger

	// IdleTimeout ends a session created by this middleware when it has
	// not been read or written for this long, like scs's IdleTimeout
	// (default: the node's Config.IdleTimeout, 30 minutes unless set).
	IdleTimeout time.Duration
	// Lifetime ends a session created by this middleware this long after
	// it was created, whatever its activity, like scs's Lifetime (default:
	// the node's Config.AbsoluteTimeout, 12 hours unless set). A session
	// keeps the timeouts it was created with, RenewID included.
	Lifetime time.Duration
	// SessionOnly makes both cookies session cookies, which the browser
	// drops when it closes (scs's Cookie.Persist = false). By default the
	// cookies persist, so restarting the browser keeps the user logged in:
	// as with scs, they carry Expires and Max-Age set to the session's
	// absolute deadline (its Lifetime), which no activity moves, so reads
	// set no cookie. The idle timeout still ends an unused session sooner;
	// its cookie then names an id the middleware never adopts. Where the
	// middleware does not know the deadline (a route cookie re-set for a
	// session the request did not read, or a session stored without one)
	// the cookies expire the Lifetime from now; with no Lifetime and no
	// Config.AbsoluteTimeout they are session cookies.
	SessionOnly bool
	// ErrorFunc answers a request whose session cannot be loaded or saved,
	// in place of the handler's response, which is discarded; err says
	// why. It must write a response. The default answers 503 Service
	// Unavailable with Retry-After: 1 and a plain-text body.
	ErrorFunc func(w http.ResponseWriter, r *http.Request, err error)
}

// defaultErrorFunc is the default MiddlewareConfig.ErrorFunc.
func defaultErrorFunc(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Retry-After", "1")
	http.Error(w, "session store unavailable, please retry", http.StatusServiceUnavailable)
}

// withDefaults fills zero fields of c from n.
func (c MiddlewareConfig) withDefaults(n *Node) MiddlewareConfig {
	if c.CookieName == "" {
		c.CookieName = "tandem_session"
	}
	if c.RouteCookieName == "" {
		c.RouteCookieName = "tandem_route"
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if c.SameSite == 0 {
		c.SameSite = http.SameSiteLaxMode
	}
	if c.Timeout == 0 {
		c.Timeout = n.cfg.RequestTimeout
	}
	if c.Logger == nil {
		c.Logger = n.log
	}
	if c.ErrorFunc == nil {
		c.ErrorFunc = defaultErrorFunc
	}
	return c
}

// Middleware gives every request a session, reached in handlers through
// FromContext, with the default cookie settings of MiddlewareConfig.
//
// The session is loaded lazily: a request whose handler never touches it
// costs no cluster call. What the handler changes is saved as a patch of
// the changed attributes only, so concurrent requests of one user do not
// overwrite each other, and it is saved before the response's headers
// are written, so a new session gets its cookie. A session is created only
// when something is written to it; an unknown or expired id in the cookie
// is never adopted: the user gets a fresh session under a fresh id. If the
// session cannot be loaded or saved because its owners are unavailable,
// the middleware answers 503 (or what MiddlewareConfig.ErrorFunc writes)
// instead of the handler's response. A response that sets a cookie also
// gets Vary: Cookie and Cache-Control: no-store, so no shared cache keeps
// one user's session cookie for another.
//
// Handlers must change the session before they write the response: a
// change made later is still saved to an existing session when the handler
// returns, but a new session made then cannot set its cookie, so it is
// dropped and logged.
func (n *Node) Middleware(next http.Handler) http.Handler {
	return n.MiddlewareWith(MiddlewareConfig{})(next)
}

// MiddlewareWith returns session middleware configured by cfg; see
// Middleware. Its shape fits routers' middleware chains.
func (n *Node) MiddlewareWith(cfg MiddlewareConfig) func(http.Handler) http.Handler {
	m := &middleware{node: n, cfg: cfg.withDefaults(n), lifetime: cfg.Lifetime}
	if m.lifetime == 0 {
		m.lifetime = n.cfg.AbsoluteTimeout
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { m.serve(w, r, next) })
	}
}

// middleware is one configured instance of the session middleware.
type middleware struct {
	node     *Node
	cfg      MiddlewareConfig
	lifetime time.Duration // the absolute timeout of the sessions it creates
}

// handleKey is the context key of a request's SessionHandle.
type handleKey struct{}

// errNoMiddleware is FromContext's panic outside the middleware.
const errNoMiddleware = "tandem: FromContext called outside Node.Middleware: the request did not pass through node.Middleware or node.MiddlewareWith; wrap the handler (or the router) with it"

// FromContext returns the session of the request whose context ctx is. It
// panics, naming the mistake, when ctx is not a request's context inside
// Node.Middleware or Node.MiddlewareWith: a handler mounted outside the
// middleware is a wiring bug, not a request to handle.
func FromContext(ctx context.Context) *SessionHandle {
	h, _ := ctx.Value(handleKey{}).(*SessionHandle)
	if h == nil {
		panic(errNoMiddleware)
	}
	return h
}

// serve runs next with a session handle and saves the handle's changes.
func (m *middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	h := &SessionHandle{m: m, ctx: r.Context()}
	if c, err := r.Cookie(m.cfg.CookieName); err == nil && ValidateID(c.Value) == nil {
		h.cookieID, h.id = c.Value, c.Value
	}
	if c, err := r.Cookie(m.cfg.RouteCookieName); err == nil {
		h.routeCookie = c.Value
	}
	sw := &saveWriter{ResponseWriter: w, h: h, r: r}
	next.ServeHTTP(sw, r.WithContext(context.WithValue(r.Context(), handleKey{}, h)))
	if !sw.committed {
		sw.commit()
		return
	}
	if !sw.failed {
		h.saveLate()
	}
}

// SessionHandle is one request's view of its session: reads load the
// session from the cluster on first use, writes are kept and saved when
// the response begins. Its methods are safe for concurrent use by the
// request's goroutines. Attribute values are msgpack-encoded.
type SessionHandle struct {
	m   *middleware
	ctx context.Context // the request's, for loading

	mu          sync.Mutex
	cookieID    string // the well-formed id the request's cookie named, if any
	routeCookie string // the route cookie the request carried
	id          string // the session's id: the cookie's, a fresh one, or "" for none yet
	loaded      bool   // the session under id was read (or is known not to exist)
	exists      bool   // loaded and found; or written by this request
	loadErr     error  // why loading failed; the request then answers 503
	principal   string
	deadline    time.Time                     // the session's absolute deadline, if loaded or saved; zero if unknown or none
	version     uint64                        // the session's version as last loaded or saved; 0 for none
	attrs       map[string]msgpack.RawMessage // as loaded
	set         map[string]msgpack.RawMessage // changed since the last save
	del         map[string]bool               // deleted since the last save
	setPrinc    bool                          // principal changed since the last save
	destroyed   bool                          // Destroy ran: expire the cookies unless a new session follows
}

// opCtx bounds one session operation.
func (h *SessionHandle) opCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, h.m.cfg.Timeout)
}

// Load reads the session from the cluster if it has not been read yet in
// this request, and reports why it could not be; the handle's readers call
// it themselves. A session that does not exist (no cookie, an unknown,
// deleted or expired id) is not an error: the handle is then empty and a
// write starts a new session under a fresh id.
func (h *SessionHandle) Load() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.load()
}

// load is Load with h.mu held.
func (h *SessionHandle) load() error {
	if h.loaded || h.loadErr != nil {
		return h.loadErr
	}
	if h.id == "" {
		h.loaded = true
		return nil
	}
	ctx, cancel := h.opCtx(h.ctx)
	defer cancel()
	s, err := h.m.node.Get(ctx, h.id)
	switch {
	case err == nil:
		h.loaded, h.exists, h.attrs = true, true, s.Attributes
		h.deadline, h.version = s.Deadline, s.Version
		if !h.setPrinc { // a principal set before the load wins
			h.principal = s.Principal
		}
	case errors.Is(err, ErrNotFound):
		// Never adopt an id the cluster does not know: writes go to a
		// fresh one.
		h.loaded, h.id = true, ""
	default:
		h.loadErr = fmt.Errorf("tandem: load session: %w", err)
		h.m.cfg.Logger.Warn("cannot load session", "err", err)
	}
	return h.loadErr
}

// value returns the current value of attribute name, with this request's
// changes applied, loading the session first.
func (h *SessionHandle) value(name string) (msgpack.RawMessage, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.load(); err != nil {
		return nil, false, err
	}
	if h.del[name] {
		return nil, false, nil
	}
	if v, ok := h.set[name]; ok {
		return v, true, nil
	}
	v, ok := h.attrs[name]
	return v, ok, nil
}

// Get returns attribute name's msgpack-encoded value, or nil when the
// session has no such attribute or cannot be loaded.
func (h *SessionHandle) Get(name string) []byte {
	v, _, _ := h.value(name)
	return v
}

// Has reports whether the session has attribute name.
func (h *SessionHandle) Has(name string) bool {
	_, ok, _ := h.value(name)
	return ok
}

// GetString returns attribute name as a string, or "" when it is absent
// or not a string.
func (h *SessionHandle) GetString(name string) string {
	var s string
	if err := h.Unmarshal(name, &s); err != nil {
		return ""
	}
	return s
}

// GetInt returns attribute name as an int, or 0 when it is absent or not
// an integer. Any integer that fits decodes, whatever width it was set as.
func (h *SessionHandle) GetInt(name string) int { return getAs[int](h, name) }

// GetInt64 returns attribute name as an int64, or 0 when it is absent or
// not an integer.
func (h *SessionHandle) GetInt64(name string) int64 { return getAs[int64](h, name) }

// GetBool returns attribute name as a bool, or false when it is absent or
// not a bool.
func (h *SessionHandle) GetBool(name string) bool { return getAs[bool](h, name) }

// GetFloat returns attribute name as a float64, or 0 when it is absent or
// not a number.
func (h *SessionHandle) GetFloat(name string) float64 { return getAs[float64](h, name) }

// GetTime returns attribute name as a time.Time, or the zero time when it
// is absent or not a time.
func (h *SessionHandle) GetTime(name string) time.Time { return getAs[time.Time](h, name) }

// GetBytes returns attribute name as a byte slice, or nil when it is
// absent or not bytes (or a string).
func (h *SessionHandle) GetBytes(name string) []byte { return getAs[[]byte](h, name) }

// Pop decodes attribute name into v, as Unmarshal does, and deletes the
// attribute, as for a flash message shown once. When the session has no
// such attribute, v is left as it is and nothing changes. The attribute is
// deleted even when it does not decode into v.
func (h *SessionHandle) Pop(name string, v any) error {
	b, ok, err := h.pop(name)
	if err != nil || !ok {
		return err
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("tandem: decode session attribute %q: %w", name, err)
	}
	return nil
}

// PopString returns attribute name as GetString does and deletes it.
func (h *SessionHandle) PopString(name string) string { return popAs[string](h, name) }

// PopInt returns attribute name as GetInt does and deletes it.
func (h *SessionHandle) PopInt(name string) int { return popAs[int](h, name) }

// PopInt64 returns attribute name as GetInt64 does and deletes it.
func (h *SessionHandle) PopInt64(name string) int64 { return popAs[int64](h, name) }

// PopBool returns attribute name as GetBool does and deletes it.
func (h *SessionHandle) PopBool(name string) bool { return popAs[bool](h, name) }

// PopFloat returns attribute name as GetFloat does and deletes it.
func (h *SessionHandle) PopFloat(name string) float64 { return popAs[float64](h, name) }

// PopTime returns attribute name as GetTime does and deletes it.
func (h *SessionHandle) PopTime(name string) time.Time { return popAs[time.Time](h, name) }

// PopBytes returns attribute name as GetBytes does and deletes it.
func (h *SessionHandle) PopBytes(name string) []byte { return popAs[[]byte](h, name) }

// getAs decodes attribute name as a T, or returns T's zero value.
func getAs[T any](h *SessionHandle, name string) T {
	var v T
	if err := h.Unmarshal(name, &v); err != nil {
		var zero T
		return zero
	}
	return v
}

// popAs is getAs that also deletes the attribute.
func popAs[T any](h *SessionHandle, name string) T {
	var v T
	if err := h.Pop(name, &v); err != nil {
		var zero T
		return zero
	}
	return v
}

// pop returns attribute name's current value, as value does, and deletes
// the attribute in the same step if it is there.
func (h *SessionHandle) pop(name string) (msgpack.RawMessage, bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.load(); err != nil {
		return nil, false, err
	}
	v, ok := h.set[name]
	if !ok && !h.del[name] {
		v, ok = h.attrs[name]
	}
	if !ok {
		return nil, false, nil
	}
	if h.del == nil {
		h.del = map[string]bool{}
	}
	h.del[name] = true
	delete(h.set, name)
	return v, true, nil
}

// Unmarshal decodes attribute name into v, which must be a pointer. When
// the session has no such attribute, v is left as it is and the result is
// nil, as encoding/json does for a missing field; use Has to tell.
func (h *SessionHandle) Unmarshal(name string, v any) error {
	b, ok, err := h.value(name)
	if err != nil || !ok {
		return err
	}
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("tandem: decode session attribute %q: %w", name, err)
	}
	return nil
}

// Set sets attribute name to v, encoded with msgpack. It needs no load:
// a handler that only writes costs one cluster call, the save.
func (h *SessionHandle) Set(name string, v any) error {
	if name == "" {
		return fmt.Errorf("tandem: set session attribute: %w: empty name", ErrInvalid)
	}
	b, err := msgpack.Marshal(v)
	if err != nil {
		return fmt.Errorf("tandem: encode session attribute %q: %w", name, err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.set == nil {
		h.set = map[string]msgpack.RawMessage{}
	}
	h.set[name] = b
	delete(h.del, name)
	return nil
}

// Delete removes attribute name.
func (h *SessionHandle) Delete(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.del == nil {
		h.del = map[string]bool{}
	}
	h.del[name] = true
	delete(h.set, name)
}

// Principal returns the user the session belongs to, or "" for none.
func (h *SessionHandle) Principal() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.setPrinc {
		return h.principal
	}
	if h.load() != nil {
		return ""
	}
	return h.principal
}

// SetPrincipal names the user the session belongs to, so that
// Node.InvalidatePrincipal can log them out everywhere. Call RenewID
// first when a user logs in.
func (h *SessionHandle) SetPrincipal(name string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.principal, h.setPrinc = name, true
}

// ID returns the session's id, or "" while there is no session: nothing
// was written to a new one yet, or the cookie's id is unknown. Before the
// session is loaded it returns the cookie's id.
func (h *SessionHandle) ID() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.id
}

// Version returns the session's version as this request last loaded or
// saved it, loading it if it was not yet, or 0 while there is no session.
// It is the version the session had when the handler's reads saw it;
// once the response began (the save), the version the save made. Apps
// can use it as an ETag.
func (h *SessionHandle) Version() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.load() != nil {
		return 0
	}
	return h.version
}

// RenewID moves the session to a fresh id, against session fixation: call
// it when a user logs in. The session's principal and attributes, with
// this request's changes, are written under a new id, the old id is
// deleted, and the response carries the new cookie. A request without a
// stored session needs nothing renewed: its first write gets a fresh id.
func (h *SessionHandle) RenewID(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.load(); err != nil {
		return err
	}
	if !h.exists {
		return nil
	}
	attrs := h.current()
	old := h.id
	s, err := h.create(ctx, h.principal, attrs)
	if err != nil {
		return fmt.Errorf("tandem: renew session id: %w", err)
	}
	h.adopt(s)
	ctx, cancel := h.opCtx(ctx)
	defer cancel()
	if err := h.m.node.Delete(ctx, old); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("tandem: renew session id: delete the old id: %w", err)
	}
	return nil
}

// current returns the loaded attributes with this request's changes.
func (h *SessionHandle) current() map[string]msgpack.RawMessage {
	out := maps.Clone(h.attrs)
	if out == nil {
		out = map[string]msgpack.RawMessage{}
	}
	maps.Copy(out, h.set)
	for name := range h.del {
		delete(out, name)
	}
	return out
}

// create stores a new session with the given content under a fresh id,
// never replacing an existing one.
func (h *SessionHandle) create(ctx context.Context, principal string, attrs map[string]msgpack.RawMessage) (*Session, error) {
	ctx, cancel := h.opCtx(ctx)
	defer cancel()
	for {
		op := &Op{
			Kind: OpPut, ID: NewID(), IfAbsent: true, Principal: principal, Attributes: attrs,
			IdleTimeout: h.m.cfg.IdleTimeout, AbsoluteTimeout: h.m.cfg.Lifetime,
		}
		s, err := h.m.node.Do(ctx, op)
		if !errors.Is(err, ErrConflict) { // a conflict is an id collision: draw again
			return s, err
		}
	}
}

// adopt makes s, just written, the handle's session, with nothing left to
// save.
func (h *SessionHandle) adopt(s *Session) {
	h.id, h.loaded, h.exists = s.ID, true, true
	h.principal, h.attrs = s.Principal, s.Attributes
	h.deadline, h.version = s.Deadline, s.Version
	h.set, h.del, h.setPrinc = nil, nil, false
}

// Destroy deletes the session and expires its cookies: call it when a
// user logs out. Writes after it start a new session under a fresh id.
func (h *SessionHandle) Destroy(ctx context.Context) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.id != "" {
		ctx, cancel := h.opCtx(ctx)
		defer cancel()
		if err := h.m.node.Delete(ctx, h.id); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("tandem: destroy session: %w", err)
		}
	}
	h.id, h.loaded, h.exists, h.loadErr = "", true, false, nil
	h.principal, h.attrs, h.version = "", nil, 0
	h.set, h.del, h.setPrinc = nil, nil, false
	h.destroyed = true
	return nil
}

// dirty reports whether the handle holds unsaved changes.
func (h *SessionHandle) dirty() bool {
	return len(h.set) > 0 || len(h.del) > 0 || h.setPrinc
}

// save writes the handle's changes: a patch of the changed attributes to
// an existing session, or a new session under a fresh id when there is
// none (or it vanished since it was read, as when its user was logged out
// everywhere meanwhile). Called with h.mu held.
func (h *SessionHandle) save(ctx context.Context) error {
	if h.loadErr != nil {
		return h.loadErr
	}
	if !h.dirty() {
		return nil
	}
	if h.id != "" {
		del := make([]string, 0, len(h.del))
		for name := range h.del {
			del = append(del, name)
		}
		op := &Op{Kind: OpPatch, ID: h.id, Set: h.set, Delete: del, SetPrincipal: h.setPrinc, Principal: h.principal}
		pctx, cancel := h.opCtx(ctx)
		s, err := h.m.node.Do(pctx, op)
		cancel()
		if err == nil {
			h.adopt(s)
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("tandem: save session: %w", err)
		}
	}
	if len(h.set) == 0 && !h.setPrinc {
		h.set, h.del = nil, nil // only deletions, and nothing to delete them from
		return nil
	}
	principal := ""
	if h.setPrinc {
		principal = h.principal
	}
	s, err := h.create(ctx, principal, h.set)
	if err != nil {
		return fmt.Errorf("tandem: save new session: %w", err)
	}
	h.adopt(s)
	return nil
}

// saveLate saves changes made after the response began, when the handler
// returns; only an existing session can take them, since the cookie of a
// new one can no longer be sent.
func (h *SessionHandle) saveLate() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.dirty() {
		return
	}
	log := h.m.cfg.Logger
	if h.id == "" {
		log.Error("session changed after the response began; a new session cannot set its cookie then, changes dropped")
		return
	}
	prev := h.id
	if err := h.save(context.WithoutCancel(h.ctx)); err != nil {
		log.Error("cannot save session changes made after the response began", "err", err)
	} else if h.id != prev {
		log.Error("session changed after the response began had vanished; its new id cannot reach the client", "id", prev)
	}
}

// cookies sets the response's cookies for the handle's session: the
// session cookie when the id changed, the route cookie when the primary
// changed, or expired ones after Destroy. A response that sets any gets Vary:
// Cookie and Cache-Control: no-store. Called with h.mu held.
func (h *SessionHandle) cookies(w http.ResponseWriter, r *http.Request) {
	cfg := h.m.cfg
	set := false
	expires := h.deadline
	if expires.IsZero() && h.m.lifetime > 0 {
		expires = time.Now().Add(h.m.lifetime)
	}
	cookie := func(name, value string, expire bool) {
		c := &http.Cookie{
			Name: name, Value: value,
			Path: cfg.Path, Domain: cfg.Domain, Secure: cfg.Secure || r.TLS != nil,
			HttpOnly: true, SameSite: cfg.SameSite,
		}
		switch {
		case expire:
			c.MaxAge = -1
		case !cfg.SessionOnly && !expires.IsZero():
			c.Expires = expires.UTC()
			c.MaxAge = max(1, int((time.Until(expires)+time.Second-1)/time.Second))
		}
		http.SetCookie(w, c)
		set = true
	}
	defer func() {
		if set {
			noStore(w.Header())
		}
	}()
	if h.id == "" {
		if h.destroyed {
			cookie(cfg.CookieName, "", true)
			cookie(cfg.RouteCookieName, "", true)
		}
		return
	}
	if h.id != h.cookieID {
		cookie(cfg.CookieName, h.id, false)
	}
	primary, _, _, err := h.m.node.Owners(h.id)
	if err == nil && primary.Name != "" && primary.Name != h.routeCookie {
		cookie(cfg.RouteCookieName, primary.Name, false)
	}
}

// noStore marks a response that sets a session cookie as private to its
// request: Vary: Cookie (once) and Cache-Control: no-store.
func noStore(hdr http.Header) {
	hdr.Set("Cache-Control", "no-store")
	for _, v := range hdr.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f == "*" || strings.EqualFold(f, "Cookie") {
				return
			}
		}
	}
	hdr.Add("Vary", "Cookie")
}

// saveWriter saves the session when the response begins: on the first
// WriteHeader, Write or Flush, or when the handler returns without
// writing.
type saveWriter struct {
	http.ResponseWriter
	h         *SessionHandle
	r         *http.Request
	committed bool  // the session was saved (or failed to) and headers may go
	failed    bool  // saving failed: a 503 went out instead of the handler's answer
	err       error // why saving failed
}

// commit saves the session and sets its cookies; if that fails it answers
// 503 in place of the handler.
func (w *saveWriter) commit() bool {
	if w.committed {
		return !w.failed
	}
	w.committed = true
	h := w.h
	h.mu.Lock()
	err := h.save(context.WithoutCancel(h.ctx))
	if err == nil {
		h.cookies(w.ResponseWriter, w.r)
	}
	h.mu.Unlock()
	if err == nil {
		return true
	}
	w.failed, w.err = true, err
	h.m.cfg.Logger.Warn("session unavailable; answering with the error handler", "method", w.r.Method, "path", w.r.URL.Path, "err", err)
	h.m.cfg.ErrorFunc(w.ResponseWriter, w.r, err)
	return false
}

// WriteHeader saves the session, then writes the header; informational
// (1xx) headers pass through without saving.
func (w *saveWriter) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		w.ResponseWriter.WriteHeader(code)
		return
	}
	if w.commit() {
		w.ResponseWriter.WriteHeader(code)
	}
}

// Write saves the session before the first byte of the body. After a
// failed save it discards b and reports why.
func (w *saveWriter) Write(b []byte) (int, error) {
	if !w.commit() {
		return 0, fmt.Errorf("tandem: response replaced by 503: %w", w.err)
	}
	return w.ResponseWriter.Write(b)
}

// Flush saves the session, then flushes the response if the underlying
// writer can.
func (w *saveWriter) Flush() {
	if w.commit() {
		_ = http.NewResponseController(w.ResponseWriter).Flush()
	}
}

// Hijack saves the session, then hands the connection over, as WebSocket
// upgrades need; cookies set by the save reach the client only if the
// hijacker writes the header it was given.
func (w *saveWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if !w.commit() {
		return nil, nil, fmt.Errorf("tandem: response replaced by 503: %w", w.err)
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap returns the underlying ResponseWriter, for http.ResponseController.
func (w *saveWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// NewID returns a fresh session id: 128 bits from crypto/rand, base64url
// without padding (22 characters).
func NewID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return base64.RawURLEncoding.EncodeToString(b[:])
}
