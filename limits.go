package tandem

import (
	"fmt"

	"github.com/tandem-io/tandem/replica/peer"
)

// MaxValueDepth is how deeply an attribute value may nest (msgpack arrays
// and maps; a scalar is at depth 0): 1020, the peer wire's nesting limit
// (peer.MaxDepth, 1024) less the four containers the deepest frame puts
// around a value. It is the one nesting limit of the system: every
// operation refuses a deeper value with ErrInvalid, and the HTTP API
// refuses deeper bodies before it decodes them, so nothing a node accepts
// can break the wire between nodes.
const MaxValueDepth = peer.MaxValueDepth

// CheckValue reports whether b holds exactly one well-formed msgpack value
// nested at most maxDepth deep, without decoding it: every length the
// value claims is checked against the bytes left before it is used, so it
// allocates next to nothing however hostile b is. Run it before
// msgpack.Unmarshal on untrusted bytes (whose decoder allocates what a
// header claims). The error wraps ErrInvalid.
func CheckValue(b []byte, maxDepth int) error {
	if err := peer.CheckValue(b, maxDepth); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// Limits are the bounds a node puts on the sessions it writes; every one
// answers with an error that names it and changes nothing.
type Limits struct {
	// MaxSessionBytes bounds a session's encoded size (ErrTooLarge);
	// Config.MaxSessionBytes.
	MaxSessionBytes int
	// MaxAttributes bounds how many attributes a session holds
	// (ErrTooLarge); Config.Replica.MaxAttributes, 1024 by default.
	MaxAttributes int
	// MaxAttributeNameBytes bounds an attribute's name (ErrInvalid);
	// Config.Replica.MaxAttributeNameBytes, 256 by default.
	MaxAttributeNameBytes int
	// MaxValueDepth bounds how deeply a value nests (ErrInvalid); the
	// same for every node, MaxValueDepth.
	MaxValueDepth int
}

// Limits returns the bounds this node puts on the sessions it writes as
// their primary, defaults filled in.
func (n *Node) Limits() Limits {
	l := n.replica.Limits()
	return Limits{MaxSessionBytes: l.MaxSessionBytes, MaxAttributes: l.MaxAttributes,
		MaxAttributeNameBytes: l.MaxAttributeNameBytes, MaxValueDepth: MaxValueDepth}
}
