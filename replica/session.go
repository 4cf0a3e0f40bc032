package replica

import (
	"fmt"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// Session is one user's session, as stored on its primary and its buddy and
// as carried between them. A stored Session is never modified in place: every
// change makes a new one, so readers can hold it without locks.
type Session struct {
	// ID names the session: 16–128 characters of [A-Za-z0-9_.-].
	ID string `msgpack:"id"`
	// Principal is the user the session belongs to, if any.
	Principal string `msgpack:"pr,omitempty"`
	// Attributes maps names to msgpack-encoded values, kept encoded
	// (Attributes' doc says why).
	Attributes Attributes `msgpack:"at,omitempty"`
	// Version grows by one with every write, deletes included.
	Version uint64 `msgpack:"v"`
	// Created is when the session was first written.
	Created time.Time `msgpack:"c"`
	// LastAccess is when the session was last read or written; it moves
	// the idle deadline.
	LastAccess time.Time `msgpack:"la"`
	// IdleTimeout ends the session this long after LastAccess; zero means
	// no idle timeout.
	IdleTimeout time.Duration `msgpack:"it"`
	// Deadline ends the session whatever its activity; zero means none.
	Deadline time.Time `msgpack:"dl"`
	// Stamp is the hybrid logical clock reading of the write that made this
	// version, and Writer the node that made it. They order two different
	// copies of the same version, which only a network cut can produce:
	// the higher stamp wins, then the higher writer name.
	Stamp  uint64 `msgpack:"hlc"`
	Writer string `msgpack:"w,omitempty"`
	// Recent lists the requests that made the latest versions, newest last,
	// so that a retried request is recognised wherever the session's
	// primary now is, and never applied twice.
	Recent []Applied `msgpack:"rq,omitempty"`
	// Deleted marks a tombstone: the session was deleted at LastAccess, and
	// the tombstone keeps its version so that older copies lose to it.
	Deleted bool `msgpack:"del,omitempty"`
	// Gen is the generation of the session's partition the copy was
	// written in. A partition rebuilt from nothing (its owners both gone,
	// reported lost) gets a new, higher generation, so that copies from
	// before the loss — an owner frozen past the failure detector comes
	// back with them — never replace one written after it, whatever
	// their versions (chaos finding F11). Zero before any loss.
	Gen uint64 `msgpack:"gn,omitempty"`
	// Forgot is the stamp at which the latest request dropped from Recent
	// was applied (Applied.At; the stamp of the write that dropped it, for
	// records without one): a request first sent before then may have
	// been applied and forgotten, and a retry of it cannot be told from a
	// new request (Op.FirstSent). Zero while the session remembers every
	// request that wrote it.
	Forgot uint64 `msgpack:"fg,omitempty"`
}

// Applied records that a request made a version.
type Applied struct {
	// Request is the request's id (Op.RequestID).
	Request string `msgpack:"r"`
	// Version is the version it made.
	Version uint64 `msgpack:"v"`
	// Hash is a hash of the request's content (opHash), so that an id
	// reused for another request is told from a retry (ErrRequestReused).
	// Zero in records made before it existed: such a record recognises
	// any request with its id as a retry, as it did then.
	Hash uint64 `msgpack:"h,omitempty"`
	// At is the stamp of the write that applied it (Session.Stamp then):
	// when the record is dropped, Session.Forgot becomes it. Zero in
	// records made before it existed.
	At uint64 `msgpack:"at,omitempty"`
}

// recentRequests is how many requests a session remembers.
const recentRequests = 8

// mayHaveForgotten reports whether a request first sent at firstSent
// (Unix nanoseconds, its sender's clock; zero if unknown) and not in
// Recent may still have been applied: a write since it was sent dropped a
// request's record (Forgot). Clocks are allowed to differ by TransitSkew,
// on the side of answering "may have".
func (s *Session) mayHaveForgotten(firstSent int64) bool {
	if s == nil || s.Forgot == 0 || firstSent == 0 {
		return false
	}
	forgot := time.UnixMilli(int64(s.Forgot >> 16))
	return !time.Unix(0, firstSent).After(forgot.Add(TransitSkew))
}

// applied returns the record of request, if the session remembers it.
func (s *Session) applied(request string) (Applied, bool) {
	if s == nil || request == "" {
		return Applied{}, false
	}
	for _, a := range s.Recent {
		if a.Request == request {
			return a, true
		}
	}
	return Applied{}, false
}

// ExpiresAt returns when the session ends if nothing touches it again, or
// the zero time if it never does.
func (s *Session) ExpiresAt() time.Time {
	var at time.Time
	if s.IdleTimeout > 0 {
		at = s.LastAccess.Add(s.IdleTimeout)
	}
	if !s.Deadline.IsZero() && (at.IsZero() || s.Deadline.Before(at)) {
		at = s.Deadline
	}
	return at
}

// Expired reports whether the session has ended by now.
func (s *Session) Expired(now time.Time) bool {
	at := s.ExpiresAt()
	return !at.IsZero() && !now.Before(at)
}

// live reports whether s exists for readers at now: present, not deleted,
// not expired.
func (s *Session) live(now time.Time) bool {
	return s != nil && !s.Deleted && !s.Expired(now)
}

// newer reports whether a should replace b: the higher version wins, then
// the higher stamp, then the higher writer name. The order is total, so
// every node reconciling the same copies keeps the same one.
func newer(a, b *Session) bool {
	switch {
	case b != nil && a.Gen != b.Gen:
		return a.Gen > b.Gen // a copy from after a loss beats one from before it
	case b == nil || a.Version != b.Version:
		return b == nil || a.Version > b.Version
	case a.Stamp != b.Stamp:
		return a.Stamp > b.Stamp
	}
	return a.Writer > b.Writer
}

// copyKey returns what newer compares of s, and its ID: a summary that
// stands for the copy when only which of two copies is newer matters.
func copyKey(s *Session) *Session {
	return &Session{ID: s.ID, Version: s.Version, Stamp: s.Stamp, Writer: s.Writer, Gen: s.Gen}
}

// conflicting reports whether a and b are different copies of the same
// version: writes acknowledged on both sides of a network cut.
func conflicting(a, b *Session) bool {
	return a != nil && b != nil && a.Version == b.Version && (a.Stamp != b.Stamp || a.Writer != b.Writer)
}

// diverged reports whether a and b come from writes acknowledged on both
// sides of a network cut, whatever versions each side reached: different
// copies of one version, or a newer copy whose history does not pass
// through the older one (the request that made the older version is not
// the one the newer copy remembers at that version). A newer copy that
// remembers no request at the older version (more than recentRequests
// writes apart, or versions made without a request id) cannot be judged
// and does not count.
func diverged(a, b *Session) bool {
	if a == nil || b == nil {
		return false
	}
	if a.Version == b.Version {
		return conflicting(a, b)
	}
	older, newer := a, b
	if older.Version > newer.Version {
		older, newer = b, a
	}
	made, ok := older.madeBy()
	if !ok {
		return false
	}
	for _, r := range newer.Recent {
		if r.Version == older.Version {
			return r.Request != made.Request || (r.Hash != made.Hash && r.Hash != 0 && made.Hash != 0)
		}
	}
	return false
}

// madeBy returns the record of the request that made the session's
// version, if it remembers one.
func (s *Session) madeBy() (Applied, bool) {
	for i := len(s.Recent) - 1; i >= 0; i-- {
		if s.Recent[i].Version == s.Version {
			return s.Recent[i], true
		}
	}
	return Applied{}, false
}

// ValidateID reports whether id is a well-formed session id.
func ValidateID(id string) error {
	if len(id) < 16 || len(id) > 128 {
		return fmt.Errorf("%w: session id must be 16–128 characters, got %d", ErrInvalid, len(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-' || c == '.') {
			return fmt.Errorf("%w: session id may hold only [A-Za-z0-9_.-], found %q at %d", ErrInvalid, c, i)
		}
	}
	return nil
}

// encodedSize returns the size of s on the wire, counting the bytes an
// encoder writes rather than keeping them: every write measures its
// session against the size limit, and hand-offs measure their batches.
func encodedSize(s *Session) (int, error) {
	var n byteCounter
	enc := msgpack.GetEncoder()
	enc.Reset(&n)
	err := enc.Encode(s)
	enc.Reset(nil) // the pool keeps no reference to n
	msgpack.PutEncoder(enc)
	return int(n), err
}

// byteCounter is an io.Writer that counts what it is given. It writes
// bytes one at a time too, so that an encoder takes it as it is.
type byteCounter int

func (c *byteCounter) Write(p []byte) (int, error) {
	*c += byteCounter(len(p))
	return len(p), nil
}

func (c *byteCounter) WriteByte(byte) error {
	*c++
	return nil
}
