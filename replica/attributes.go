package replica

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/tandem-io/tandem/replica/peer"
)

// Attributes are a session's attributes as they travel and are stored:
// one msgpack map of names to msgpack values, kept encoded. A copy is
// read far more often than it is changed, and most reads only pass the
// attributes on (to a peer, to a client), so a copy keeps them as the
// bytes a frame carries: a read copies them out whole, a replica stores
// the bytes it received, and nothing holds a Go map per copy. A write
// that changes them decodes them (Map), and encodes the result
// (EncodeAttributes). The bytes are never changed in place: a copy shares
// them with every Session made from it.
//
// The zero value (no bytes) is no attributes. Bytes decoded from a peer
// were checked to be a map of string names to whole values
// (DecodeMsgpack); bytes made by EncodeAttributes hold the names sorted,
// so two copies of the same attributes are the same bytes.
type Attributes []byte

// errAttributesShape says bytes are not a map of names to values.
var errAttributesShape = errors.New("attributes are not a msgpack map of string names to values")

// EncodeAttributes encodes m, names sorted, into a slice of exactly its
// size. An empty or nil m is no attributes. A value must be one whole
// msgpack value; an empty value (which msgpack's decoder makes of nil) is
// stored as nil.
func EncodeAttributes(m map[string]msgpack.RawMessage) Attributes {
	if len(m) == 0 {
		return nil
	}
	names := make([]string, 0, len(m))
	size := headerLen(len(m), 15)
	for name, v := range m {
		names = append(names, name)
		size += headerLen(len(name), 31) + len(name) + max(1, len(v))
	}
	slices.Sort(names)
	out := make([]byte, 0, size)
	out = appendMapLen(out, len(names))
	for _, name := range names {
		out = peer.AppendString(out, name)
		if v := m[name]; len(v) > 0 {
			out = append(out, v...)
		} else {
			out = append(out, msgpcode.Nil)
		}
	}
	return Attributes(out)
}

// headerLen is the bytes of the msgpack header of a map or a string of n
// entries or bytes, whose fixed form holds up to fixMax (a map has no
// 8-bit form; a string of up to 255 bytes has one).
func headerLen(n, fixMax int) int {
	switch {
	case n <= fixMax:
		return 1
	case n <= 255 && fixMax == 31:
		return 2
	case n <= 65535:
		return 3
	}
	return 5
}

// appendHeader appends the msgpack header of a map or a string of n
// entries or bytes: the fixed form (fixLow | n) up to fixMax, else the
// 8-bit form (code8, strings only), the 16-bit or the 32-bit one.
func appendHeader(b []byte, n, fixMax int, fixLow, code8, code16, code32 byte) []byte {
	switch {
	case n <= fixMax:
		return append(b, fixLow|byte(n))
	case n <= 255 && code8 != 0:
		return append(b, code8, byte(n))
	case n <= 65535:
		return binary.BigEndian.AppendUint16(append(b, code16), uint16(n))
	}
	return binary.BigEndian.AppendUint32(append(b, code32), uint32(n))
}

// Len returns how many attributes there are, from the map's header.
func (a Attributes) Len() int {
	switch {
	case len(a) == 0:
		return 0
	case msgpcode.IsFixedMap(a[0]):
		return int(a[0] & 0x0f)
	case a[0] == msgpcode.Map16 && len(a) >= 3:
		return int(binary.BigEndian.Uint16(a[1:3]))
	case a[0] == msgpcode.Map32 && len(a) >= 5:
		return int(binary.BigEndian.Uint32(a[1:5]))
	}
	return 0
}

// Range calls f with each attribute's name and encoded value, in the
// order the bytes hold them, until f returns false. The values share a's
// bytes: read them, do not change them. It returns an error if a is not
// a map of names to values.
func (a Attributes) Range(f func(name string, value msgpack.RawMessage) bool) error {
	if len(a) == 0 {
		return nil
	}
	r := bytes.NewReader(a)
	dec := msgpack.GetDecoder()
	dec.Reset(r)
	defer func() {
		dec.Reset(nil) // the pool keeps no reference to a
		msgpack.PutDecoder(dec)
	}()
	n, err := decodeMapLen(dec)
	if err != nil {
		return fmt.Errorf("%w: %v", errAttributesShape, err)
	}
	for range max(n, 0) {
		name, err := attributeName(dec)
		if err != nil {
			return err
		}
		start := len(a) - r.Len()
		if err := dec.Skip(); err != nil {
			return fmt.Errorf("%w: attribute %q: %v", errAttributesShape, name, err)
		}
		end := len(a) - r.Len()
		if !f(name, msgpack.RawMessage(a[start:end:end])) {
			return nil
		}
	}
	if r.Len() != 0 {
		return fmt.Errorf("%w: %d bytes after the map", errAttributesShape, r.Len())
	}
	return nil
}

// attributeName reads an attribute's name: a msgpack string.
func attributeName(dec *msgpack.Decoder) (string, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return "", fmt.Errorf("%w: %v", errAttributesShape, err)
	}
	if !msgpcode.IsString(c) {
		return "", fmt.Errorf("%w: a name of type byte %#02x", errAttributesShape, c)
	}
	name, err := dec.DecodeString()
	if err != nil {
		return "", fmt.Errorf("%w: %v", errAttributesShape, err)
	}
	return name, nil
}

// Map decodes the attributes into a map a write may change. Its values
// share a's bytes: replace them, do not change them in place.
func (a Attributes) Map() (map[string]msgpack.RawMessage, error) {
	out := make(map[string]msgpack.RawMessage, a.Len())
	err := a.Range(func(name string, value msgpack.RawMessage) bool {
		out[name] = value
		return true
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Get returns the encoded value of attribute name, and whether there is
// one.
func (a Attributes) Get(name string) (msgpack.RawMessage, bool) {
	var found msgpack.RawMessage
	_ = a.Range(func(n string, value msgpack.RawMessage) bool {
		if n == name {
			found = value
		}
		return found == nil
	})
	return found, found != nil
}

// DecodesExtensionsSafely marks Attributes as peer.SelfChecked: they are
// taken whole and then walked with decodeMapLen, which refuses an
// extension where the map should be.
func (*Attributes) DecodesExtensionsSafely() {}

// EncodeMsgpack writes the attributes as they are: an empty map when
// there are none.
func (a Attributes) EncodeMsgpack(enc *msgpack.Encoder) error {
	if len(a) == 0 {
		return enc.EncodeMapLen(0)
	}
	return msgpack.RawMessage(a).EncodeMsgpack(enc)
}

// DecodeMsgpack takes the next value whole, as received, and checks it
// is a map of string names to whole values (nil and an empty map are no
// attributes). The bytes are the decoder's own copy, not the frame's,
// copied again into a slice of their size when the decoder's buffer grew
// well past them, so a stored copy holds nothing of the frame it came in
// and little spare room.
func (a *Attributes) DecodeMsgpack(dec *msgpack.Decoder) error {
	raw, err := dec.DecodeRaw()
	if err != nil {
		return err
	}
	if len(raw) == 0 || raw[0] == msgpcode.Nil || (len(raw) == 1 && msgpcode.IsFixedMap(raw[0])) {
		*a = nil
		return nil
	}
	got := Attributes(raw)
	if cap(raw) > len(raw)+len(raw)/8 { // the decoder's buffer grew past them: keep a slice of their size
		got = Attributes(slices.Clip(bytes.Clone(raw)))
	}
	if err := got.Range(func(string, msgpack.RawMessage) bool { return true }); err != nil {
		return err
	}
	*a = got
	return nil
}
