package replica

import (
	"encoding/binary"
	"fmt"
	"maps"
	"slices"

	"github.com/cespare/xxhash/v2"
	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica/peer"
)

// Limits are the bounds a node puts on the sessions it writes as primary
// (Config's MaxSessionBytes, MaxAttributes and MaxAttributeNameBytes, with
// defaults filled in). Attribute values are bounded for every node alike,
// peer.MaxValueDepth deep (Op.Validate).
type Limits struct {
	// MaxSessionBytes bounds a session's encoded size (ErrTooLarge).
	MaxSessionBytes int
	// MaxAttributes bounds how many attributes a session holds
	// (ErrTooLarge).
	MaxAttributes int
	// MaxAttributeNameBytes bounds an attribute's name (ErrInvalid).
	MaxAttributeNameBytes int
}

// checkNames refuses a write naming an attribute longer than the limit.
func checkNames(op *Op, lim limits) error {
	if lim.maxNameBytes <= 0 {
		return nil
	}
	for _, attrs := range []map[string]msgpack.RawMessage{op.Attributes, op.Set, op.Merge} {
		for name := range attrs {
			if len(name) > lim.maxNameBytes {
				return fmt.Errorf("%w: attribute name of %d bytes (%.32q...) exceeds the limit of %d bytes", ErrInvalid, len(name), name, lim.maxNameBytes)
			}
		}
	}
	return nil
}

// checkCount refuses a write that would leave next with more attributes
// than the limit: a put, or a patch that adds attributes (a patch of a
// session stored under a higher limit may still change or remove some).
func checkCount(op *Op, prev, next *Session, lim limits) error {
	n := next.Attributes.Len()
	if lim.maxAttributes <= 0 || n <= lim.maxAttributes {
		return nil
	}
	if op.Kind == OpPatch && prev != nil && n <= prev.Attributes.Len() {
		return nil
	}
	return fmt.Errorf("%w: %s would hold %d attributes, limit %d", ErrTooLarge, op.ID, n, lim.maxAttributes)
}

// opHash hashes what a write op asks for, without its request id: xxhash
// over every other field in a fixed order, each map's entries by sorted
// name and the names it deletes sorted, each string and value prefixed by
// its length. So the same request hashes the same on every node and every
// attempt, however its maps were built, and a nil map or slice hashes as an
// empty one (the wire does not tell them apart). Zero is kept for "no hash"
// (records made before hashes existed).
func opHash(op *Op) uint64 {
	d := xxhash.New()
	var buf [8]byte
	num := func(v uint64) {
		binary.BigEndian.PutUint64(buf[:], v)
		_, _ = d.Write(buf[:])
	}
	str := func(s string) {
		num(uint64(len(s)))
		_, _ = d.WriteString(s)
	}
	flag := func(b bool) {
		if b {
			num(1)
		} else {
			num(0)
		}
	}
	num(uint64(op.Kind))
	str(op.ID)
	flag(op.NoTouch)
	num(op.IfVersion)
	flag(op.IfAbsent)
	str(op.Principal)
	flag(op.SetPrincipal)
	num(uint64(op.IdleTimeout))
	num(uint64(op.AbsoluteTimeout))
	for _, attrs := range []map[string]msgpack.RawMessage{op.Attributes, op.Set, op.Merge} {
		num(uint64(len(attrs)))
		for _, name := range slices.Sorted(maps.Keys(attrs)) {
			str(name)
			num(uint64(len(attrs[name])))
			_, _ = d.Write(attrs[name])
		}
	}
	num(uint64(len(op.Delete)))
	for _, name := range slices.Sorted(slices.Values(op.Delete)) {
		str(name)
	}
	return max(d.Sum64(), 1)
}

// decodeBounded decodes b, one msgpack value from another node, into v
// once its structure has passed peer.CheckValue (every claimed length
// within b, nesting at most peer.MaxDepth): msgpack's decoder allocates
// whatever a header claims, so no untrusted bytes may reach it unchecked.
// peer.ReadFrame checks every frame body as it reads it; the requests that
// carry sessions (decodePartitioned) are checked again here, so that what
// a node stores never rests on how its transport read the bytes. It also
// refuses an extension where v has a map (peer.CheckShape, or the
// decoder of a peer.SelfChecked type as it goes): msgpack's decoder would
// take the length the extension's payload claims. Every request body a
// node decodes goes through it, and any error is ErrInvalid.
//
// msgpack's decoder also panics on some well-formed input it cannot map
// (a nil where a slice holds structs: FuzzDecodeSession found it); such a
// panic is an undecodable request, answered ErrInvalid like any other.
func decodeBounded(b []byte, v any) (err error) {
	if err := peer.CheckValue(b, peer.MaxDepth); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := peer.CheckShape(b, v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: undecodable msgpack: %v", ErrInvalid, r)
		}
	}()
	if err := msgpack.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}
