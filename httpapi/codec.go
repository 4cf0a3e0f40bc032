package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/tandem-io/tandem"
)

// sessionBody is the body of PUT and POST. It may carry the read-only
// fields of a session answer (sessionView), so that what a GET answers can
// be PUT back: id must then be the path's, and the others are ignored
// whatever they hold (the server keeps the version, times and deadline).
type sessionBody struct {
	Principal       string                        `json:"principal" msgpack:"principal"`
	Attributes      map[string]msgpack.RawMessage `json:"-" msgpack:"attributes"`
	IdleTimeout     string                        `json:"idle_timeout" msgpack:"idle_timeout"`
	AbsoluteTimeout string                        `json:"absolute_timeout" msgpack:"absolute_timeout"`

	ID           string             `json:"id" msgpack:"id"`
	Version      msgpack.RawMessage `json:"-" msgpack:"version"`
	CreatedAt    msgpack.RawMessage `json:"-" msgpack:"created_at"`
	LastAccessAt msgpack.RawMessage `json:"-" msgpack:"last_access_at"`
	ExpiresAt    msgpack.RawMessage `json:"-" msgpack:"expires_at"`
}

// jsonSessionBody is sessionBody as JSON carries it.
type jsonSessionBody struct {
	Principal       string                     `json:"principal"`
	Attributes      map[string]json.RawMessage `json:"attributes"`
	IdleTimeout     string                     `json:"idle_timeout"`
	AbsoluteTimeout string                     `json:"absolute_timeout"`

	ID           string          `json:"id"`
	Version      json.RawMessage `json:"version"`
	CreatedAt    json.RawMessage `json:"created_at"`
	LastAccessAt json.RawMessage `json:"last_access_at"`
	ExpiresAt    json.RawMessage `json:"expires_at"`
}

// op turns a body into a put of session id.
func (b *sessionBody) op(id string) (*tandem.Op, error) {
	op := &tandem.Op{Kind: tandem.OpPut, ID: id, Principal: b.Principal, Attributes: b.Attributes}
	var err error
	if op.IdleTimeout, err = parseTimeout("idle_timeout", b.IdleTimeout); err != nil {
		return nil, err
	}
	if op.AbsoluteTimeout, err = parseTimeout("absolute_timeout", b.AbsoluteTimeout); err != nil {
		return nil, err
	}
	return op, nil
}

// parseTimeout parses a Go duration ("30m"); empty means the default.
func parseTimeout(field, v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s must be a positive duration such as \"30m\", got %q", field, v)
	}
	return d, nil
}

// readBody reads a request body within the limit, answering 413 or 400.
func (h *Handler) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, h.cfg.MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		writeError(w, r, http.StatusRequestEntityTooLarge, "too_large", fmt.Sprintf("body exceeds %d bytes", h.cfg.MaxBodyBytes))
		return nil, false
	case err != nil:
		writeError(w, r, http.StatusBadRequest, "invalid_body", fmt.Sprintf("read body: %v", err))
		return nil, false
	}
	return b, true
}

// readSessionBody reads and decodes a PUT or POST body, answering 400,
// 413 or 415 itself when it returns false.
func (h *Handler) readSessionBody(w http.ResponseWriter, r *http.Request) (*sessionBody, bool) {
	asMsgpack, ok := bodyType(w, r, false)
	if !ok {
		return nil, false
	}
	raw, ok := h.readBody(w, r)
	if !ok {
		return nil, false
	}
	body, err := decodeSessionBody(raw, asMsgpack, h.node.Limits().MaxAttributes)
	if err != nil {
		bodyError(w, r, err)
		return nil, false
	}
	return body, true
}

// decodeSessionBody decodes a PUT or POST body, JSON or msgpack, refusing
// unknown fields and a body that is not an object (a map): null, an array
// or a scalar replaces nothing. Its structure is checked before anything is decoded
// (checkBody, with the node's attribute limit), so hostile lengths, nesting
// and attribute counts cost nothing.
func decodeSessionBody(raw []byte, asMsgpack bool, maxAttributes int) (*sessionBody, error) {
	if err := checkBody(raw, asMsgpack, sessionBodyWrap, maxAttributes); err != nil {
		return nil, err
	}
	if !isObject(raw, asMsgpack) {
		if asMsgpack {
			return nil, errors.New("the body must be a msgpack map of the session's fields")
		}
		return nil, errors.New(`the body must be a JSON object of the session's fields, such as {"principal": "alice", "attributes": {}}`)
	}
	body := &sessionBody{}
	if asMsgpack {
		dec := msgpack.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields(true)
		if err := dec.Decode(body); err != nil {
			return nil, fmt.Errorf("decode msgpack body: %w", err)
		}
		for name, v := range body.Attributes {
			if len(v) == 0 { // msgpack's decoder keeps nil as no bytes
				body.Attributes[name] = msgpack.RawMessage{msgpcode.Nil}
			}
		}
		return body, nil
	}
	var jb jsonSessionBody
	if err := decodeJSON(raw, &jb); err != nil {
		return nil, err
	}
	body.Principal, body.IdleTimeout, body.AbsoluteTimeout, body.ID = jb.Principal, jb.IdleTimeout, jb.AbsoluteTimeout, jb.ID
	if len(jb.Attributes) > 0 {
		body.Attributes = make(map[string]msgpack.RawMessage, len(jb.Attributes))
		for name, v := range jb.Attributes {
			mv, err := jsonToMsgpack(v)
			if err != nil {
				return nil, fmt.Errorf("attribute %q: %w", name, err)
			}
			body.Attributes[name] = mv
		}
	}
	return body, nil
}

// isObject reports whether raw is a JSON object or a msgpack map, by its
// first byte (the decoder checks the rest).
func isObject(raw []byte, asMsgpack bool) bool {
	if asMsgpack {
		return len(raw) > 0 && (msgpcode.IsFixedMap(raw[0]) || raw[0] == msgpcode.Map16 || raw[0] == msgpcode.Map32)
	}
	raw = bytes.TrimLeft(raw, " \t\r\n")
	return len(raw) > 0 && raw[0] == '{'
}

// readPatch reads and decodes a PATCH body (decodePatch), answering 400,
// 413 or 415 itself when it returns false.
func (h *Handler) readPatch(w http.ResponseWriter, r *http.Request, id string) (*tandem.Op, bool) {
	asMsgpack, ok := bodyType(w, r, true)
	if !ok {
		return nil, false
	}
	raw, ok := h.readBody(w, r)
	if !ok {
		return nil, false
	}
	op, err := decodePatch(raw, asMsgpack, id, h.node.Limits().MaxAttributes)
	if err != nil {
		bodyError(w, r, err)
		return nil, false
	}
	return op, true
}

// bodyError answers a body that could not be decoded: 413 for one naming
// too many attributes, else 400.
func bodyError(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, tandem.ErrTooLarge) {
		writeError(w, r, http.StatusRequestEntityTooLarge, "too_large", err.Error())
		return
	}
	writeError(w, r, http.StatusBadRequest, "invalid_body", err.Error())
}

// decodePatch decodes a PATCH body into an attribute patch of session id:
// a JSON merge patch, or a msgpack map with the same meaning. Top-level
// null deletes an attribute, an object merges into it, anything else
// replaces it; the reserved key "principal" is not special (principals
// change through PUT). Its structure is checked before anything is decoded
// (checkBody, with the node's attribute limit). msgpack values are kept
// byte for byte and JSON values transcoded (jsonToMsgpack), so the same
// body always makes the same op (a retry with its Idempotency-Key is
// recognised as one).
func decodePatch(raw []byte, asMsgpack bool, id string, maxAttributes int) (*tandem.Op, error) {
	if err := checkBody(raw, asMsgpack, patchBodyWrap, maxAttributes); err != nil {
		return nil, err
	}
	op := &tandem.Op{Kind: tandem.OpPatch, ID: id, Set: map[string]msgpack.RawMessage{}, Merge: map[string]msgpack.RawMessage{}}
	if asMsgpack {
		var fields map[string]msgpack.RawMessage
		if err := msgpack.Unmarshal(raw, &fields); err != nil {
			return nil, fmt.Errorf("decode msgpack patch: %w", err)
		}
		if fields == nil {
			return nil, errors.New("a msgpack patch must be a map of attribute names to values")
		}
		for name, v := range fields {
			switch {
			case len(v) == 0 || v[0] == msgpcode.Nil: // the decoder keeps nil as no bytes
				op.Delete = append(op.Delete, name)
			case msgpcode.IsFixedMap(v[0]) || v[0] == msgpcode.Map16 || v[0] == msgpcode.Map32:
				op.Merge[name] = v
			default:
				op.Set[name] = v
			}
		}
		return op, nil
	}
	var obj map[string]json.RawMessage
	if err := decodeJSON(raw, &obj); err != nil || obj == nil {
		return nil, errors.New("a merge patch must be a JSON object")
	}
	for name, raw := range obj {
		raw = bytes.TrimLeft(raw, " \t\r\n")
		if bytes.HasPrefix(raw, []byte("null")) {
			op.Delete = append(op.Delete, name)
			continue
		}
		b, err := jsonToMsgpack(raw)
		if err != nil {
			return nil, fmt.Errorf("attribute %q: %w", name, err)
		}
		if raw[0] == '{' {
			op.Merge[name] = b
		} else {
			op.Set[name] = b
		}
	}
	return op, nil
}

// decodeJSON decodes one JSON value into v, refusing unknown fields and
// trailing data.
func decodeJSON(raw []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode JSON body: %w", err)
	}
	if rest := bytes.TrimLeft(raw[dec.InputOffset():], " \t\r\n"); len(rest) > 0 {
		return fmt.Errorf("decode JSON body: data after the value")
	}
	return nil
}

// sessionView is a session as the API returns it.
type sessionView struct {
	ID           string                        `json:"id" msgpack:"id"`
	Principal    string                        `json:"principal" msgpack:"principal"`
	Attributes   map[string]msgpack.RawMessage `json:"-" msgpack:"attributes"`
	JSONAttrs    map[string]any                `json:"attributes" msgpack:"-"`
	Version      uint64                        `json:"version" msgpack:"version"`
	CreatedAt    time.Time                     `json:"created_at" msgpack:"created_at"`
	LastAccessAt time.Time                     `json:"last_access_at" msgpack:"last_access_at"`
	ExpiresAt    *time.Time                    `json:"expires_at" msgpack:"expires_at"`
}

// writeSession answers with a session and its ETag, in JSON unless the
// client accepts msgpack: written straight from the session
// (writeSessionDirect), or by writeSessionView for what that does not
// take on.
func writeSession(w http.ResponseWriter, r *http.Request, status int, s *tandem.Session) {
	if !writeSessionDirect(w, r, status, s) {
		writeSessionView(w, r, status, s)
	}
}

// writeSessionView answers with a session as the reflective encoders write
// its sessionView; its bytes are what writeSessionDirect writes. A session
// JSON cannot show (attributeJSON) is answered by noJSON instead.
func writeSessionView(w http.ResponseWriter, r *http.Request, status int, s *tandem.Session) {
	v := sessionView{ID: s.ID, Principal: s.Principal, Attributes: s.Attributes, Version: s.Version,
		CreatedAt: s.Created.UTC(), LastAccessAt: s.LastAccess.UTC()}
	if at := s.ExpiresAt(); !at.IsZero() {
		at = at.UTC()
		v.ExpiresAt = &at
	}
	if v.Attributes == nil {
		v.Attributes = map[string]msgpack.RawMessage{}
	}
	if !wantsMsgpack(r) {
		v.JSONAttrs = make(map[string]any, len(s.Attributes))
		for _, name := range sortedNames(s.Attributes) { // the first in name order is the one named
			b, err := attributeJSON(s.Attributes[name])
			if err != nil {
				noJSON(w, r, status, s, name, err)
				return
			}
			v.JSONAttrs[name] = json.RawMessage(b)
		}
	}
	w.Header().Set("ETag", fmt.Sprintf(`"%d"`, s.Version))
	writeValue(w, r, status, v)
}

// attributeJSON returns the JSON of an attribute value as a session answer
// writes it: encoding/json's of the Go value msgpack decodes it into. It
// fails for what JSON cannot show, which msgpack carries: an extension
// other than a timestamp, a float that is not finite, a map whose keys
// are not all strings, a time outside years 0–9999.
func attributeJSON(v msgpack.RawMessage) ([]byte, error) {
	var val any
	if err := msgpack.Unmarshal(v, &val); err != nil {
		return nil, err
	}
	return json.Marshal(val)
}

// noJSON answers with session s when its attribute name holds a value
// JSON cannot show (err, from attributeJSON) and the client asked for
// JSON. A read answers 406 saying to ask in msgpack, which shows every
// value. A write has been applied by now, so it must not answer an error
// (every error says the request changed nothing): it answers its status
// without a body, 204 for 200, with the session's ETag.
func noJSON(w http.ResponseWriter, r *http.Request, status int, s *tandem.Session, name string, err error) {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		writeError(w, r, http.StatusNotAcceptable, "not_acceptable", fmt.Sprintf(
			"session %s holds a value JSON cannot show (attribute %q: %s); ask for it with Accept: %s",
			s.ID, name, whyNoJSON(s.Attributes[name], err), contentMsgpack))
		return
	}
	w.Header().Set("ETag", etag(s.Version))
	if status == http.StatusOK {
		status = http.StatusNoContent
	}
	w.WriteHeader(status)
}

// whyNoJSON says in a client's words what in attribute value v JSON
// cannot show, attributeJSON having failed with err: the first extension
// other than a timestamp, float that is not finite or map key that is not
// a string it finds, else what err says.
func whyNoJSON(v msgpack.RawMessage, err error) string {
	if why, _ := noJSONIn(msgpack.NewDecoder(bytes.NewReader(v))); why != "" {
		return why
	}
	var marshaler *json.MarshalerError
	if errors.As(err, &marshaler) { // a timestamp outside years 0–9999
		return marshaler.Err.Error()
	}
	return err.Error()
}

// noJSONIn walks the value at dec for whyNoJSON and returns what JSON
// cannot show in it, or "" for nothing; an error stops it. The value passed
// tandem.CheckValue when it was written, so its lengths and nesting are
// within bounds.
func noJSONIn(dec *msgpack.Decoder) (string, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return "", err
	}
	switch {
	case msgpcode.IsExt(c):
		id, n, err := dec.DecodeExtHeader()
		if err != nil || id != -1 { // -1: msgpack's timestamp
			return fmt.Sprintf("a msgpack extension of type %d", id), err
		}
		return "", dec.ReadFull(make([]byte, n))
	case c == msgpcode.Float || c == msgpcode.Double:
		f, err := dec.DecodeFloat64()
		if err == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
			return fmt.Sprintf("the number %v, which JSON has no form for", f), nil
		}
		return "", err
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := dec.DecodeArrayLen()
		for i := 0; i < n && err == nil; i++ {
			var why string
			if why, err = noJSONIn(dec); why != "" {
				return why, nil
			}
		}
		return "", err
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := dec.DecodeMapLen()
		for i := 0; i < n && err == nil; i++ {
			if c, err = dec.PeekCode(); err != nil {
				break
			}
			if !msgpcode.IsString(c) && !msgpcode.IsBin(c) { // msgpack decodes a binary key as a string
				return fmt.Sprintf("a map key that is not a string (msgpack code %#02x)", c), nil
			}
			if err = dec.Skip(); err != nil {
				break
			}
			var why string
			if why, err = noJSONIn(dec); why != "" {
				return why, nil
			}
		}
		return "", err
	}
	return "", dec.Skip()
}

// writeValue answers with v as JSON, or msgpack if the client accepts it;
// with 406 if v cannot be encoded as that.
func writeValue(w http.ResponseWriter, r *http.Request, status int, v any) {
	var body []byte
	var err error
	ct := contentJSON
	if wantsMsgpack(r) {
		ct = contentMsgpack
		body, err = msgpack.Marshal(v)
	} else {
		body, err = json.Marshal(v)
	}
	if err != nil {
		w.Header().Del("ETag") // of the answer there is not
		writeError(w, r, http.StatusNotAcceptable, "not_acceptable", fmt.Sprintf("cannot encode the answer as %s: %v", ct, err))
		return
	}
	w.Header().Set("Content-Type", ct)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

// errorBody is every error answer.
type errorBody struct {
	Error string `json:"error"`
	Code  string `json:"code"`
}

// writeError answers with a JSON error.
func writeError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	body, _ := json.Marshal(errorBody{Error: msg, Code: code})
	w.Header().Set("Content-Type", contentJSON)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(append(body, '\n'))
	}
}

// sorted returns s sorted.
func sorted(s []string) []string {
	slices.Sort(s)
	return s
}
