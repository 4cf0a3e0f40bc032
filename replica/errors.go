package replica

import (
	"errors"
	"fmt"

	"github.com/tandem-io/tandem/replica/peer"
)

// Errors returned by Node operations. They survive forwarding: a node that
// forwards a request returns the same sentinel the primary returned.
var (
	// ErrNotFound means the session does not exist, was deleted or expired.
	ErrNotFound = errors.New("session not found")
	// ErrConflict means a conditional write found another version.
	ErrConflict = errors.New("session version conflict")
	// ErrTooLarge means the session would exceed the size limit.
	ErrTooLarge = errors.New("session too large")
	// ErrInvalid means the request was malformed: a bad id or field.
	ErrInvalid = errors.New("invalid request")
	// ErrUnavailable means no owner of the session could be reached in time
	// to serve the request; nothing was acknowledged.
	ErrUnavailable = errors.New("session owners unavailable")
	// ErrNotOwner means the node asked is not the owner the request needs,
	// in its own view of the ring; the caller retries once views agree.
	ErrNotOwner = errors.New("not the owner of this partition")
	// ErrIndeterminate means a retried write cannot be answered: it had
	// already been applied and later writes superseded it, or it may have
	// been applied before the session forgot it (Op.FirstSent). Either
	// way it was not applied again; read the session to learn its state.
	ErrIndeterminate = errors.New("retried request already applied and superseded, or may have been")
	// ErrRequestReused means a write carried the request id of an earlier
	// write to the session (an Idempotency-Key, say) but other content: it
	// is not a retry, and nothing was applied.
	ErrRequestReused = errors.New("request id reused with other content")
	// ErrStale means a replica refused a copy older than the one it holds.
	ErrStale = errors.New("stale session version")
	// ErrForbidden means the caller's certificate does not allow the
	// request: a smart client called a method open only to nodes, or a
	// node sent a request naming another node as its sender. Retrying
	// does not help.
	ErrForbidden = errors.New("forbidden by the caller's certificate")
)

// errCutOff marks an ErrUnavailable that says this node itself cannot serve
// now: its ring is below MinMembers, or it cannot reach enough members (two
// or more) for the leases it needs. Node.Do retries it only for LeaseDuration (long
// enough for a ring to drop a crashed member), so that a caller (a
// balancer, a client) can go to another node.
var errCutOff = errors.New("this node is cut off from the cluster")

// errOtherRing marks an ErrUnavailable that says a previous owner, alive
// and answering, refused a hand-off because it serves by another ring
// (the gate's hand-off rule, gate.go). A hand-off is not given up on while its sources say so.
var errOtherRing = errors.New("the previous owner serves by another ring")

// errUnconfirmed marks an ErrUnavailable that says a source of a pull or
// fetch resumed after a pause and does not know yet whether it was
// declared dead meanwhile (ownership.unconfirmed): it sends no copy until
// it does. As with errOtherRing, a hand-off waits for it.
var errUnconfirmed = errors.New("the source resumed after a pause and does not know yet whether it was declared dead")

// errRingMoved marks an ErrNotOwner that says a copy a pull or fetch
// brought was not merged: the node installed a newer ring since the pull
// or fetch began (Node.merge). The caller retries by the new ring.
var errRingMoved = fmt.Errorf("%w: the ring changed while copies were being brought in", ErrNotOwner)

// codes maps sentinels to wire codes and back.
var codes = map[string]error{
	"not_found":      ErrNotFound,
	"conflict":       ErrConflict,
	"request_reused": ErrRequestReused,
	"too_large":      ErrTooLarge,
	"invalid":        ErrInvalid,
	"unavailable":    ErrUnavailable,
	"not_owner":      ErrNotOwner,
	"stale":          ErrStale,
	"indeterminate":  ErrIndeterminate,
	"forbidden":      ErrForbidden,
}

// toWire turns an error into a peer.Error carrying its sentinel's code.
func toWire(err error) error {
	for code, sentinel := range codes {
		if errors.Is(err, sentinel) {
			return &peer.Error{Code: code, Message: err.Error()}
		}
	}
	return err
}

// FromWire turns an error from a peer call back into its sentinel, keeping
// the remote message; transport failures (peer.ErrUnreachable) also wrap
// ErrUnavailable. Smart clients use it too.
func FromWire(err error) error {
	var pe *peer.Error
	if errors.As(err, &pe) {
		if sentinel, ok := codes[pe.Code]; ok {
			return fmt.Errorf("%w (remote: %s)", sentinel, pe.Message)
		}
		return err
	}
	if errors.Is(err, peer.ErrUnreachable) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}
