package replica

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/tandem-io/tandem/replica/peer"
)

// EncodeMsgpack encodes a session as msgpack's reflection does from its
// fields' tags (a map, fields in their order, omitempty ones left out
// when empty), with integers in their smallest form, as peer frames ask
// (peer's frame encoder uses compact integers), but without reflection:
// every read and every replica encodes a session, and that was the
// largest share of a node's time spent encoding replies
// (docs/BENCHMARKS.md, the profiles). The bytes decode to the same
// session (TestSessionEncodingMatchesReflection). They are
// AppendMsgpack's, written to the encoder's writer whole.
func (s *Session) EncodeMsgpack(enc *msgpack.Encoder) error {
	if s == nil {
		return enc.EncodeNil()
	}
	scratch := encodeScratch.Get().(*[]byte)
	b := s.AppendMsgpack((*scratch)[:0])
	_, err := enc.Writer().Write(b)
	if cap(b) <= maxScratch {
		*scratch = b[:0]
		encodeScratch.Put(scratch)
	}
	return err
}

// encodeScratch holds the buffers EncodeMsgpack appends a session to
// before writing it; one larger than maxScratch is left to the garbage
// collector.
var encodeScratch = sync.Pool{New: func() any { return new([]byte) }}

// maxScratch is the largest buffer kept in encodeScratch.
const maxScratch = 64 << 10

// AppendMsgpack appends the session's msgpack encoding (EncodeMsgpack's
// bytes; nil for a nil session) to b, without msgpack's Encoder. A frame
// body that is a session, or holds one (OpReply), is appended so
// (peer.Appender): a read's reply costs the copy of its attributes'
// bytes and little more.
func (s *Session) AppendMsgpack(b []byte) []byte {
	if s == nil {
		return append(b, msgpcode.Nil)
	}
	fields := 7 // id, v, c, la, it, dl, hlc: always there
	for _, present := range [...]bool{s.Principal != "", len(s.Attributes) > 0, s.Writer != "", len(s.Recent) > 0, s.Deleted, s.Gen != 0, s.Forgot != 0} {
		if present {
			fields++
		}
	}
	b = slices.Grow(b, len(s.Attributes)+len(s.ID)+len(s.Principal)+len(s.Writer)+96+48*len(s.Recent))
	b = appendMapLen(b, fields)
	b = appendStrField(b, "id", s.ID)
	if s.Principal != "" {
		b = appendStrField(b, "pr", s.Principal)
	}
	if len(s.Attributes) > 0 {
		b = peer.AppendString(b, "at")
		b = append(b, s.Attributes...)
	}
	b = appendUintField(b, "v", s.Version)
	b = appendTimeField(b, "c", s.Created)
	b = appendTimeField(b, "la", s.LastAccess)
	b = appendInt(peer.AppendString(b, "it"), int64(s.IdleTimeout))
	b = appendTimeField(b, "dl", s.Deadline)
	b = appendUintField(b, "hlc", s.Stamp)
	if s.Writer != "" {
		b = appendStrField(b, "w", s.Writer)
	}
	if len(s.Recent) > 0 {
		b = appendArrayLen(peer.AppendString(b, "rq"), len(s.Recent))
		for _, a := range s.Recent {
			b = appendMapLen(b, 2+btoi(a.Hash != 0)+btoi(a.At != 0))
			b = appendStrField(b, "r", a.Request)
			b = appendUintField(b, "v", a.Version)
			if a.Hash != 0 {
				b = appendUintField(b, "h", a.Hash)
			}
			if a.At != 0 {
				b = appendUintField(b, "at", a.At)
			}
		}
	}
	if s.Deleted {
		b = append(peer.AppendString(b, "del"), msgpcode.True)
	}
	if s.Gen != 0 {
		b = appendUintField(b, "gn", s.Gen)
	}
	if s.Forgot != 0 {
		b = appendUintField(b, "fg", s.Forgot)
	}
	return b
}

// AppendMsgpack appends the reply's msgpack encoding, as msgpack's
// reflection encodes an OpReply (a map of its one field, the session
// or nil), to b: a primary answers every op with one (peer.Appender).
func (r OpReply) AppendMsgpack(b []byte) []byte {
	b = append(b, msgpcode.FixedMapLow|1)
	b = peer.AppendString(b, "s")
	return r.Session.AppendMsgpack(b)
}

// AppendMsgpack appends the replicated write's msgpack encoding, as
// msgpack's reflection encodes a replicateRequest (a map of its fields,
// the empty floor and confirmations left out), to b: a primary sends one
// for every write (peer.Appender).
func (r replicateRequest) AppendMsgpack(b []byte) []byte {
	b = appendMapLen(b, 4+btoi(r.Floor != 0)+btoi(len(r.Confirmed) > 0))
	b = appendStrField(b, "f", r.From)
	b = appendUintField(b, "e", r.Epoch)
	b = appendInt(peer.AppendString(b, "p"), int64(r.Partition))
	b = r.Session.AppendMsgpack(peer.AppendString(b, "s"))
	if r.Floor != 0 {
		b = appendUintField(b, "fl", r.Floor)
	}
	if len(r.Confirmed) > 0 {
		b = appendArrayLen(peer.AppendString(b, "c"), len(r.Confirmed))
		for _, c := range r.Confirmed {
			b = appendMapLen(b, 3)
			b = appendInt(peer.AppendString(b, "p"), int64(c.Partition))
			b = appendStrField(b, "id", c.ID)
			b = appendMapLen(peer.AppendString(b, "m"), 2+btoi(c.Mark.Writer != ""))
			b = appendUintField(b, "v", c.Mark.Version)
			b = appendUintField(b, "hlc", c.Mark.Stamp)
			if c.Mark.Writer != "" {
				b = appendStrField(b, "w", c.Mark.Writer)
			}
		}
	}
	return b
}

// The appenders below write a value as msgpack's Encoder writes it, in
// the fewest bytes its calls (EncodeUint, EncodeInt, EncodeString,
// EncodeTime, EncodeMapLen, EncodeArrayLen) use.

// appendStrField appends a struct field's tag and its string value.
func appendStrField(b []byte, tag, v string) []byte {
	return peer.AppendString(peer.AppendString(b, tag), v)
}

// appendUintField appends a struct field's tag and its unsigned value.
func appendUintField(b []byte, tag string, v uint64) []byte {
	return peer.AppendUint(peer.AppendString(b, tag), v)
}

// appendTimeField appends a struct field's tag and its time.
func appendTimeField(b []byte, tag string, v time.Time) []byte {
	return appendTime(peer.AppendString(b, tag), v)
}

// appendMapLen appends a map's header.
func appendMapLen(b []byte, n int) []byte {
	return appendHeader(b, n, 15, msgpcode.FixedMapLow, 0, msgpcode.Map16, msgpcode.Map32)
}

// appendArrayLen appends an array's header.
func appendArrayLen(b []byte, n int) []byte {
	return appendHeader(b, n, 15, msgpcode.FixedArrayLow, 0, msgpcode.Array16, msgpcode.Array32)
}

// appendInt appends n as EncodeInt does.
func appendInt(b []byte, n int64) []byte {
	switch {
	case n >= 0:
		return peer.AppendUint(b, uint64(n))
	case n >= -32:
		return append(b, byte(n)) // a negative fixnum
	case n >= math.MinInt8:
		return append(b, msgpcode.Int8, byte(n))
	case n >= math.MinInt16:
		return binary.BigEndian.AppendUint16(append(b, msgpcode.Int16), uint16(n))
	case n >= math.MinInt32:
		return binary.BigEndian.AppendUint32(append(b, msgpcode.Int32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, msgpcode.Int64), uint64(n))
}

// appendTime appends t as EncodeTime does: msgpack's timestamp extension
// (type -1) in its 4-, 8- or 12-byte form, the smallest that holds it.
func appendTime(b []byte, t time.Time) []byte {
	secs := uint64(t.Unix())
	if secs>>34 == 0 {
		data := uint64(t.Nanosecond())<<34 | secs
		if data&0xffffffff00000000 == 0 {
			return binary.BigEndian.AppendUint32(append(b, msgpcode.FixExt4, 0xff), uint32(data))
		}
		return binary.BigEndian.AppendUint64(append(b, msgpcode.FixExt8, 0xff), data)
	}
	b = binary.BigEndian.AppendUint32(append(b, msgpcode.Ext8, 12, 0xff), uint32(t.Nanosecond()))
	return binary.BigEndian.AppendUint64(b, secs)
}

// decodeTime decodes what appendTime writes, and accepts only what msgpack's
// reflection decoder accepts for a time.Time field: the timestamp extension
// of type -1 in its 4-, 8- or 12-byte form. (Decoder.DecodeTime would also
// take extension type 13, a string or an array.)
func decodeTime(dec *msgpack.Decoder) (time.Time, error) {
	id, n, err := dec.DecodeExtHeader()
	if err != nil {
		return time.Time{}, err
	}
	if id != -1 {
		return time.Time{}, fmt.Errorf("msgpack: got ext type=%d, wanted -1", id)
	}
	if n != 4 && n != 8 && n != 12 {
		return time.Time{}, fmt.Errorf("msgpack: invalid ext len=%d decoding time", n)
	}
	var buf [12]byte
	if err := dec.ReadFull(buf[:n]); err != nil {
		return time.Time{}, err
	}
	var t time.Time
	switch n {
	case 4:
		t = time.Unix(int64(binary.BigEndian.Uint32(buf[:4])), 0)
	case 8:
		data := binary.BigEndian.Uint64(buf[:8])
		t = time.Unix(int64(data&0x00000003ffffffff), int64(data>>34))
	case 12:
		t = time.Unix(int64(binary.BigEndian.Uint64(buf[4:12])), int64(binary.BigEndian.Uint32(buf[:4])))
	}
	if t.IsZero() {
		// The zero time has no zone; reflection returns it in UTC.
		return t.UTC(), nil
	}
	return t, nil
}

// DecodeMsgpack decodes a session as msgpack's reflection decodes one from
// its fields' tags, without reflection: a map of field names (unknown
// ones skipped, a nil value leaving its field zero), an array of the
// fields in order, or nil. Every
// replicated write and every reply to a client decodes a session, and
// reflection was half of decoding one. TestSessionDecodingMatchesReflection
// and FuzzSessionDecodingMatchesReflection hold it to reflection's result.
// Like msgpack's decoder it trusts lengths: decode untrusted bytes behind
// decodeBounded.
func (s *Session) DecodeMsgpack(dec *msgpack.Decoder) error {
	*s = Session{}
	return decodeFields(dec, sessionTags[:], s)
}

// sessionTags are Session's field tags in the order of its fields, as an
// array encoding holds them.
var sessionTags = [...]string{"id", "pr", "at", "v", "c", "la", "it", "dl", "hlc", "w", "rq", "del", "gn", "fg"}

// appliedTags are Applied's field tags in the order of its fields.
var appliedTags = [...]string{"r", "v", "h", "at"}

// fieldDecoder is a struct DecodeMsgpack decodes field by field
// (decodeFields).
type fieldDecoder interface {
	// decodeField decodes the value of the field tagged tag, not nil; an
	// unknown field's tag is "".
	decodeField(dec *msgpack.Decoder, tag string) error
}

// decodeFields decodes a struct as msgpack's reflection does: a map of
// field names, or an array of exactly the fields in order (tags; an
// empty array is the zero struct), or nil.
// Each value not nil goes to into.decodeField; a nil value leaves its
// field zero. Names are read into a buffer and matched against tags, so
// decoding a name allocates nothing.
func decodeFields(dec *msgpack.Decoder, tags []string, into fieldDecoder) error {
	c, err := dec.PeekCode()
	if err != nil {
		return err
	}
	asArray := msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32
	var n int
	if asArray {
		n, err = dec.DecodeArrayLen()
	} else {
		n, err = decodeMapLen(dec)
	}
	if err != nil {
		return err
	}
	if asArray && n > 0 && n != len(tags) {
		return fmt.Errorf("msgpack: an array of %d fields for a struct of %d", n, len(tags))
	}
	var buf [8]byte // longer than every tag
	for i := range max(n, 0) {
		var tag string
		if asArray {
			tag = tags[i]
		} else if tag, err = fieldTag(dec, tags, buf[:]); err != nil {
			return err
		}
		if isNil, err := skipNil(dec); err != nil || isNil {
			if err != nil {
				return err
			}
			continue
		}
		if err := into.decodeField(dec, tag); err != nil {
			return fmt.Errorf("msgpack: field %q: %w", tag, err)
		}
	}
	return nil
}

// fieldTag reads a field's name (a string, or bytes, as msgpack's
// reflection reads one) and returns the tag among tags it names, or ""
// for none. buf holds the name when it is no longer than buf; a longer
// one names no tag.
func fieldTag(dec *msgpack.Decoder, tags []string, buf []byte) (string, error) {
	n, err := dec.DecodeBytesLen()
	if err != nil || n <= 0 {
		return "", err
	}
	if n > len(buf) { // longer than every tag: read past it
		for n > 0 {
			chunk := min(n, len(buf))
			if err := dec.ReadFull(buf[:chunk]); err != nil {
				return "", err
			}
			n -= chunk
		}
		return "", nil
	}
	if err := dec.ReadFull(buf[:n]); err != nil {
		return "", err
	}
	for _, tag := range tags {
		if string(buf[:n]) == tag {
			return tag, nil
		}
	}
	return "", nil
}

// decodeField decodes the value of the field tagged tag, not nil.
func (s *Session) decodeField(dec *msgpack.Decoder, tag string) (err error) {
	switch tag {
	case "id":
		s.ID, err = dec.DecodeString()
	case "pr":
		s.Principal, err = dec.DecodeString()
	case "at":
		err = s.Attributes.DecodeMsgpack(dec)
	case "v":
		s.Version, err = dec.DecodeUint64()
	case "c":
		s.Created, err = decodeTime(dec)
	case "la":
		s.LastAccess, err = decodeTime(dec)
	case "it":
		var d int64
		d, err = dec.DecodeInt64()
		s.IdleTimeout = time.Duration(d)
	case "dl":
		s.Deadline, err = decodeTime(dec)
	case "hlc":
		s.Stamp, err = dec.DecodeUint64()
	case "w":
		s.Writer, err = dec.DecodeString()
	case "rq":
		s.Recent, err = decodeApplied(dec)
	case "del":
		s.Deleted, err = dec.DecodeBool()
	case "gn":
		s.Gen, err = dec.DecodeUint64()
	case "fg":
		s.Forgot, err = dec.DecodeUint64()
	default:
		err = dec.Skip()
	}
	return err
}

// decodeApplied decodes a session's record of recent requests: an array
// of Applied structs, or nil.
func decodeApplied(dec *msgpack.Decoder) ([]Applied, error) {
	n, err := dec.DecodeArrayLen()
	if err != nil || n < 0 {
		return nil, err
	}
	out := make([]Applied, n)
	for i := range out {
		if err := decodeFields(dec, appliedTags[:], &out[i]); err != nil {
			return nil, fmt.Errorf("request record %d: %w", i, err)
		}
	}
	return out, nil
}

// decodeField decodes the value of the field tagged tag, not nil.
func (a *Applied) decodeField(dec *msgpack.Decoder, tag string) (err error) {
	switch tag {
	case "r":
		a.Request, err = dec.DecodeString()
	case "v":
		a.Version, err = dec.DecodeUint64()
	case "h":
		a.Hash, err = dec.DecodeUint64()
	case "at":
		a.At, err = dec.DecodeUint64()
	default:
		err = dec.Skip()
	}
	return err
}

// decodeMapLen reads a map's header, as msgpack's DecodeMapLen does, but
// refuses an extension where the map should be: DecodeMapLen unwraps one
// and takes the length its payload claims, which CheckValue does not
// bound (twenty bytes claiming a hundred million entries). With it the
// decoders here are peer.SelfChecked.
func decodeMapLen(dec *msgpack.Decoder) (int, error) {
	c, err := dec.PeekCode()
	if err != nil {
		return 0, err
	}
	if msgpcode.IsExt(c) {
		return 0, fmt.Errorf("msgpack: an extension (type byte %#02x) where a map is expected", c)
	}
	return dec.DecodeMapLen()
}

// DecodesExtensionsSafely marks Session as peer.SelfChecked: its decoder
// refuses an extension wherever it expects a map (decodeMapLen).
func (*Session) DecodesExtensionsSafely() {}

// skipNil consumes a nil value, reporting whether there was one.
func skipNil(dec *msgpack.Decoder) (bool, error) {
	c, err := dec.PeekCode()
	if err != nil || c != msgpcode.Nil {
		return false, err
	}
	return true, dec.DecodeNil()
}

// fieldWriter writes a struct's fields to an encoder and keeps the first
// error.
type fieldWriter struct {
	enc *msgpack.Encoder
	err error
}

func (w *fieldWriter) do(err error) {
	if w.err == nil {
		w.err = err
	}
}

func (w *fieldWriter) mapLen(n int)   { w.do(w.enc.EncodeMapLen(n)) }
func (w *fieldWriter) key(tag string) { w.do(w.enc.EncodeString(tag)) }

func (w *fieldWriter) str(tag, v string) {
	w.key(tag)
	w.do(w.enc.EncodeString(v))
}

func (w *fieldWriter) uint(tag string, v uint64) {
	w.key(tag)
	w.do(w.enc.EncodeUint(v))
}

// btoi is 1 for true, 0 for false.
func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// replyTags are OpReply's field tags in the order of its fields.
var replyTags = [...]string{"s"}

// DecodeMsgpack decodes a reply as msgpack's reflection does
// (decodeFields): every answer to an op, at a client or a forwarding
// node, is one.
func (r *OpReply) DecodeMsgpack(dec *msgpack.Decoder) error {
	*r = OpReply{}
	return decodeFields(dec, replyTags[:], r)
}

// DecodesExtensionsSafely marks OpReply as peer.SelfChecked.
func (*OpReply) DecodesExtensionsSafely() {}

// decodeField decodes the value of the field tagged tag, not nil.
func (r *OpReply) decodeField(dec *msgpack.Decoder, tag string) error {
	if tag != "s" {
		return dec.Skip()
	}
	r.Session = new(Session)
	return r.Session.DecodeMsgpack(dec)
}

// replicateTags are replicateRequest's field tags in the order of its
// fields.
var replicateTags = [...]string{"f", "e", "p", "s", "fl", "c"}

// DecodeMsgpack decodes a replicated write as msgpack's reflection does
// (decodeFields): the buddy decodes one for every write.
func (r *replicateRequest) DecodeMsgpack(dec *msgpack.Decoder) error {
	*r = replicateRequest{}
	return decodeFields(dec, replicateTags[:], r)
}

// DecodesExtensionsSafely marks replicateRequest as peer.SelfChecked.
func (*replicateRequest) DecodesExtensionsSafely() {}

// decodeField decodes the value of the field tagged tag, not nil.
func (r *replicateRequest) decodeField(dec *msgpack.Decoder, tag string) (err error) {
	switch tag {
	case "f":
		r.From, err = dec.DecodeString()
	case "e":
		r.Epoch, err = dec.DecodeUint64()
	case "p":
		r.Partition, err = dec.DecodeInt()
	case "s":
		r.Session = new(Session)
		err = r.Session.DecodeMsgpack(dec)
	case "fl":
		r.Floor, err = dec.DecodeUint64()
	case "c":
		err = dec.Decode(&r.Confirmed)
	default:
		err = dec.Skip()
	}
	return err
}
