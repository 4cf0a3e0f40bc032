package replica

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// OpKind says what an Op does.
type OpKind uint8

// The operations a session supports.
const (
	// OpGet reads a session and, unless NoTouch, moves its idle deadline.
	OpGet OpKind = iota + 1
	// OpPut creates or replaces a whole session.
	OpPut
	// OpPatch sets, merges and deletes named attributes of an existing
	// session, leaving the others as they are.
	OpPatch
	// OpDelete deletes a session.
	OpDelete
	// OpTouch moves a session's idle deadline without reading it.
	OpTouch
)

// String names the kind for logs and errors.
func (k OpKind) String() string {
	switch k {
	case OpGet:
		return "get"
	case OpPut:
		return "put"
	case OpPatch:
		return "patch"
	case OpDelete:
		return "delete"
	case OpTouch:
		return "touch"
	}
	return fmt.Sprintf("op(%d)", uint8(k))
}

// writes reports whether the kind changes the session's content.
func (k OpKind) writes() bool { return k == OpPut || k == OpPatch || k == OpDelete }

// Op is one request against one session. It travels as is when a node
// forwards it to the session's primary.
type Op struct {
	// Kind says what to do.
	Kind OpKind `msgpack:"k"`
	// ID names the session.
	ID string `msgpack:"id"`

	// RequestID names the request across retries: a primary that already
	// applied a write with this id answers from that, never applying it
	// twice. Node.Do sets one for writes that have none; clients that
	// retry on their own should set their own (httpapi takes it from
	// Idempotency-Key). At most 128 bytes.
	RequestID string `msgpack:"rid,omitempty"`

	// NoTouch makes a get leave the idle deadline where it is.
	NoTouch bool `msgpack:"nt,omitempty"`

	// IfVersion makes a put, patch or delete conditional: it applies only
	// if the session's current version is IfVersion (ErrConflict
	// otherwise). Zero means unconditional.
	IfVersion uint64 `msgpack:"iv,omitempty"`
	// IfAbsent makes a put apply only if the session does not exist.
	IfAbsent bool `msgpack:"ia,omitempty"`

	// Principal is the put's principal; for a patch, it replaces the
	// principal when SetPrincipal is true.
	Principal    string `msgpack:"pr,omitempty"`
	SetPrincipal bool   `msgpack:"sp,omitempty"`
	// Attributes are the put's attributes.
	Attributes map[string]msgpack.RawMessage `msgpack:"at,omitempty"`
	// IdleTimeout and AbsoluteTimeout are the put's timeouts; zero takes
	// the node's defaults. The absolute deadline counts from creation.
	IdleTimeout     time.Duration `msgpack:"it,omitempty"`
	AbsoluteTimeout time.Duration `msgpack:"ab,omitempty"`

	// Set replaces the named attributes (patch).
	Set map[string]msgpack.RawMessage `msgpack:"set,omitempty"`
	// Merge applies each value as a JSON merge patch (RFC 7396) to the named
	// attribute: maps merge key by key, nil values delete keys (patch).
	Merge map[string]msgpack.RawMessage `msgpack:"mrg,omitempty"`
	// Delete removes the named attributes (patch).
	Delete []string `msgpack:"del,omitempty"`
}

// limits are the node settings apply needs.
type limits struct {
	maxBytes        int
	idleTimeout     time.Duration
	absoluteTimeout time.Duration
}

// apply computes the session that a write op makes of prev, the stored copy
// (nil, a tombstone or expired when the session does not exist for readers).
// It is pure: the caller replicates and stores the result.
func apply(op *Op, prev *Session, now time.Time, stamp uint64, writer string, lim limits) (*Session, error) {
	exists := prev.live(now)
	if op.IfVersion != 0 && (!exists || prev.Version != op.IfVersion) {
		have := uint64(0)
		if exists {
			have = prev.Version
		}
		return nil, fmt.Errorf("%w: %s wants version %d, have %d", ErrConflict, op.ID, op.IfVersion, have)
	}
	var base uint64
	if prev != nil {
		base = prev.Version // versions keep growing across deletes and expiry
	}
	next := &Session{ID: op.ID, Version: base + 1, LastAccess: now, Stamp: stamp, Writer: writer}
	if prev != nil {
		next.Recent = prev.Recent[max(0, len(prev.Recent)-recentRequests+1):]
	}
	if op.RequestID != "" {
		next.Recent = append(slices.Clip(next.Recent), Applied{Request: op.RequestID, Version: next.Version})
	}

	switch op.Kind {
	case OpPut:
		if op.IfAbsent && exists {
			return nil, fmt.Errorf("%w: %s already exists at version %d", ErrConflict, op.ID, prev.Version)
		}
		next.Principal = op.Principal
		next.Attributes = op.Attributes
		next.Created = now
		if exists {
			next.Created = prev.Created
		}
		next.IdleTimeout = pick(op.IdleTimeout, lim.idleTimeout)
		if abs := pick(op.AbsoluteTimeout, lim.absoluteTimeout); abs > 0 {
			next.Deadline = next.Created.Add(abs)
		}
	case OpPatch:
		if !exists {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, op.ID)
		}
		next.Principal, next.Created, next.IdleTimeout, next.Deadline = prev.Principal, prev.Created, prev.IdleTimeout, prev.Deadline
		if op.SetPrincipal {
			next.Principal = op.Principal
		}
		attrs, err := patchAttributes(prev.Attributes, op)
		if err != nil {
			return nil, err
		}
		next.Attributes = attrs
	case OpDelete:
		if !exists {
			return nil, fmt.Errorf("%w: %s", ErrNotFound, op.ID)
		}
		next.Deleted = true
		next.Created = prev.Created
	default:
		return nil, fmt.Errorf("%w: %s is not a write", ErrInvalid, op.Kind)
	}

	if !next.Deleted {
		size, err := encodedSize(next)
		if err != nil {
			return nil, fmt.Errorf("%w: encode %s: %v", ErrInvalid, op.ID, err)
		}
		if lim.maxBytes > 0 && size > lim.maxBytes {
			return nil, fmt.Errorf("%w: %s would be %d bytes, limit %d", ErrTooLarge, op.ID, size, lim.maxBytes)
		}
	}
	return next, nil
}

// pick returns v, or def when v is zero.
func pick(v, def time.Duration) time.Duration {
	if v == 0 {
		return def
	}
	return v
}

// patchAttributes returns a new attribute map: prev with op's sets, merges
// and deletes applied. prev is not changed.
func patchAttributes(prev map[string]msgpack.RawMessage, op *Op) (map[string]msgpack.RawMessage, error) {
	out := maps.Clone(prev)
	if out == nil {
		out = map[string]msgpack.RawMessage{}
	}
	for name, v := range op.Set {
		out[name] = v
	}
	for name, patch := range op.Merge {
		merged, err := mergeValue(out[name], patch)
		if err != nil {
			return nil, fmt.Errorf("%w: merge attribute %q: %v", ErrInvalid, name, err)
		}
		if merged == nil {
			delete(out, name)
		} else {
			out[name] = merged
		}
	}
	for _, name := range op.Delete {
		delete(out, name)
	}
	return out, nil
}

// mergeValue applies an RFC 7396 merge patch to an encoded value and returns
// the encoded result, or nil when the result is null.
func mergeValue(target, patch msgpack.RawMessage) (msgpack.RawMessage, error) {
	var t, p any
	if len(target) > 0 {
		if err := msgpack.Unmarshal(target, &t); err != nil {
			return nil, err
		}
	}
	if err := msgpack.Unmarshal(patch, &p); err != nil {
		return nil, err
	}
	r := mergePatch(t, p)
	if r == nil {
		return nil, nil
	}
	return msgpack.Marshal(r)
}

// mergePatch is RFC 7396's MergePatch over decoded values.
func mergePatch(target, patch any) any {
	pm, ok := patch.(map[string]any)
	if !ok {
		return patch
	}
	tm, ok := target.(map[string]any)
	if !ok {
		tm = map[string]any{}
	} else {
		tm = maps.Clone(tm)
	}
	for k, v := range pm {
		if v == nil {
			delete(tm, k)
			continue
		}
		tm[k] = mergePatch(tm[k], v)
	}
	return tm
}

// Validate checks op before it runs or travels: a well-formed id, a known
// kind, and attribute values that are each exactly one msgpack value (a
// frame carrying a broken value would cost the connection).
func (op *Op) Validate() error {
	if err := ValidateID(op.ID); err != nil {
		return err
	}
	if op.Kind < OpGet || op.Kind > OpTouch {
		return fmt.Errorf("%w: unknown op kind %d", ErrInvalid, op.Kind)
	}
	if len(op.RequestID) > 128 {
		return fmt.Errorf("%w: request id longer than 128 bytes", ErrInvalid)
	}
	for _, attrs := range []map[string]msgpack.RawMessage{op.Attributes, op.Set, op.Merge} {
		for name, v := range attrs {
			if name == "" {
				return fmt.Errorf("%w: empty attribute name", ErrInvalid)
			}
			if err := validValue(v); err != nil {
				return fmt.Errorf("%w: attribute %q: %v", ErrInvalid, name, err)
			}
		}
	}
	return nil
}

// validValue reports whether b holds exactly one msgpack value.
func validValue(b msgpack.RawMessage) error {
	r := bytes.NewReader(b)
	if err := msgpack.NewDecoder(r).Skip(); err != nil {
		return fmt.Errorf("undecodable value: %w", err)
	}
	if r.Len() != 0 {
		return fmt.Errorf("%d bytes after the value", r.Len())
	}
	return nil
}
