package peer

import "fmt"

// MaxDepth is how deeply containers (msgpack arrays and maps) may nest in a
// frame body: ReadFrame refuses a body nested deeper, so that nobody who
// decodes one recursively can be made to exhaust its stack. A scalar is at
// depth 0; a top-level map's values at depth 1.
const MaxDepth = maxDepth

// ValueWrap is the most containers the replication wire puts around a
// session attribute's value: a hand-off reply (and a drain's push request)
// is a map (1) holding an array of sessions (2), each a map (3) holding the
// attributes map (4), whose values are the attributes. Every other frame
// wraps a value in fewer: a replicated write or a read reply in three (the
// request, the session, the attributes), a forwarded op in two (the op, its
// Attributes, Set or Merge).
const ValueWrap = 4

// MaxValueDepth is how deeply an attribute value may nest, so that every
// frame that carries it stays within MaxDepth: 1024 - 4 = 1020. It is the
// one nesting limit of the system: replica's Op.Validate refuses deeper
// values (so Node.Do, the smart client and the middleware do), and the HTTP
// API refuses deeper bodies before it decodes them.
const MaxValueDepth = MaxDepth - ValueWrap

// CheckValue reports whether b holds exactly one well-formed msgpack value
// nested at most maxDepth containers deep (a scalar is at depth 0, the
// elements of an array at depth 1). It checks every claimed length against
// the bytes left before using it and does not recurse, so it allocates at
// most a few KiB however hostile b is; run it before msgpack.Unmarshal on
// untrusted bytes, whose decoder allocates what a header claims.
func CheckValue(b []byte, maxDepth int) error {
	n, err := skipDepth(b, maxDepth)
	if err != nil {
		return fmt.Errorf("malformed msgpack value: %w", err)
	}
	if n != len(b) {
		return fmt.Errorf("malformed msgpack value: %d bytes after the value", len(b)-n)
	}
	return nil
}
