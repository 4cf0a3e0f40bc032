package replica

import (
	"slices"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// EncodeMsgpack encodes an op as msgpack's reflection does from its
// fields' tags (a map; the omitempty fields left out when empty), without
// reflection: every request to a primary carries an op, and encoding one
// by reflection was a twentieth of a client's time. The bytes decode to
// the same op (TestOpCodecMatchesReflection).
func (op *Op) EncodeMsgpack(enc *msgpack.Encoder) error {
	if op == nil {
		return enc.EncodeNil()
	}
	present := [...]bool{op.RequestID != "", op.FirstSent != 0, op.NoTouch, op.NotAfter != 0, op.IfVersion != 0,
		op.IfAbsent, op.Principal != "", op.SetPrincipal, len(op.Attributes) > 0, op.IdleTimeout != 0,
		op.AbsoluteTimeout != 0, len(op.Set) > 0, len(op.Merge) > 0, len(op.Delete) > 0}
	fields := 2 // k, id: always there
	for _, p := range present {
		fields += btoi(p)
	}
	w := fieldWriter{enc: enc}
	w.mapLen(fields)
	w.uint("k", uint64(op.Kind))
	w.str("id", op.ID)
	if op.RequestID != "" {
		w.str("rid", op.RequestID)
	}
	w.int("fs", op.FirstSent)
	w.bool("nt", op.NoTouch)
	w.int("na", op.NotAfter)
	if op.IfVersion != 0 {
		w.uint("iv", op.IfVersion)
	}
	w.bool("ia", op.IfAbsent)
	if op.Principal != "" {
		w.str("pr", op.Principal)
	}
	w.bool("sp", op.SetPrincipal)
	w.rawMap("at", op.Attributes)
	w.int("it", int64(op.IdleTimeout))
	w.int("ab", int64(op.AbsoluteTimeout))
	w.rawMap("set", op.Set)
	w.rawMap("mrg", op.Merge)
	if len(op.Delete) > 0 {
		w.key("del")
		w.do(enc.EncodeArrayLen(len(op.Delete)))
		for _, name := range op.Delete {
			w.do(enc.EncodeString(name))
		}
	}
	return w.err
}

// int writes a signed integer field, left out when zero (omitempty).
func (w *fieldWriter) int(tag string, v int64) {
	if v != 0 {
		w.key(tag)
		w.do(w.enc.EncodeInt(v))
	}
}

// bool writes a flag, left out when false (omitempty).
func (w *fieldWriter) bool(tag string, v bool) {
	if v {
		w.key(tag)
		w.do(w.enc.EncodeBool(true))
	}
}

// rawMap writes a map of names to encoded values, names sorted (as
// msgpack's reflection does when asked to sort, so equal maps are equal
// bytes), left out when empty (omitempty). A value that is no bytes (a
// nil msgpack's decoder dropped) is written as nil.
func (w *fieldWriter) rawMap(tag string, m map[string]msgpack.RawMessage) {
	if len(m) == 0 {
		return
	}
	w.key(tag)
	w.mapLen(len(m))
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		w.do(w.enc.EncodeString(name))
		if v := m[name]; len(v) > 0 {
			w.do(v.EncodeMsgpack(w.enc))
		} else {
			w.do(w.enc.EncodeNil())
		}
	}
}

// opTags are Op's field tags in the order of its fields, as an array
// encoding holds them.
var opTags = [...]string{"k", "id", "rid", "fs", "nt", "na", "iv", "ia", "pr", "sp", "at", "it", "ab", "set", "mrg", "del"}

// DecodeMsgpack decodes an op as msgpack's reflection decodes one from its
// fields' tags (decodeFields), without reflection, keeping nil attribute
// values as nil (msgpack's reflection drops them to no bytes, which are
// not a msgpack value). TestOpCodecMatchesReflection and
// FuzzOpDecodingMatchesReflection hold it to reflection's result. Like
// msgpack's decoder it trusts lengths: decode untrusted bytes behind
// decodeBounded.
func (op *Op) DecodeMsgpack(dec *msgpack.Decoder) error {
	*op = Op{}
	return decodeFields(dec, opTags[:], op)
}

// DecodesExtensionsSafely marks Op as peer.SelfChecked: its decoder
// refuses an extension wherever it expects a map (decodeMapLen).
func (*Op) DecodesExtensionsSafely() {}

// decodeField decodes the value of the field tagged tag, not nil.
func (op *Op) decodeField(dec *msgpack.Decoder, tag string) (err error) {
	var d int64
	switch tag {
	case "k":
		var k uint8
		k, err = dec.DecodeUint8()
		op.Kind = OpKind(k)
	case "id":
		op.ID, err = dec.DecodeString()
	case "rid":
		op.RequestID, err = dec.DecodeString()
	case "fs":
		op.FirstSent, err = dec.DecodeInt64()
	case "nt":
		op.NoTouch, err = dec.DecodeBool()
	case "na":
		op.NotAfter, err = dec.DecodeInt64()
	case "iv":
		op.IfVersion, err = dec.DecodeUint64()
	case "ia":
		op.IfAbsent, err = dec.DecodeBool()
	case "pr":
		op.Principal, err = dec.DecodeString()
	case "sp":
		op.SetPrincipal, err = dec.DecodeBool()
	case "at":
		op.Attributes, err = decodeRawMap(dec)
	case "it":
		d, err = dec.DecodeInt64()
		op.IdleTimeout = time.Duration(d)
	case "ab":
		d, err = dec.DecodeInt64()
		op.AbsoluteTimeout = time.Duration(d)
	case "set":
		op.Set, err = decodeRawMap(dec)
	case "mrg":
		op.Merge, err = decodeRawMap(dec)
	case "del":
		op.Delete, err = decodeStrings(dec)
	default:
		err = dec.Skip()
	}
	return err
}

// decodeRawMap decodes a map of names to encoded values, each taken
// whole (a nil value as nil): an empty map for an empty one, as
// msgpack's reflection makes.
func decodeRawMap(dec *msgpack.Decoder) (map[string]msgpack.RawMessage, error) {
	n, err := decodeMapLen(dec)
	if err != nil || n < 0 {
		return nil, err
	}
	m := make(map[string]msgpack.RawMessage, n)
	for range n {
		name, err := dec.DecodeString()
		if err != nil {
			return nil, err
		}
		v, err := dec.DecodeRaw()
		if err != nil {
			return nil, err
		}
		m[name] = v
	}
	return m, nil
}

// decodeStrings decodes an array of strings: an empty slice for an empty
// one, as msgpack's reflection makes.
func decodeStrings(dec *msgpack.Decoder) ([]string, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	out := make([]string, 0, n)
	for range n {
		s, err := dec.DecodeString()
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}
