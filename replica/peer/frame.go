package peer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// Kind says whether a frame is a request or a response.
type Kind uint8

const (
	// KindRequest marks a frame sent by a Client: Method names the call and
	// the body carries its args.
	KindRequest Kind = 1
	// KindResponse marks a frame sent by a Server: ID matches the request
	// and the body carries the reply, or Code and Msg describe an error.
	KindResponse Kind = 2
)

// Header is the fixed part of every frame. It is encoded as the msgpack
// array [ID, Kind, Method, Code, Msg].
type Header struct {
	_msgpack struct{} `msgpack:",as_array"`

	// ID pairs a response with its request. A Client numbers the requests
	// on each connection 1, 2, 3, ...; a Server echoes the ID back.
	ID uint64
	// Kind is KindRequest or KindResponse; any other value is malformed.
	Kind Kind
	// Method names the call (requests only).
	Method string
	// Code is empty for a successful response and holds the error code of
	// a failed one (responses only).
	Code string
	// Msg is the human-readable error message of a failed response.
	Msg string
}

// lenSize is the size of the frame's length prefix.
const lenSize = 4

// maxDepth bounds how deeply containers may nest in a frame body, so that a
// hostile frame cannot exhaust the stack of whoever decodes it recursively.
const maxDepth = 1024

// maxPooledBuf is the largest encode buffer returned to the pool; bigger
// ones are left to the garbage collector so one huge frame is not pinned.
const maxPooledBuf = 1 << 20

// Appender is a frame body that appends its own msgpack encoding to b and
// returns the extended slice, as append does. A frame's body that is an
// Appender is encoded so, without msgpack's Encoder: a node answers every
// read with a session, and the encoder's calls and its reflection over
// the reply's struct were most of what encoding one cost
// (docs/BENCHMARKS.md, "Replies and replicas appended"). The bytes must be
// the one msgpack value the body's encoding by msgpack's Encoder would be,
// a nil pointer's included (nil); a value too large for the frame is
// refused once appended, as an encoded one is.
type Appender interface {
	AppendMsgpack(b []byte) []byte
}

// frameBuf is a reusable buffer with an encoder bound to it.
type frameBuf struct {
	buf appendBuf
	enc *msgpack.Encoder
}

// appendBuf is a byte slice msgpack's Encoder writes to by appending, so
// that an Appender can append to the same bytes.
type appendBuf []byte

// Write appends p.
func (b *appendBuf) Write(p []byte) (int, error) {
	*b = append(*b, p...)
	return len(p), nil
}

// WriteByte appends c: with it, msgpack's Encoder takes appendBuf as its
// writer without wrapping it (a wrapped writer allocates per byte).
func (b *appendBuf) WriteByte(c byte) error {
	*b = append(*b, c)
	return nil
}

// framePool recycles frameBufs across WriteFrame and Client/Server writes.
var framePool = sync.Pool{New: func() any {
	fb := new(frameBuf)
	fb.enc = msgpack.NewEncoder(&fb.buf)
	fb.enc.UseCompactInts(true)
	return fb
}}

// getFrameBuf takes a frameBuf from the pool.
func getFrameBuf() *frameBuf { return framePool.Get().(*frameBuf) }

// putFrameBuf returns fb to the pool unless it has grown too large.
func putFrameBuf(fb *frameBuf) {
	if cap(fb.buf) <= maxPooledBuf {
		framePool.Put(fb)
	}
}

// encode renders a complete frame (length prefix included) into fb and
// returns it. The result is only valid until fb is reused.
func (fb *frameBuf) encode(h Header, body any, maxSize int) ([]byte, error) {
	if h.Kind != KindRequest && h.Kind != KindResponse {
		return nil, fmt.Errorf("encode frame: unknown kind %d", h.Kind)
	}
	if raw, ok := body.(msgpack.RawMessage); ok && len(raw) == 0 {
		body = nil // an empty RawMessage would leave the frame without a body
	}
	fb.buf = append(fb.buf[:0], 0, 0, 0, 0) // room for the length, filled in below
	fb.buf = appendHeader(fb.buf, &h)
	if a, ok := body.(Appender); ok {
		fb.buf = a.AppendMsgpack(fb.buf)
	} else if err := fb.enc.Encode(body); err != nil {
		return nil, fmt.Errorf("encode frame body: %w", err)
	}
	frame := []byte(fb.buf)
	n := len(frame) - lenSize
	if n > maxSize || uint64(n) > math.MaxUint32 {
		return nil, fmt.Errorf("%w: %d byte payload exceeds limit %d", ErrFrameTooLarge, n, maxSize)
	}
	binary.BigEndian.PutUint32(frame, uint32(n))
	return frame, nil
}

// appendHeader appends h as msgpack's Encoder encodes a Header with
// compact integers: the array [ID, Kind, Method, Code, Msg]
// (TestHeaderEncodingMatchesTheEncoders).
func appendHeader(b []byte, h *Header) []byte {
	b = append(b, msgpcode.FixedArrayLow|5)
	b = AppendUint(b, h.ID)
	b = AppendUint(b, uint64(h.Kind))
	b = AppendString(b, h.Method)
	b = AppendString(b, h.Code)
	return AppendString(b, h.Msg)
}

// AppendUint appends n as msgpack's Encoder.EncodeUint does, in the
// fewest bytes.
func AppendUint(b []byte, n uint64) []byte {
	switch {
	case n <= math.MaxInt8:
		return append(b, byte(n))
	case n <= math.MaxUint8:
		return append(b, msgpcode.Uint8, byte(n))
	case n <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(b, msgpcode.Uint16), uint16(n))
	case n <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(b, msgpcode.Uint32), uint32(n))
	}
	return binary.BigEndian.AppendUint64(append(b, msgpcode.Uint64), n)
}

// AppendString appends s as msgpack's Encoder.EncodeString does.
func AppendString(b []byte, s string) []byte {
	n := len(s)
	switch {
	case n < 32:
		b = append(b, msgpcode.FixedStrLow|byte(n))
	case n <= math.MaxUint8:
		b = append(b, msgpcode.Str8, byte(n))
	case n <= math.MaxUint16:
		b = binary.BigEndian.AppendUint16(append(b, msgpcode.Str16), uint16(n))
	default:
		b = binary.BigEndian.AppendUint32(append(b, msgpcode.Str32), uint32(n))
	}
	return append(b, s...)
}

// WriteFrame encodes h and then body (msgpack) into one length-prefixed frame
// and writes it with a single Write call. A payload longer than maxSize is
// refused with an error wrapping ErrFrameTooLarge before anything is written;
// so are encoding errors and a Header with an unknown Kind.
func WriteFrame(w io.Writer, h Header, body any, maxSize int) error {
	fb := getFrameBuf()
	defer putFrameBuf(fb)
	frame, err := fb.encode(h, body, maxSize)
	if err != nil {
		return err
	}
	_, err = w.Write(frame)
	return err
}

// ReadFrame reads one frame from r and returns its header and body. The body
// is the raw msgpack encoding of exactly one value.
//
// A clean end of stream before the first byte returns io.EOF. A length
// prefix over maxSize is refused with an error wrapping ErrFrameTooLarge
// before the payload is allocated. A truncated frame, an undecodable header,
// an unknown Kind, a body that is not exactly one msgpack value, and a body
// nested more than 1024 containers deep are errors. ReadFrame never panics on
// malformed input.
func ReadFrame(r io.Reader, maxSize int) (Header, msgpack.RawMessage, error) {
	var prefix [lenSize]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		if err == io.EOF {
			return Header{}, nil, io.EOF
		}
		return Header{}, nil, fmt.Errorf("read frame length: %w", err)
	}
	n := binary.BigEndian.Uint32(prefix[:])
	if maxSize < 0 || uint64(n) > uint64(maxSize) {
		return Header{}, nil, fmt.Errorf("%w: %d byte payload exceeds limit %d", ErrFrameTooLarge, n, maxSize)
	}
	payload, err := readPayload(r, int(n))
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Header{}, nil, fmt.Errorf("read frame payload: %w", err)
	}
	return decodePayload(payload)
}

// payloadChunk is how much of a frame's payload ReadFrame allocates before
// the bytes have arrived: payloads up to this size are read into one exact
// buffer; larger ones into a buffer that doubles as the bytes come in.
const payloadChunk = 16 << 10

// readPayload reads exactly n bytes from r. It never allocates much more
// than it has read (at most twice, plus payloadChunk), so a peer that claims
// a 16 MiB frame and sends 10 bytes costs payloadChunk, not 16 MiB.
func readPayload(r io.Reader, n int) ([]byte, error) {
	buf := make([]byte, 0, min(n, payloadChunk))
	for len(buf) < n {
		if len(buf) == cap(buf) {
			buf = slices.Grow(buf, min(len(buf), n-len(buf)))
		}
		m, err := io.ReadFull(r, buf[len(buf):min(cap(buf), n)])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}

// decodePayload splits a frame payload into its header and body.
func decodePayload(payload []byte) (Header, msgpack.RawMessage, error) {
	if len(payload) == 0 {
		return Header{}, nil, fmt.Errorf("%w: empty payload", errMalformed)
	}
	if c := payload[0]; !msgpcode.IsFixedArray(c) && c != msgpcode.Array16 && c != msgpcode.Array32 {
		return Header{}, nil, fmt.Errorf("%w: header is not an array (code %#x)", errMalformed, c)
	}
	// Bound the header before decoding it: msgpack's decoder allocates for
	// whatever length a string claims, and a pooled decoder keeps that
	// buffer, so lengths must be checked against the payload first.
	hn, err := skipValue(payload)
	if err != nil {
		return Header{}, nil, fmt.Errorf("%w: header: %v", errMalformed, err)
	}
	h, err := decodeHeader(payload[:hn])
	if err != nil {
		return Header{}, nil, fmt.Errorf("%w: header: %v", errMalformed, err)
	}
	if h.Kind != KindRequest && h.Kind != KindResponse {
		return Header{}, nil, fmt.Errorf("%w: unknown kind %d", errMalformed, h.Kind)
	}
	body := payload[hn:]
	n, err := skipValue(body)
	if err != nil {
		return Header{}, nil, fmt.Errorf("%w: body: %v", errMalformed, err)
	}
	if n != len(body) {
		return Header{}, nil, fmt.Errorf("%w: %d trailing bytes after body", errMalformed, len(body)-n)
	}
	return h, msgpack.RawMessage(body), nil
}

// maxPooledHeader is the largest encoded header decoded with a pooled
// decoder. The decoder keeps a buffer as large as the longest string it has
// read, so a larger header (a long error message) gets a decoder of its own
// rather than leaving a big buffer in the pool.
const maxPooledHeader = 4 << 10

// headerDecoder is a reusable decoder for frame headers.
type headerDecoder struct {
	r   bytes.Reader
	dec *msgpack.Decoder
	h   Header
}

// headerPool recycles headerDecoders across frames.
var headerPool = sync.Pool{New: func() any {
	hd := new(headerDecoder)
	hd.dec = msgpack.NewDecoder(&hd.r)
	return hd
}}

// decodeHeader decodes the encoded header b, whose lengths skipValue has
// already checked against len(b).
func decodeHeader(b []byte) (Header, error) {
	if len(b) > maxPooledHeader {
		var h Header
		err := msgpack.NewDecoder(bytes.NewReader(b)).Decode(&h)
		return h, err
	}
	hd := headerPool.Get().(*headerDecoder)
	hd.r.Reset(b)
	hd.dec.Reset(&hd.r)
	hd.h = Header{}
	err := hd.dec.Decode(&hd.h)
	h := hd.h
	hd.r.Reset(nil)
	headerPool.Put(hd)
	return h, err
}

// skipValue returns the encoded length of the one msgpack value at the start
// of b. Unlike msgpack.Decoder.Skip it does not recurse, and it rejects
// nesting deeper than maxDepth.
func skipValue(b []byte) (int, error) { return skipDepth(b, maxDepth) }

// skipDepth returns the encoded length of the one msgpack value at the start
// of b, refusing containers nested more than depth deep (a scalar is at
// depth 0, the elements of a top-level array at depth 1; empty containers
// count). It allocates nothing that grows with the claimed lengths: every
// claimed length is checked against the bytes left before it is used, and
// its stack holds at most depth+1 counters.
func skipDepth(b []byte, depth int) (int, error) {
	c := cursor{b: b}
	// todo[i] counts the values still to skip at nesting level i; level 0
	// is the single top-level value.
	todo := make([]uint64, 1, 16)
	todo[0] = 1
	for len(todo) > 0 {
		top := len(todo) - 1
		if todo[top] == 0 {
			todo = todo[:top]
			continue
		}
		todo[top]--
		skip, items, container, err := c.header()
		if err != nil {
			return 0, err
		}
		left := uint64(len(b) - c.pos)
		if skip > left || items > left {
			// Every element takes at least one byte.
			return 0, io.ErrUnexpectedEOF
		}
		c.pos += int(skip)
		if container {
			if len(todo) > depth {
				return 0, fmt.Errorf("nesting deeper than %d", depth)
			}
			if items > 0 {
				todo = append(todo, items)
			}
		}
	}
	return c.pos, nil
}

// cursor reads msgpack value headers from b.
type cursor struct {
	b   []byte
	pos int
}

// readLen reads a k-byte big-endian length.
func (c *cursor) readLen(k int) (uint64, error) {
	if len(c.b)-c.pos < k {
		return 0, io.ErrUnexpectedEOF
	}
	var v uint64
	for _, x := range c.b[c.pos : c.pos+k] {
		v = v<<8 | uint64(x)
	}
	c.pos += k
	return v, nil
}

// header reads one value's header and returns how many payload bytes
// follow it, how many nested values, and whether it is a container (an
// array or a map, perhaps empty).
func (c *cursor) header() (skip, items uint64, container bool, err error) {
	if c.pos >= len(c.b) {
		return 0, 0, false, io.ErrUnexpectedEOF
	}
	code := c.b[c.pos]
	c.pos++
	switch {
	case msgpcode.IsFixedNum(code), code == msgpcode.Nil, code == msgpcode.False, code == msgpcode.True:
	case msgpcode.IsFixedMap(code):
		items = 2 * uint64(code&msgpcode.FixedMapMask)
	case msgpcode.IsFixedArray(code):
		items = uint64(code & msgpcode.FixedArrayMask)
	case msgpcode.IsFixedString(code):
		skip = uint64(code & msgpcode.FixedStrMask)
	case code == msgpcode.Uint8, code == msgpcode.Int8:
		skip = 1
	case code == msgpcode.Uint16, code == msgpcode.Int16:
		skip = 2
	case code == msgpcode.Uint32, code == msgpcode.Int32, code == msgpcode.Float:
		skip = 4
	case code == msgpcode.Uint64, code == msgpcode.Int64, code == msgpcode.Double:
		skip = 8
	case code == msgpcode.FixExt1, code == msgpcode.FixExt2, code == msgpcode.FixExt4,
		code == msgpcode.FixExt8, code == msgpcode.FixExt16:
		skip = 1 + 1<<(code-msgpcode.FixExt1) // type byte + data
	case code == msgpcode.Str8, code == msgpcode.Bin8:
		skip, err = c.readLen(1)
	case code == msgpcode.Str16, code == msgpcode.Bin16:
		skip, err = c.readLen(2)
	case code == msgpcode.Str32, code == msgpcode.Bin32:
		skip, err = c.readLen(4)
	case code == msgpcode.Ext8, code == msgpcode.Ext16, code == msgpcode.Ext32:
		skip, err = c.readLen(1 << (code - msgpcode.Ext8))
		skip++ // type byte
	case code == msgpcode.Array16:
		items, err = c.readLen(2)
	case code == msgpcode.Array32:
		items, err = c.readLen(4)
	case code == msgpcode.Map16:
		items, err = c.readLen(2)
		items *= 2
	case code == msgpcode.Map32:
		items, err = c.readLen(4)
		items *= 2
	default:
		return 0, 0, false, fmt.Errorf("invalid msgpack code %#x", code)
	}
	container = msgpcode.IsFixedMap(code) || msgpcode.IsFixedArray(code) ||
		code == msgpcode.Array16 || code == msgpcode.Array32 || code == msgpcode.Map16 || code == msgpcode.Map32
	return skip, items, container, err
}
