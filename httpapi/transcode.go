package httpapi

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/tandem-io/tandem"
)

// jsonToMsgpack re-encodes one JSON value as msgpack without building Go
// values from it, so its allocations follow the bytes it reads: the output
// (allocated once, at most five times the input), one counter per
// container, and the odd string with escapes. Objects
// become maps with their members in document order (a repeated name stays
// repeated; whoever decodes the value keeps the last), arrays arrays,
// strings strings, true, false and null themselves; a number becomes an
// int64 when it is an integer that fits, else a float64, as msgpack
// encodes Go's int64 and float64 (9 bytes each). The same JSON always
// makes the same bytes. It refuses a value nested more than
// tandem.MaxValueDepth deep, and a number past float64's range (it would
// become ±Inf, which no JSON answer could show).
func jsonToMsgpack(raw []byte) (msgpack.RawMessage, error) {
	if !json.Valid(raw) {
		var v json.RawMessage // for the decoder's description of what is wrong
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("invalid JSON")
	}
	// Pass one counts each container's elements (msgpack puts the count
	// first) and bounds the output's size; pass two writes.
	t := transcoder{in: raw}
	if err := t.value(0); err != nil {
		return nil, err
	}
	t.pos, t.next, t.out = 0, 0, make([]byte, 0, t.size)
	if err := t.value(0); err != nil {
		return nil, err
	}
	return t.out, nil
}

// transcoder walks JSON that json.Valid accepted. With out nil it counts
// containers' elements into counts; with out set it writes msgpack, taking
// each container's count from counts in the order the containers open.
type transcoder struct {
	in     []byte
	pos    int
	counts []uint32
	size   int // a bound on the output's size (counting)
	next   int // the next container's index in counts (writing)
	out    []byte
}

// writing reports whether this is the writing pass.
func (t *transcoder) writing() bool { return t.out != nil }

// space skips white space.
func (t *transcoder) space() {
	for t.pos < len(t.in) {
		switch t.in[t.pos] {
		case ' ', '\t', '\n', '\r':
			t.pos++
		default:
			return
		}
	}
}

// value transcodes the value at pos, depth containers deep.
func (t *transcoder) value(depth int) error {
	t.space()
	switch c := t.in[t.pos]; {
	case c == '{' || c == '[':
		return t.container(depth + 1)
	case c == '"':
		return t.str()
	case c == 't':
		t.pos += len("true")
		t.put(msgpcode.True)
	case c == 'f':
		t.pos += len("false")
		t.put(msgpcode.False)
	case c == 'n':
		t.pos += len("null")
		t.put(msgpcode.Nil)
	default:
		return t.number()
	}
	return nil
}

// container transcodes the object or array at pos.
func (t *transcoder) container(depth int) error {
	if depth > tandem.MaxValueDepth {
		return fmt.Errorf("value nests deeper than %d", tandem.MaxValueDepth)
	}
	object := t.in[t.pos] == '{'
	t.pos++
	idx := t.next
	if t.writing() {
		t.next++
		t.header(object, t.counts[idx])
	} else {
		idx = len(t.counts)
		t.counts = append(t.counts, 0)
		t.size += 5 // the largest header
	}
	for {
		t.space()
		if c := t.in[t.pos]; c == '}' || c == ']' {
			t.pos++
			return nil
		}
		if t.in[t.pos] == ',' {
			t.pos++
			t.space()
		}
		if !t.writing() {
			t.counts[idx]++
		}
		if object {
			if err := t.str(); err != nil {
				return err
			}
			t.space()
			t.pos++ // ':'
		}
		if err := t.value(depth); err != nil {
			return err
		}
	}
}

// header writes a map's or an array's header for n elements.
func (t *transcoder) header(object bool, n uint32) {
	switch {
	case object && n < 16:
		t.put(msgpcode.FixedMapLow | byte(n))
	case object && n <= math.MaxUint16:
		t.put(msgpcode.Map16)
		t.out = binary.BigEndian.AppendUint16(t.out, uint16(n))
	case object:
		t.put(msgpcode.Map32)
		t.out = binary.BigEndian.AppendUint32(t.out, n)
	case n < 16:
		t.put(msgpcode.FixedArrayLow | byte(n))
	case n <= math.MaxUint16:
		t.put(msgpcode.Array16)
		t.out = binary.BigEndian.AppendUint16(t.out, uint16(n))
	default:
		t.put(msgpcode.Array32)
		t.out = binary.BigEndian.AppendUint32(t.out, n)
	}
}

// str transcodes the string at pos: its bytes as they are when it has no
// escapes and is valid UTF-8, else as encoding/json decodes it.
func (t *transcoder) str() error {
	start := t.pos
	plain := true
	for t.pos++; t.in[t.pos] != '"'; t.pos++ {
		if t.in[t.pos] == '\\' {
			plain = false
			t.pos++ // the escaped byte
		}
	}
	t.pos++
	body := t.in[start+1 : t.pos-1]
	if !t.writing() {
		// Decoding shrinks escapes but turns each invalid UTF-8 byte
		// into U+FFFD, three bytes.
		t.size += 5 + 3*len(body)
		return nil
	}
	if plain && utf8.Valid(body) {
		t.strHeader(len(body))
		t.out = append(t.out, body...)
		return nil
	}
	if plain { // as encoding/json decodes it: U+FFFD for each invalid byte
		n := 0
		for i := 0; i < len(body); {
			r, size := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && size == 1 {
				n += utf8.RuneLen(utf8.RuneError)
			} else {
				n += size
			}
			i += size
		}
		t.strHeader(n)
		for i := 0; i < len(body); {
			r, size := utf8.DecodeRune(body[i:])
			if r == utf8.RuneError && size == 1 {
				t.out = utf8.AppendRune(t.out, utf8.RuneError)
			} else {
				t.out = append(t.out, body[i:i+size]...)
			}
			i += size
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(t.in[start:t.pos], &s); err != nil {
		return err
	}
	t.strHeader(len(s))
	t.out = append(t.out, s...)
	return nil
}

// strHeader writes a string's header for n bytes.
func (t *transcoder) strHeader(n int) {
	switch {
	case n < 32:
		t.put(msgpcode.FixedStrLow | byte(n))
	case n < 256:
		t.put(msgpcode.Str8, byte(n))
	case n <= math.MaxUint16:
		t.put(msgpcode.Str16)
		t.out = binary.BigEndian.AppendUint16(t.out, uint16(n))
	default:
		t.put(msgpcode.Str32)
		t.out = binary.BigEndian.AppendUint32(t.out, uint32(n))
	}
}

// number transcodes the number at pos: an int64 when it is an integer
// that fits, else a float64, as json.Number's Int64 and Float64 read it.
// It refuses (when writing) a number past float64's range, which would
// be stored as ±Inf: a value lost, and one no JSON answer could show.
func (t *transcoder) number() error {
	start := t.pos
	for t.pos < len(t.in) {
		c := t.in[t.pos]
		if !('0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E') {
			break
		}
		t.pos++
	}
	if !t.writing() {
		t.size += 9
		return nil
	}
	tok := string(t.in[start:t.pos])
	if i, err := strconv.ParseInt(tok, 10, 64); err == nil {
		t.put(msgpcode.Int64)
		t.out = binary.BigEndian.AppendUint64(t.out, uint64(i))
		return nil
	}
	f, _ := strconv.ParseFloat(tok, 64) // a number too small to tell from 0 is 0
	if math.IsInf(f, 0) {
		return fmt.Errorf("the number %.40s is past the range of a 64-bit float (±1.8e308)", tok)
	}
	t.put(msgpcode.Double)
	t.out = binary.BigEndian.AppendUint64(t.out, math.Float64bits(f))
	return nil
}

// put writes bytes when writing, and counts them when counting.
func (t *transcoder) put(b ...byte) {
	if t.writing() {
		t.out = append(t.out, b...)
	} else {
		t.size += len(b)
	}
}
