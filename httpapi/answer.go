package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"math"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/tandem-io/tandem"
)

// A session answer is written straight from the session: its attributes'
// msgpack bytes are copied into a msgpack answer as they are, and
// transcoded into a JSON answer without decoding them into Go values
// first. The bytes are those the reflective encoders make of sessionView
// (writeSessionView), which stays the answer for anything the direct
// writers do not take on (appendSessionJSON says what); the attributes of
// a msgpack answer are in name order, where the reflective encoder wrote
// them in the map's random order.

// answerBufs holds the buffers session answers are built in, up to
// maxPooledAnswer bytes each: a buffer that grew past it for a large
// session is left to the collector rather than kept.
var answerBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledAnswer is the largest buffer answerBufs keeps.
const maxPooledAnswer = 64 << 10

// writeSessionDirect answers with s as writeSessionView does, without
// reflection, and reports whether it could: false when appendSessionJSON
// or appendSessionMsgpack could not write s, having written nothing to w.
func writeSessionDirect(w http.ResponseWriter, r *http.Request, status int, s *tandem.Session) bool {
	buf := answerBufs.Get().(*bytes.Buffer)
	defer func() {
		if buf.Cap() <= maxPooledAnswer {
			answerBufs.Put(buf)
		}
	}()
	buf.Reset()
	ct, ok := contentJSON, false
	if wantsMsgpack(r) {
		ct, ok = contentMsgpack, appendSessionMsgpack(buf, s)
	} else {
		var b []byte
		b, ok = appendSessionJSON(buf.AvailableBuffer(), s)
		buf.Write(b)
	}
	if !ok {
		return false
	}
	h := w.Header()
	h.Set("ETag", etag(s.Version))
	h.Set("Content-Type", ct)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
	return true
}

// etag is the ETag of a session at version v.
func etag(v uint64) string {
	var b [24]byte
	return string(append(strconv.AppendUint(append(b[:0], '"'), v, 10), '"'))
}

// appendSessionJSON appends the JSON answer of s to b: the bytes
// encoding/json makes of its sessionView. It reports false when it cannot
// make them so, for the reflective path to answer (and fail, where it
// fails): a time outside years 0–9999, or an attribute appendJSONOf does
// not take.
func appendSessionJSON(b []byte, s *tandem.Session) ([]byte, bool) {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, s.ID)
	b = append(b, `,"principal":`...)
	b = appendJSONString(b, s.Principal)
	b = append(b, `,"attributes":{`...)
	names := sortedNames(s.Attributes)
	for i, name := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, name)
		b = append(b, ':')
		var rest []byte
		var ok bool
		if b, rest, ok = appendJSONOf(b, s.Attributes[name]); !ok || len(rest) > 0 {
			return b, false
		}
	}
	b = append(b, `},"version":`...)
	b = strconv.AppendUint(b, s.Version, 10)
	var ok bool
	b = append(b, `,"created_at":`...)
	if b, ok = appendJSONTime(b, s.Created.UTC()); !ok {
		return b, false
	}
	b = append(b, `,"last_access_at":`...)
	if b, ok = appendJSONTime(b, s.LastAccess.UTC()); !ok {
		return b, false
	}
	b = append(b, `,"expires_at":`...)
	if at := s.ExpiresAt(); at.IsZero() {
		b = append(b, "null"...)
	} else if b, ok = appendJSONTime(b, at.UTC()); !ok {
		return b, false
	}
	return append(b, '}'), true
}

// sortedNames returns the attribute names of m in byte order, as
// encoding/json writes a map's keys.
func sortedNames(m map[string]msgpack.RawMessage) []string {
	names := make([]string, 0, len(m))
	for name := range m {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// appendJSONTime appends t as time.Time's MarshalJSON does, or reports
// false for a year it refuses.
func appendJSONTime(b []byte, t time.Time) ([]byte, bool) {
	if y := t.Year(); y < 0 || y > 9999 {
		return b, false
	}
	b = append(b, '"')
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b, '"'), true
}

// maxAnswerDepth bounds the nesting appendJSONOf follows; the write path
// refuses values nested deeper than tandem.MaxValueDepth.
const maxAnswerDepth = tandem.MaxValueDepth + 1

// appendJSONOf appends to b the JSON encoding/json makes of the Go value
// msgpack decodes the first value of v into (as `any`), and returns the
// bytes after that value. It reports false, having appended part of it,
// for what it does not transcode, which the reflective path answers:
// extensions (a time among them), a map whose keys are not all strings or
// repeat a key, a float that is not finite, a value nested past
// maxAnswerDepth, bytes that are not whole msgpack, and a value that
// would take it more than stepsPerByte steps a byte of v (msgpackJSON).
func appendJSONOf(b, v []byte) ([]byte, []byte, bool) {
	t := msgpackJSON{steps: stepsPerByte*len(v) + 16}
	return t.value(b, v, 0)
}

// stepsPerByte bounds msgpackJSON's work by its input's size. A map's
// values are walked once to find them before they are written in key
// order, so each value is visited once per map it is in: about as many
// steps as its elements times its depth in maps, a few for every value
// but a hostile one (hundreds of maps deep around many small elements),
// which the reflective path, whose work follows the elements, answers
// instead.
const stepsPerByte = 8

// msgpackJSON transcodes a msgpack value to JSON (appendJSONOf); steps
// is how many more values it may visit before it gives up.
type msgpackJSON struct{ steps int }

// value transcodes the value at the start of v, depth containers deep.
func (t *msgpackJSON) value(b, v []byte, depth int) ([]byte, []byte, bool) {
	if t.steps--; len(v) == 0 || depth > maxAnswerDepth || t.steps < 0 {
		return b, v, false
	}
	c := v[0]
	switch {
	case msgpcode.IsFixedNum(c):
		return strconv.AppendInt(b, int64(int8(c)), 10), v[1:], true
	case msgpcode.IsFixedString(c):
		return appendJSONStr(b, v[1:], int(c&0x1f))
	case msgpcode.IsFixedArray(c):
		return t.array(b, v[1:], int(c&0x0f), depth)
	case msgpcode.IsFixedMap(c):
		return t.object(b, v[1:], int(c&0x0f), depth)
	}
	n, w, ok := lengthOf(c, v[1:])
	if !ok {
		return b, v, false
	}
	rest := v[1+w:]
	switch c {
	case msgpcode.Nil:
		return append(b, "null"...), v[1:], true
	case msgpcode.False:
		return append(b, "false"...), v[1:], true
	case msgpcode.True:
		return append(b, "true"...), v[1:], true
	case msgpcode.Uint8, msgpcode.Uint16, msgpcode.Uint32, msgpcode.Uint64:
		return strconv.AppendUint(b, n, 10), rest, true
	case msgpcode.Int8:
		return strconv.AppendInt(b, int64(int8(n)), 10), rest, true
	case msgpcode.Int16:
		return strconv.AppendInt(b, int64(int16(n)), 10), rest, true
	case msgpcode.Int32:
		return strconv.AppendInt(b, int64(int32(n)), 10), rest, true
	case msgpcode.Int64:
		return strconv.AppendInt(b, int64(n), 10), rest, true
	case msgpcode.Float:
		return appendJSONFloat(b, float64(math.Float32frombits(uint32(n))), 32, rest)
	case msgpcode.Double:
		return appendJSONFloat(b, math.Float64frombits(n), 64, rest)
	case msgpcode.Str8, msgpcode.Str16, msgpcode.Str32:
		return appendJSONStr(b, rest, int(n))
	case msgpcode.Bin8, msgpcode.Bin16, msgpcode.Bin32:
		if uint64(len(rest)) < n {
			return b, v, false
		}
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, rest[:n])
		return append(b, '"'), rest[n:], true
	case msgpcode.Array16, msgpcode.Array32:
		return t.array(b, rest, int(n), depth)
	case msgpcode.Map16, msgpcode.Map32:
		return t.object(b, rest, int(n), depth)
	}
	return b, v, false // extensions, and the one unused code
}

// lengthOf reads what follows code c in v for the codes with a fixed-size
// argument: the number (as its bits), or the length of a string, binary,
// array or map; w is how many bytes it took. It reports false for a code
// without one, other than nil and the booleans (w 0), and for v too short.
func lengthOf(c byte, v []byte) (n uint64, w int, ok bool) {
	switch c {
	case msgpcode.Nil, msgpcode.False, msgpcode.True:
		return 0, 0, true
	case msgpcode.Uint8, msgpcode.Int8, msgpcode.Str8, msgpcode.Bin8:
		w = 1
	case msgpcode.Uint16, msgpcode.Int16, msgpcode.Str16, msgpcode.Bin16, msgpcode.Array16, msgpcode.Map16:
		w = 2
	case msgpcode.Uint32, msgpcode.Int32, msgpcode.Float, msgpcode.Str32, msgpcode.Bin32, msgpcode.Array32, msgpcode.Map32:
		w = 4
	case msgpcode.Uint64, msgpcode.Int64, msgpcode.Double:
		w = 8
	default:
		return 0, 0, false
	}
	if len(v) < w {
		return 0, 0, false
	}
	switch w {
	case 1:
		n = uint64(v[0])
	case 2:
		n = uint64(binary.BigEndian.Uint16(v))
	case 4:
		n = uint64(binary.BigEndian.Uint32(v))
	default:
		n = binary.BigEndian.Uint64(v)
	}
	return n, w, true
}

// appendJSONStr appends the string of n bytes at the start of v.
func appendJSONStr(b, v []byte, n int) ([]byte, []byte, bool) {
	if len(v) < n {
		return b, v, false
	}
	return appendJSONString(b, v[:n]), v[n:], true
}

// appendJSONFloat appends f as encoding/json writes a float of bits bits,
// or reports false for one it refuses (not finite).
func appendJSONFloat(b []byte, f float64, bits int, rest []byte) ([]byte, []byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, rest, false
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 {
		if bits == 64 && (abs < 1e-6 || abs >= 1e21) || bits == 32 && (float32(abs) < 1e-6 || float32(abs) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' { // e-09 becomes e-9, as encoding/json writes it
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, rest, true
}

// array appends the n values at the start of v as a JSON array.
func (t *msgpackJSON) array(b, v []byte, n, depth int) ([]byte, []byte, bool) {
	b = append(b, '[')
	for i := range n {
		if i > 0 {
			b = append(b, ',')
		}
		var ok bool
		if b, v, ok = t.value(b, v, depth+1); !ok {
			return b, v, false
		}
	}
	return append(b, ']'), v, true
}

// mapEntry is one entry of a msgpack map being transcoded: its key, and
// its value's bytes (with whatever follows them).
type mapEntry struct {
	key   []byte
	value []byte
}

// object appends the map of n entries at the start of v as a JSON object
// with its keys in byte order, as encoding/json writes a map. Its keys
// must be strings, none repeated.
func (t *msgpackJSON) object(b, v []byte, n, depth int) ([]byte, []byte, bool) {
	if n == 0 {
		return append(b, "{}"...), v, true
	}
	if n > len(v)/2 { // each entry takes two bytes at least
		return b, v, false
	}
	var stack [16]mapEntry
	entries := stack[:0]
	for range n {
		var key []byte
		var ok bool
		if key, v, ok = msgpackString(v); !ok {
			return b, v, false
		}
		entries = append(entries, mapEntry{key: key, value: v})
		if v, ok = t.skip(v, depth+1); !ok {
			return b, v, false
		}
	}
	slices.SortFunc(entries, func(x, y mapEntry) int { return bytes.Compare(x.key, y.key) })
	b = append(b, '{')
	for i, e := range entries {
		if i > 0 {
			if bytes.Equal(e.key, entries[i-1].key) {
				return b, v, false // msgpack keeps the last; let it
			}
			b = append(b, ',')
		}
		b = appendJSONString(b, e.key)
		b = append(b, ':')
		var ok bool
		if b, _, ok = t.value(b, e.value, depth+1); !ok {
			return b, v, false
		}
	}
	return append(b, '}'), v, true
}

// msgpackString returns the string at the start of v and the bytes after
// it, or false if v does not start with a string.
func msgpackString(v []byte) ([]byte, []byte, bool) {
	if len(v) == 0 {
		return nil, v, false
	}
	c := v[0]
	n, w := uint64(c&0x1f), 0
	if !msgpcode.IsFixedString(c) {
		if c != msgpcode.Str8 && c != msgpcode.Str16 && c != msgpcode.Str32 {
			return nil, v, false
		}
		var ok bool
		if n, w, ok = lengthOf(c, v[1:]); !ok {
			return nil, v, false
		}
	}
	v = v[1+w:]
	if uint64(len(v)) < n {
		return nil, v, false
	}
	return v[:n], v[n:], true
}

// skip returns the bytes after the value at the start of v, for a value
// whose codes and depth value takes; false otherwise.
func (t *msgpackJSON) skip(v []byte, depth int) ([]byte, bool) {
	if t.steps--; len(v) == 0 || depth > maxAnswerDepth || t.steps < 0 {
		return v, false
	}
	c := v[0]
	var n uint64
	var w int
	switch {
	case msgpcode.IsFixedNum(c):
		return v[1:], true
	case msgpcode.IsFixedString(c):
		n = uint64(c & 0x1f)
	case msgpcode.IsFixedArray(c), msgpcode.IsFixedMap(c):
		n = uint64(c & 0x0f)
	default:
		var ok bool
		if n, w, ok = lengthOf(c, v[1:]); !ok {
			return v, false
		}
	}
	rest := v[1+w:]
	switch {
	case msgpcode.IsFixedString(c), c == msgpcode.Str8, c == msgpcode.Str16, c == msgpcode.Str32,
		c == msgpcode.Bin8, c == msgpcode.Bin16, c == msgpcode.Bin32:
		if uint64(len(rest)) < n {
			return v, false
		}
		return rest[n:], true
	case msgpcode.IsFixedArray(c), c == msgpcode.Array16, c == msgpcode.Array32:
		for range n {
			var ok bool
			if rest, ok = t.skip(rest, depth+1); !ok {
				return v, false
			}
		}
		return rest, true
	case msgpcode.IsFixedMap(c), c == msgpcode.Map16, c == msgpcode.Map32:
		for range 2 * n {
			var ok bool
			if rest, ok = t.skip(rest, depth+1); !ok {
				return v, false
			}
		}
		return rest, true
	}
	return rest, true // a number, nil or a boolean: lengthOf took its bytes
}

// appendJSONString appends s as encoding/json writes a string: quoted,
// with <, > and & escaped, U+2028 and U+2029 escaped, and each byte that
// is not UTF-8 written as U+FFFD.
func appendJSONString[S []byte | string](b []byte, s S) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRune([]byte(s[i:min(len(s), i+utf8.UTFMax)]))
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i++
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// appendSessionMsgpack writes the msgpack answer of s to buf: the bytes
// msgpack's encoder makes of its sessionView, with the attributes in name
// order. It reports false, having written part of it, for an attribute
// that is no bytes (which that encoder would write as nothing).
func appendSessionMsgpack(buf *bytes.Buffer, s *tandem.Session) bool {
	enc := msgpack.GetEncoder()
	defer msgpack.PutEncoder(enc)
	enc.Reset(buf) // buf takes bytes as they come, so raw values go straight to it
	defer enc.Reset(nil)
	_ = enc.EncodeMapLen(7) // the sessionView fields msgpack encodes
	_ = enc.EncodeString("id")
	_ = enc.EncodeString(s.ID)
	_ = enc.EncodeString("principal")
	_ = enc.EncodeString(s.Principal)
	_ = enc.EncodeString("attributes")
	_ = enc.EncodeMapLen(len(s.Attributes))
	for _, name := range sortedNames(s.Attributes) {
		v := s.Attributes[name]
		if len(v) == 0 {
			return false
		}
		_ = enc.EncodeString(name)
		buf.Write(v)
	}
	_ = enc.EncodeString("version")
	_ = enc.EncodeUint64(s.Version)
	_ = enc.EncodeString("created_at")
	_ = enc.EncodeTime(s.Created.UTC())
	_ = enc.EncodeString("last_access_at")
	_ = enc.EncodeTime(s.LastAccess.UTC())
	_ = enc.EncodeString("expires_at")
	if at := s.ExpiresAt(); at.IsZero() {
		_ = enc.EncodeNil()
	} else {
		_ = enc.EncodeTime(at.UTC())
	}
	return true
}
