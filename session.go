package tandem

import (
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica"
)

// Session is a session as an app sees it: what Node.Do, Client.Do and
// their shorthands return. It is a snapshot; changing it changes nothing
// stored.
type Session struct {
	// ID names the session: 16–128 characters of [A-Za-z0-9_.-].
	ID string
	// Principal is the user the session belongs to, if any.
	Principal string
	// Attributes maps names to msgpack-encoded values. The map is shared
	// with the stored copy, which is never changed in place: read it, do
	// not write to it.
	Attributes map[string]msgpack.RawMessage
	// Version grows by one with every write, deletes included; HTTP
	// answers carry it as the ETag.
	Version uint64
	// Created is when the session was first written.
	Created time.Time
	// LastAccess is when the session was last read or written; it moves
	// the idle deadline.
	LastAccess time.Time
	// IdleTimeout ends the session this long after LastAccess; zero means
	// no idle timeout.
	IdleTimeout time.Duration
	// Deadline ends the session whatever its activity; zero means none.
	Deadline time.Time
}

// ExpiresAt returns when the session ends if nothing touches it again, or
// the zero time if it never does.
func (s *Session) ExpiresAt() time.Time {
	return s.expiry().ExpiresAt()
}

// Expired reports whether the session has ended by now.
func (s *Session) Expired(now time.Time) bool {
	return s.expiry().Expired(now)
}

// expiry returns the engine's session with s's timing, so that the rule
// for when a session ends has one definition.
func (s *Session) expiry() *replica.Session {
	return &replica.Session{LastAccess: s.LastAccess, IdleTimeout: s.IdleTimeout, Deadline: s.Deadline}
}

// sessionOf returns the app's view of a stored session, its attributes
// decoded into a map of their own; nil stays nil.
func sessionOf(s *replica.Session) (*Session, error) {
	if s == nil {
		return nil, nil
	}
	attrs, err := s.Attributes.Map()
	if err != nil {
		return nil, fmt.Errorf("session %s: %w", s.ID, err)
	}
	if len(attrs) == 0 {
		attrs = nil
	}
	return &Session{
		ID:          s.ID,
		Principal:   s.Principal,
		Attributes:  attrs,
		Version:     s.Version,
		Created:     s.Created,
		LastAccess:  s.LastAccess,
		IdleTimeout: s.IdleTimeout,
		Deadline:    s.Deadline,
	}, nil
}

// answerOf is an engine's answer as the app sees it: the session (see
// sessionOf) and the error, or the error decoding the session.
func answerOf(s *replica.Session, err error) (*Session, error) {
	out, derr := sessionOf(s)
	if err == nil {
		err = derr
	}
	return out, err
}

// OpKind says what an Op does.
type OpKind uint8

// The operations a session supports. They are numbered as the engine's
// replica.OpKind, so an Op's kind reaches the engine by value.
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

// String names the kind for logs and errors: "get", "put", "patch",
// "delete", "touch".
func (k OpKind) String() string { return replica.OpKind(k).String() }

// Op is one request against one session; see Node.Do and Client.Do.
type Op struct {
	// Kind says what to do.
	Kind OpKind
	// ID names the session.
	ID string

	// RequestID names the request across retries: a primary that already
	// applied a write with this id answers from that, never applying it
	// twice. Node.Do and Client.Do set one for writes that have none;
	// programs that retry on their own should set their own (httpapi
	// takes it from Idempotency-Key). At most 128 bytes.
	RequestID string
	// FirstSent, on a retry of a write with its RequestID, is when the
	// first attempt was sent; zero on a first attempt. A session remembers
	// the requests of its last 8 writes only: a retry it no longer
	// remembers is refused with ErrIndeterminate if its first attempt was
	// sent before the session forgot a request, rather than perhaps
	// applied twice. Without it, such a retry is taken for a new request.
	// A program that retries a call sets it (httpapi takes it from
	// Idempotency-Age); the attempts Node.Do and Client.Do make within
	// one call do not carry it.
	FirstSent time.Time

	// NoTouch makes a get leave the idle deadline where it is.
	NoTouch bool

	// IfVersion makes a put, patch or delete conditional: it applies only
	// if the session's current version is IfVersion (ErrConflict
	// otherwise). Zero means unconditional.
	IfVersion uint64
	// IfAbsent makes a put apply only if the session does not exist.
	IfAbsent bool

	// Principal is the put's principal; for a patch, it replaces the
	// principal when SetPrincipal is true.
	Principal string
	// SetPrincipal makes a patch replace the principal with Principal.
	SetPrincipal bool
	// Attributes are the put's attributes, msgpack-encoded.
	Attributes map[string]msgpack.RawMessage
	// IdleTimeout and AbsoluteTimeout are the put's timeouts; zero takes
	// the node's defaults. The absolute deadline counts from creation.
	IdleTimeout     time.Duration
	AbsoluteTimeout time.Duration

	// Set replaces the named attributes (patch).
	Set map[string]msgpack.RawMessage
	// Merge applies each value as a JSON merge patch (RFC 7396) to the named
	// attribute: maps merge key by key, nil values delete keys (patch).
	Merge map[string]msgpack.RawMessage
	// Delete removes the named attributes (patch).
	Delete []string
}

// engineOp returns op as the replication engine takes it; nil stays nil.
func engineOp(op *Op) *replica.Op {
	if op == nil {
		return nil
	}
	return &replica.Op{
		Kind:            replica.OpKind(op.Kind),
		ID:              op.ID,
		RequestID:       op.RequestID,
		FirstSent:       unixNanos(op.FirstSent),
		NoTouch:         op.NoTouch,
		IfVersion:       op.IfVersion,
		IfAbsent:        op.IfAbsent,
		Principal:       op.Principal,
		SetPrincipal:    op.SetPrincipal,
		Attributes:      op.Attributes,
		IdleTimeout:     op.IdleTimeout,
		AbsoluteTimeout: op.AbsoluteTimeout,
		Set:             op.Set,
		Merge:           op.Merge,
		Delete:          op.Delete,
	}
}

// unixNanos returns t in Unix nanoseconds, zero for the zero time.
func unixNanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

// ValidateID reports whether id is a well-formed session id: 16–128
// characters of [A-Za-z0-9_.-]. The error wraps ErrInvalid.
func ValidateID(id string) error { return replica.ValidateID(id) }
