package replica

import "time"

// Peer methods: the requests nodes send each other.
const (
	// methodOp forwards an Op to the session's primary.
	methodOp = "op"
	// methodRead reads a stored copy from an owner: the buddy when the
	// primary cannot be reached, or a previous owner during a hand-off.
	methodRead = "read"
	// methodReplicate carries a primary's write to its buddy.
	methodReplicate = "replicate"
	// methodTouch carries a batch of last-access times to buddies.
	methodTouch = "touch"
	// methodExpire tells a buddy which versions its primary expired.
	methodExpire = "expire"
	// methodReconcile tells a node that reappeared to reconcile with the
	// sender.
	methodReconcile = "reconcile"
	// methodPush hands a leaving node's copies to an owner.
	methodPush = "push"
	// methodPrincipal asks a node for a principal's sessions.
	methodPrincipal = "principal"
	// methodPull asks a previous owner for a partition's copies.
	methodPull = "pull"
)

// opReply answers methodOp: the session after the op (nil for deletes and
// touches).
type opReply struct {
	Session *Session `msgpack:"s"`
}

// readRequest asks an owner for its copy of one session.
type readRequest struct {
	Partition int    `msgpack:"p"`
	ID        string `msgpack:"id"`
	// Raw includes tombstones and expired copies, for a new owner that
	// needs the latest version whatever it is.
	Raw bool `msgpack:"raw,omitempty"`
	// Ring, when set, is the fingerprint of the requester's ring: a new
	// owner fetching from a previous owner is answered only once both
	// serve by the same ring (see handover.go).
	Ring uint64 `msgpack:"ring,omitempty"`
}

// readReply answers methodRead; Session is nil when the node holds no copy.
// For raw reads, Holds says whether the node holds the partition at all
// (owns it now, owned it under its previous ring, or has copies of it), so
// that "no copy" from a node that never held the partition is not taken
// for "no such session".
//
// OtherRing answers a fetch that carried a ring (readRequest.Ring) other
// than the receiver's: the receiver hands nothing over until both serve by
// the same ring.
type readReply struct {
	Session   *Session `msgpack:"s"`
	Holds     bool     `msgpack:"h,omitempty"`
	OtherRing bool     `msgpack:"or,omitempty"`
}

// replicateRequest is one write, sent by the primary to the buddy. It
// carries the whole session, so a buddy that missed earlier versions still
// ends with the latest.
type replicateRequest struct {
	From      string   `msgpack:"f"`
	Epoch     uint64   `msgpack:"e"`
	Partition int      `msgpack:"p"`
	Session   *Session `msgpack:"s"`
}

// touchItem is one session's last access.
type touchItem struct {
	Partition int       `msgpack:"p"`
	ID        string    `msgpack:"id"`
	At        time.Time `msgpack:"at"`
}

// touchRequest is a batch of last-access times for a buddy.
type touchRequest struct {
	Items []touchItem `msgpack:"i"`
}

// pullRequest asks for a partition's copies with ids after After, in id
// order, up to about MaxBytes. Ring, when set, is the fingerprint of the
// requester's ring, as in readRequest.
type pullRequest struct {
	Partition int    `msgpack:"p"`
	After     string `msgpack:"a"`
	MaxBytes  int    `msgpack:"mb"`
	Ring      uint64 `msgpack:"ring,omitempty"`
}

// pullReply is one batch of a pull; More says another batch follows, and
// Holds whether the node holds the partition at all, and OtherRing that it
// refused because the rings differ (see readReply).
type pullReply struct {
	Sessions  []*Session `msgpack:"s"`
	More      bool       `msgpack:"m,omitempty"`
	Holds     bool       `msgpack:"h,omitempty"`
	OtherRing bool       `msgpack:"or,omitempty"`
}

// expireItem names one expired version of a session.
type expireItem struct {
	Partition int    `msgpack:"p"`
	ID        string `msgpack:"id"`
	Version   uint64 `msgpack:"v"`
}

// expireRequest is a batch of expired versions for a buddy.
type expireRequest struct {
	Items []expireItem `msgpack:"i"`
}

// empty answers requests that return nothing.
type empty struct{}
