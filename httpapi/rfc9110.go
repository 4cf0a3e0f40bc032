package httpapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/tandem-io/tandem"
)

// HTTP semantics (RFC 9110) the session endpoints follow: content
// negotiation (Accept with q-values, 406), request content types (415),
// preconditions (If-Match, If-None-Match, 412) and the user-facing
// message of every engine error.

// negotiate picks the answer's content type from Accept (RFC 9110
// 12.5.1): each of JSON and msgpack takes the q-value of the most specific
// media range that matches it (application/json, then application/*, then
// */*); q=0 excludes it; the higher q wins, a tie going to the type named
// more specifically, and between two named exactly to msgpack (a client
// that names msgpack reads it, as before q-values were honoured), between
// two wildcards to JSON. No Accept, or an empty one, means JSON. ok is
// false when neither is acceptable (406).
func negotiate(accept string) (asMsgpack, ok bool) {
	if strings.TrimSpace(accept) == "" {
		return false, true
	}
	// q and specificity (3 exact, 2 type/*, 1 */*, 0 unmatched) of each.
	var jq, mq float64
	var js, ms int
	for _, part := range strings.Split(accept, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		mt, params, err := mime.ParseMediaType(part)
		if err != nil {
			continue
		}
		q := 1.0
		if v, has := params["q"]; has {
			if q, err = strconv.ParseFloat(v, 64); err != nil || q < 0 || q > 1 {
				continue
			}
		}
		spec := 0
		switch mt {
		case "*/*":
			spec = 1
		case "application/*":
			spec = 2
		}
		if s := max(spec, exact(mt == contentJSON)); s > js {
			jq, js = q, s
		}
		if s := max(spec, exact(mt == contentMsgpack || mt == "application/x-msgpack")); s > ms {
			mq, ms = q, s
		}
	}
	switch {
	case jq == 0 && mq == 0:
		return false, false
	case mq != jq:
		return mq > jq, true
	default:
		return ms > js || ms == 3 && js == 3, true
	}
}

// exact is the specificity of a media range naming the type itself.
func exact(names bool) int {
	if names {
		return 3
	}
	return 0
}

// wantsMsgpack reports whether the answer is msgpack (negotiate); a
// request nothing suits was refused before it got here (acceptable).
func wantsMsgpack(r *http.Request) bool {
	m, _ := negotiate(strings.Join(r.Header.Values("Accept"), ","))
	return m
}

// acceptable answers 406 when the client accepts neither JSON nor msgpack,
// before anything is done.
func acceptable(w http.ResponseWriter, r *http.Request) bool {
	if _, ok := negotiate(strings.Join(r.Header.Values("Accept"), ",")); !ok {
		writeError(w, r, http.StatusNotAcceptable, "not_acceptable", "answers are application/json or application/msgpack; Accept excludes both")
		return false
	}
	return true
}

// bodyType reads a request body's Content-Type: msgpack
// (application/msgpack or application/x-msgpack) or JSON
// (application/json, and for PATCH also application/merge-patch+json). A
// body without a Content-Type is taken as JSON. Anything else, or a
// Content-Encoding other than identity, answers 415 naming what is
// accepted (Accept-Patch too, for PATCH: RFC 5789).
func bodyType(w http.ResponseWriter, r *http.Request, patch bool) (asMsgpack, ok bool) {
	accepted := "application/json or application/msgpack"
	if patch {
		accepted = "application/merge-patch+json, application/json or application/msgpack"
	}
	refuse := func(msg string) (bool, bool) {
		if patch {
			w.Header().Set("Accept-Patch", contentMergePatch+", "+contentJSON+", "+contentMsgpack)
		}
		writeError(w, r, http.StatusUnsupportedMediaType, "unsupported_media_type", msg)
		return false, false
	}
	if ce := strings.TrimSpace(r.Header.Get("Content-Encoding")); ce != "" && !strings.EqualFold(ce, "identity") {
		w.Header().Set("Accept-Encoding", "identity")
		return refuse(fmt.Sprintf("Content-Encoding %q is not supported; send the body unencoded", ce))
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" {
		return false, true
	}
	mt, _, err := mime.ParseMediaType(ct)
	switch {
	case err != nil:
		return refuse(fmt.Sprintf("Content-Type %q does not parse; send %s", ct, accepted))
	case mt == contentMsgpack || mt == "application/x-msgpack":
		return true, true
	case mt == contentJSON || patch && mt == contentMergePatch:
		return false, true
	}
	return refuse(fmt.Sprintf("Content-Type %s is not supported; send %s", mt, accepted))
}

// preconditions are a write's If-Match and If-None-Match (RFC 9110 13.1).
// Session ETags are strong ("3", the version); a weak one (W/"3") never
// matches If-Match, which compares strongly, and matches If-None-Match,
// which compares weakly, as its strong twin would.
type preconditions struct {
	ifMatch     bool     // If-Match is present
	matchAny    bool     // If-Match: *
	match       []uint64 // If-Match's strong versions (weak and foreign tags dropped: they never match)
	ifNoneMatch bool     // If-None-Match is present
	noneAny     bool     // If-None-Match: *
	none        []uint64 // If-None-Match's versions, weak or strong
}

// parsePreconditions reads If-Match and If-None-Match, answering 400 for
// one that is not "*" or a list of entity tags.
func parsePreconditions(w http.ResponseWriter, r *http.Request) (preconditions, bool) {
	var p preconditions
	var err error
	if vs := r.Header.Values("If-Match"); len(vs) > 0 {
		p.ifMatch = true
		if p.matchAny, p.match, err = parseETags(strings.Join(vs, ","), false); err != nil {
			writeError(w, r, http.StatusBadRequest, "invalid_if_match", fmt.Sprintf(`If-Match must be * or a list of session ETags such as "3", "4": %v`, err))
			return p, false
		}
	}
	if vs := r.Header.Values("If-None-Match"); len(vs) > 0 {
		p.ifNoneMatch = true
		if p.noneAny, p.none, err = parseETags(strings.Join(vs, ","), true); err != nil {
			writeError(w, r, http.StatusBadRequest, "invalid_if_none_match", fmt.Sprintf(`If-None-Match must be * or a list of session ETags such as "3", "4": %v`, err))
			return p, false
		}
	}
	return p, true
}

// parseETags parses "*" or a comma-separated list of entity tags
// (RFC 9110 8.8.3). A tag that is not a version ("abc") is valid but names
// no version of a session, so it is dropped; a weak tag is dropped unless
// weakOK.
func parseETags(v string, weakOK bool) (any bool, versions []uint64, err error) {
	if strings.TrimSpace(v) == "*" {
		return true, nil, nil
	}
	n := 0
	for _, tag := range strings.Split(v, ",") {
		tag = strings.TrimSpace(tag)
		if tag == "" {
			continue
		}
		n++
		weak := strings.HasPrefix(tag, "W/")
		tag = strings.TrimPrefix(tag, "W/")
		if len(tag) < 2 || tag[0] != '"' || tag[len(tag)-1] != '"' || strings.Contains(tag[1:len(tag)-1], `"`) {
			return false, nil, fmt.Errorf("%q is not an entity tag", tag)
		}
		version, perr := strconv.ParseUint(tag[1:len(tag)-1], 10, 64)
		if perr != nil || version == 0 || weak && !weakOK {
			continue
		}
		versions = append(versions, version)
	}
	if n == 0 {
		return false, nil, errors.New("no entity tag")
	}
	return false, versions, nil
}

// holds reports whether the preconditions hold for a session that exists
// at version (exists false: absent).
func (p preconditions) holds(exists bool, version uint64) bool {
	if p.ifMatch && !(exists && (p.matchAny || contains(p.match, version))) {
		return false
	}
	if p.ifNoneMatch && exists && (p.noneAny || contains(p.none, version)) {
		return false
	}
	return true
}

// contains reports whether vs holds v.
func contains(vs []uint64, v uint64) bool {
	for _, x := range vs {
		if x == v {
			return true
		}
	}
	return false
}

// errPrecondition is a precondition found false before the write: 412.
var errPrecondition = errors.New("precondition failed")

// conditionalRounds bounds how often a write conditional on a version just
// read is retried when another write got in between.
const conditionalRounds = 5

// doConditional runs op under the preconditions, atomically: where the
// engine can check them itself it does (a single strong If-Match is
// Op.IfVersion; If-None-Match: * on PUT is Op.IfAbsent; If-Match: * on
// PATCH or DELETE is the engine's own "must exist"). Otherwise the current
// version is read (without touching the session), the preconditions are
// evaluated on it, and the write is made conditional on that version (or,
// for an absent session, on its absence), so nothing that happens in
// between can make a false precondition pass: a write that got in between
// makes the conditional write fail, and the evaluation starts again.
func (h *Handler) doConditional(ctx context.Context, op *tandem.Op, p preconditions) (*tandem.Session, error) {
	put := op.Kind == tandem.OpPut
	switch {
	case !p.ifMatch && !p.ifNoneMatch:
		return h.node.Do(ctx, op)
	case p.ifMatch && !p.ifNoneMatch && !p.matchAny && len(p.match) == 1:
		op.IfVersion = p.match[0]
		return h.node.Do(ctx, op)
	case p.ifMatch && !p.ifNoneMatch && len(p.match) == 0 && !p.matchAny:
		return nil, errPrecondition // only weak or foreign tags: nothing matches
	case put && !p.ifMatch && p.noneAny:
		op.IfAbsent = true
		return h.node.Do(ctx, op)
	case !put && p.ifMatch && p.matchAny && !p.ifNoneMatch:
		s, err := h.node.Do(ctx, op)
		if errors.Is(err, tandem.ErrNotFound) {
			return nil, errPrecondition
		}
		return s, err
	}
	for range conditionalRounds {
		cur, err := h.node.Do(ctx, &tandem.Op{Kind: tandem.OpGet, ID: op.ID, NoTouch: true})
		exists := err == nil
		if err != nil && !errors.Is(err, tandem.ErrNotFound) {
			return nil, err
		}
		var version uint64
		if exists {
			version = cur.Version
		}
		if !p.holds(exists, version) {
			return nil, errPrecondition
		}
		try := *op
		switch {
		case exists:
			try.IfVersion = version
		case put:
			try.IfAbsent = true
		default:
			return nil, fmt.Errorf("%w: %s", tandem.ErrNotFound, op.ID) // nothing to patch or delete
		}
		s, err := h.node.Do(ctx, &try)
		if !errors.Is(err, tandem.ErrConflict) {
			return s, err
		}
	}
	return nil, errPrecondition
}

// userError maps a failed session operation to its status, code and a
// message that says what the request ran into, in the user's terms: never
// which node forwarded what to which (the full error goes to the log).
// Size and validity errors keep the engine's own account of the request
// (say, "... would be 5000 bytes, limit 4096"), which is about the
// request, with the forwarding around it cut off.
func userError(err error, r *http.Request) (status int, code, msg string) {
	id := r.PathValue("id")
	what := "the session"
	if id != "" {
		what = "session " + id
	}
	switch {
	case errors.Is(err, errPrecondition), errors.Is(err, tandem.ErrConflict):
		msg = fmt.Sprintf("%s does not match the request's preconditions", what)
		switch {
		case r.Header.Get("If-None-Match") != "" && r.Header.Get("If-Match") == "":
			msg = fmt.Sprintf("%s exists, and If-None-Match allows the write only if it does not", what)
		case r.Header.Get("If-Match") != "" && r.Header.Get("If-None-Match") == "":
			msg = fmt.Sprintf("%s does not exist at a version If-Match names (%s); read it again for its current ETag", what, r.Header.Get("If-Match"))
		}
		return http.StatusPreconditionFailed, "version_mismatch", msg
	case errors.Is(err, tandem.ErrNotFound):
		return http.StatusNotFound, "not_found", fmt.Sprintf("%s does not exist: it was never created, was deleted or has expired", what)
	case errors.Is(err, tandem.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, "too_large", engineDetail(err, tandem.ErrTooLarge, "the session would exceed the node's size limits")
	case errors.Is(err, tandem.ErrInvalid):
		return http.StatusBadRequest, "invalid", engineDetail(err, tandem.ErrInvalid, "the request is not valid")
	case errors.Is(err, tandem.ErrRequestReused):
		return http.StatusUnprocessableEntity, "request_reused", "this Idempotency-Key was already used for a request with other content; use a new key"
	case errors.Is(err, tandem.ErrIndeterminate):
		return http.StatusServiceUnavailable, "indeterminate", "a request with this Idempotency-Key was applied and has since been superseded, or may have been applied before the session forgot it; read the session to see its state"
	case errors.Is(err, tandem.ErrUnavailable), errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return http.StatusServiceUnavailable, "unavailable", "the cluster cannot serve this session right now; retry shortly"
	}
	return http.StatusInternalServerError, "internal", "internal error; the server log has the details"
}

// engineDetail returns what the engine said after sentinel (its text
// followed by ": "), without the "(remote: ...)" wrappers of forwarding,
// or def when it said nothing more.
func engineDetail(err, sentinel error, def string) string {
	s := err.Error()
	prefix := sentinel.Error() + ": "
	i := strings.LastIndex(s, prefix)
	if i < 0 {
		return def
	}
	d := s[i+len(prefix):]
	for range strings.Count(s[:i], "(remote: ") {
		d = strings.TrimSuffix(d, ")")
	}
	if d = strings.TrimSpace(d); d == "" {
		return def
	}
	return d
}

// maxIdempotencyAge bounds Idempotency-Age: a retry older than a day is a
// client's mistake, not a retry.
const maxIdempotencyAge = 24 * time.Hour

// parseIdempotencyAge reads Idempotency-Age, the seconds (a decimal, as
// "2.5") since the first attempt of a request retried with its
// Idempotency-Key was sent, into op.FirstSent on the node's clock,
// answering 400 for a value that is not one or comes without a key. A session remembers only the
// requests of its last few writes: a retry it does not remember, first
// sent before it forgot one, is refused as indeterminate rather than
// perhaps applied twice. Without the header a retry is taken for a new
// request when the session no longer remembers it.
func parseIdempotencyAge(w http.ResponseWriter, r *http.Request, now time.Time, op *tandem.Op) bool {
	v := r.Header.Get("Idempotency-Age")
	if v == "" {
		return true
	}
	if op.RequestID == "" {
		writeError(w, r, http.StatusBadRequest, "invalid", "Idempotency-Age says how long ago a retried request was first sent: it needs the request's Idempotency-Key")
		return false
	}
	secs, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(secs) || secs < 0 || secs > maxIdempotencyAge.Seconds() {
		writeError(w, r, http.StatusBadRequest, "invalid", fmt.Sprintf("Idempotency-Age must be the seconds since the request was first sent, 0 to %d", int(maxIdempotencyAge.Seconds())))
		return false
	}
	op.FirstSent = now.Add(-time.Duration(secs * float64(time.Second)))
	return true
}
