package replica

import (
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica/peer"
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

	// FirstSent is when the request's first attempt was sent (Unix
	// nanoseconds, on the clock of the node that took it from its client),
	// on a retry that knows it; zero otherwise. A session remembers the
	// requests of its last recentRequests writes only: a retry it does not
	// remember whose first attempt was sent before it forgot one is
	// refused as ErrIndeterminate rather than perhaps applied twice. Not
	// part of the request's content: each attempt carries its own.
	FirstSent int64 `msgpack:"fs,omitempty"`

	// NoTouch makes a get leave the idle deadline where it is.
	NoTouch bool `msgpack:"nt,omitempty"`

	// NotAfter, set on an op sent to the primary over the peer wire, is
	// when its sender gives up on it (Unix nanoseconds, the sender's wall
	// clock). A primary refuses an op that reaches it more than
	// TransitSkew later, unapplied: its frames were held up by a cut
	// network and delivered after its sender had answered its client (a
	// zombie request). Zero sets no bound. It is not part of the request's
	// content: retries carry their own.
	NotAfter int64 `msgpack:"na,omitempty"`

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

// Validate checks op before it runs or travels: a well-formed id, a known
// kind, and attribute values that are each exactly one msgpack value nested
// at most peer.MaxValueDepth deep (a frame carrying a broken or too deep
// value would cost the connection). Errors wrap ErrInvalid.
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
	if op.NotAfter < 0 {
		return fmt.Errorf("%w: negative deadline", ErrInvalid)
	}
	if op.FirstSent < 0 {
		return fmt.Errorf("%w: negative first-sent time", ErrInvalid)
	}
	if op.FirstSent != 0 && op.RequestID == "" {
		return fmt.Errorf("%w: a first-sent time says when a retried request was first sent: it needs the request's id", ErrInvalid)
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

// validValue reports whether b holds exactly one msgpack value, nested at
// most peer.MaxValueDepth deep so that every frame carrying it fits the
// wire's nesting limit. It checks the structure without decoding it.
func validValue(b msgpack.RawMessage) error {
	return peer.CheckValue(b, peer.MaxValueDepth)
}
