package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/tandem-io/tandem"
)

// Containers a body puts around an attribute value: a PUT or POST body
// {"attributes": {"name": value}} two, a PATCH body {"name": value} one.
// A body is refused before it is decoded if it nests deeper than these
// plus tandem.MaxValueDepth, the one nesting limit.
const (
	sessionBodyWrap = 2
	patchBodyWrap   = 1
)

// checkBody refuses, before anything is decoded, a body that could make its
// decoder allocate beyond a small multiple of its size: a msgpack body must
// be one value whose every claimed length fits in the bytes left
// (tandem.CheckValue); either kind may nest at most tandem.MaxValueDepth
// plus wrap deep; and it may name at most maxAttributes attributes (zero:
// no bound), counting every map at the attributes' level, so that repeating
// "attributes" does not get round it. Each attribute costs a map entry or
// two (a few hundred bytes) whatever its size; the bound on their number
// keeps that in proportion. A body over the attribute bound is refused
// wrapping tandem.ErrTooLarge, as the write itself would be.
func checkBody(raw []byte, asMsgpack bool, wrap, maxAttributes int) error {
	var n int
	if asMsgpack {
		if err := tandem.CheckValue(raw, tandem.MaxValueDepth+wrap); err != nil {
			return fmt.Errorf("msgpack body: %w (attribute values may nest at most %d deep)", err, tandem.MaxValueDepth)
		}
		var fields map[string]bool // a patch's every name is an attribute's
		if wrap == sessionBodyWrap {
			fields = sessionBodyFields
		}
		if err := checkNoExt(msgpack.NewDecoder(bytes.NewReader(raw)), wrap, fields); err != nil {
			return fmt.Errorf("msgpack body: %w", err)
		}
		n = msgpackEntries(raw, wrap)
	} else {
		if err := checkJSONDepth(raw, tandem.MaxValueDepth+wrap); err != nil {
			return err
		}
		if !json.Valid(raw) {
			return nil // the decoder says what is wrong, before it allocates
		}
		c := jsonCursor{b: raw}
		n = c.entries(wrap)
	}
	if maxAttributes > 0 && n > maxAttributes {
		return fmt.Errorf("%w: the body names %d attributes, limit %d", tandem.ErrTooLarge, n, maxAttributes)
	}
	return nil
}

// checkJSONDepth refuses JSON nesting objects and arrays more than max
// deep, without decoding it (brackets inside strings do not count). It
// runs before the decoder, whose own limit is ten thousand levels.
func checkJSONDepth(raw []byte, max int) error {
	depth, inString, escaped := 0, false, false
	for _, c := range raw {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			if depth++; depth > max {
				return fmt.Errorf("JSON body nests deeper than %d (attribute values may nest at most %d deep)", max, tandem.MaxValueDepth)
			}
		case c == '}' || c == ']':
			depth--
		}
	}
	return nil
}

// checkNoExt refuses an extension where a body has structure, in a value
// tandem.CheckValue accepted: the value at the decoder and, in its maps
// and arrays, levels-1 below (attribute values, at levels 0, are kept as
// they are and may hold extensions such as msgpack timestamps). In the
// top-level map only the values of the named fields are checked, when
// fields is not nil (the others are kept raw or ignored). Where the
// decoder expects a map, an array or a string it unwraps an extension and
// takes the length its payload claims: six bytes made it allocate 3 MB,
// fifteen 100 MB. What it cannot read as the body's shape (a name that is
// not a string) it leaves to the decoder to refuse: it stops there, for
// the bytes after it are no longer read where they begin.
func checkNoExt(dec *msgpack.Decoder, levels int, fields map[string]bool) error {
	if err := walkNoExt(dec, levels, fields); err != nil && !errors.Is(err, errNotTheShape) {
		return err
	}
	return nil
}

// errNotTheShape stops walkNoExt where the value is not what a body
// holds: the decoder refuses it with its own error.
var errNotTheShape = errors.New("not a body's shape")

// walkNoExt is checkNoExt's walk. It returns errNotTheShape where it
// cannot read on: carrying on from a name it failed to read, inside an
// array, it read the rest of the body out of step, took a byte of a
// number for a 4-byte binary length and skipped 800 MB of it, allocating
// 1 MB from 17 bytes (found by FuzzDecodeMsgpackBody).
func walkNoExt(dec *msgpack.Decoder, levels int, fields map[string]bool) error {
	if levels == 0 {
		return dec.Skip() // an attribute value: kept as it is
	}
	c, err := dec.PeekCode()
	switch {
	case err != nil:
		return errNotTheShape // CheckValue accepted the whole; the decoder reports the rest
	case msgpcode.IsExt(c):
		return errExtension(c)
	case msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32:
		n, err := dec.DecodeMapLen()
		if err != nil {
			return errNotTheShape
		}
		for range n {
			if c, err := dec.PeekCode(); err == nil && msgpcode.IsExt(c) { // the name
				return errExtension(c)
			}
			name, err := dec.DecodeString()
			if err != nil {
				return errNotTheShape
			}
			below := levels - 1
			if fields != nil && !fields[name] {
				below = 0 // kept raw or ignored by the decoder
			}
			if err := walkNoExt(dec, below, nil); err != nil {
				return err
			}
		}
	case msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32:
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return errNotTheShape
		}
		for range n {
			if err := walkNoExt(dec, levels-1, nil); err != nil {
				return err
			}
		}
	default:
		return dec.Skip()
	}
	return nil
}

// sessionBodyFields are the fields of a session body the decoder decodes
// as strings or maps (sessionBody); the others it keeps raw or ignores.
var sessionBodyFields = map[string]bool{"principal": true, "attributes": true, "idle_timeout": true, "absolute_timeout": true, "id": true}

// errExtension refuses an extension where a body has structure.
func errExtension(c byte) error {
	return fmt.Errorf("%w: an extension (type byte %#02x) where the body has a map, a name or a field; extensions may appear only inside attribute values", tandem.ErrInvalid, c)
}

// msgpackEntries counts the entries of the maps at level of a value that
// tandem.CheckValue accepted: the top-level map's at level 1, those of the
// maps that are its values at level 2. Anything else counts nothing (the
// decoder refuses it).
func msgpackEntries(raw []byte, level int) int {
	dec := msgpack.NewDecoder(bytes.NewReader(raw))
	isMap := func() bool {
		c, err := dec.PeekCode()
		return err == nil && (msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32)
	}
	if !isMap() {
		return 0
	}
	n, err := dec.DecodeMapLen()
	if err != nil || level == 1 {
		return max(n, 0)
	}
	total := 0
	for range n {
		if dec.Skip() != nil { // the key
			return total
		}
		if !isMap() {
			if dec.Skip() != nil {
				return total
			}
			continue
		}
		m, err := dec.DecodeMapLen()
		if err != nil {
			return total
		}
		total += m
		for range 2 * m {
			if dec.Skip() != nil {
				return total
			}
		}
	}
	return total
}

// jsonCursor walks JSON that json.Valid accepted, without decoding it.
type jsonCursor struct {
	b []byte
	i int
}

// entries counts the members of the objects at level: the top-level
// object's at level 1, those of the objects that are its members' values
// at level 2. Anything else counts nothing (the decoder refuses it).
func (c *jsonCursor) entries(level int) int {
	c.space()
	if c.b[c.i] != '{' {
		return 0
	}
	if level == 1 {
		return c.members(c.skip)
	}
	total := 0
	c.members(func() {
		if c.b[c.i] == '{' {
			total += c.members(c.skip)
		} else {
			c.skip()
		}
	})
	return total
}

// members walks the object at i, calling value at each member's value
// (which it must consume), and returns how many members it has.
func (c *jsonCursor) members(value func()) int {
	n := 0
	c.i++ // '{'
	for {
		c.space()
		switch c.b[c.i] {
		case '}':
			c.i++
			return n
		case ',':
			c.i++
			c.space()
		}
		n++
		c.skip() // the name
		c.space()
		c.i++ // ':'
		c.space()
		value()
	}
}

// skip moves past the value at i.
func (c *jsonCursor) skip() {
	switch c.b[c.i] {
	case '"':
		for c.i++; c.b[c.i] != '"'; c.i++ {
			if c.b[c.i] == '\\' {
				c.i++
			}
		}
		c.i++
	case '{', '[':
		depth := 0
		for {
			switch c.b[c.i] {
			case '"':
				c.skip()
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
			}
			c.i++
			if depth == 0 {
				return
			}
		}
	default: // a number or a literal
		for c.i < len(c.b) {
			switch c.b[c.i] {
			case ',', '}', ']', ' ', '\t', '\n', '\r':
				return
			}
			c.i++
		}
	}
}

// space skips white space.
func (c *jsonCursor) space() {
	for c.i < len(c.b) {
		switch c.b[c.i] {
		case ' ', '\t', '\n', '\r':
			c.i++
		default:
			return
		}
	}
}
