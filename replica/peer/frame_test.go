package peer

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

const testMaxFrame = 1 << 20

type sessionWrite struct {
	Key     string
	Version uint64
	Data    []byte
	Tags    map[string]string
}

// countingWriter records how many Write calls a frame took.
type countingWriter struct {
	bytes.Buffer
	writes int
}

// Write counts the call and buffers p.
func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

func TestFrameRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		h    Header
		body any
	}{
		{"request with struct", Header{ID: 1, Kind: KindRequest, Method: "session.put"},
			sessionWrite{Key: "s-1", Version: 7, Data: []byte{1, 2, 3}, Tags: map[string]string{"node": "a"}}},
		{"response with map", Header{ID: 1 << 63, Kind: KindResponse}, map[string]int{"a": 1, "b": -2}},
		{"error response", Header{ID: 42, Kind: KindResponse, Code: "not_found", Msg: "no such session"}, nil},
		{"raw body", Header{ID: 3, Kind: KindRequest, Method: "raw"}, msgpack.RawMessage{0x93, 0x01, 0x02, 0x03}},
		{"unicode method, empty string body", Header{ID: 4, Kind: KindRequest, Method: "ключ/☃"}, ""},
		{"large binary body", Header{ID: 5, Kind: KindRequest, Method: "bulk"}, bytes.Repeat([]byte("x"), 100_000)},
		{"time body", Header{ID: 6, Kind: KindResponse}, time.Unix(1714564800, 7)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w countingWriter
			if err := WriteFrame(&w, tt.h, tt.body, testMaxFrame); err != nil {
				t.Fatalf("WriteFrame: %v", err)
			}
			if w.writes != 1 {
				t.Errorf("frame took %d writes, want 1", w.writes)
			}
			if n := binary.BigEndian.Uint32(w.Bytes()); int(n) != w.Len()-4 {
				t.Errorf("length prefix %d, payload is %d bytes", n, w.Len()-4)
			}
			h, body, err := ReadFrame(&w.Buffer, testMaxFrame)
			if err != nil {
				t.Fatalf("ReadFrame: %v", err)
			}
			if h != tt.h {
				t.Errorf("header = %+v, want %+v", h, tt.h)
			}
			if tt.body == nil {
				if !bytes.Equal(body, []byte{0xc0}) {
					t.Errorf("nil body = %x, want c0", body)
				}
				return
			}
			got := reflect.New(reflect.TypeOf(tt.body))
			if err := msgpack.Unmarshal(body, got.Interface()); err != nil {
				t.Fatalf("decode body: %v", err)
			}
			if !reflect.DeepEqual(got.Elem().Interface(), tt.body) {
				t.Errorf("body = %#v, want %#v", got.Elem().Interface(), tt.body)
			}
		})
	}
}

func TestReadFrameStream(t *testing.T) {
	var buf bytes.Buffer
	for i := range uint64(3) {
		if err := WriteFrame(&buf, Header{ID: i, Kind: KindRequest, Method: "m"}, i, testMaxFrame); err != nil {
			t.Fatal(err)
		}
	}
	for i := range uint64(3) {
		h, _, err := ReadFrame(&buf, testMaxFrame)
		if err != nil || h.ID != i {
			t.Fatalf("frame %d: header %+v, err %v", i, h, err)
		}
	}
	if _, _, err := ReadFrame(&buf, testMaxFrame); err != io.EOF {
		t.Fatalf("after last frame: err = %v, want io.EOF", err)
	}
}

// mustFrame returns a valid encoded frame.
func mustFrame(t testing.TB, h Header, body any) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := WriteFrame(&buf, h, body, testMaxFrame); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// rawFrame prefixes payload with its length.
func rawFrame(payload ...[]byte) []byte {
	p := bytes.Join(payload, nil)
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(p))), p...)
}

// mustMarshal is msgpack.Marshal that fails the test on error.
func mustMarshal(t testing.TB, v any) []byte {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadFrameRejects(t *testing.T) {
	valid := mustFrame(t, Header{ID: 9, Kind: KindRequest, Method: "m"}, []int{1, 2, 3})
	header := mustMarshal(t, &Header{ID: 9, Kind: KindRequest, Method: "m"})
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty input", nil, io.EOF},
		{"truncated length", []byte{0, 0}, io.ErrUnexpectedEOF},
		{"oversized length", []byte{0xff, 0xff, 0xff, 0xff}, ErrFrameTooLarge},
		{"length just over limit", binary.BigEndian.AppendUint32(nil, testMaxFrame+1), ErrFrameTooLarge},
		{"truncated payload", valid[:len(valid)-1], io.ErrUnexpectedEOF},
		{"empty payload", rawFrame(), errMalformed},
		{"missing body", rawFrame(header), errMalformed},
		{"truncated body", rawFrame(header, []byte{0x92, 0x01}), errMalformed},
		{"truncated string body", rawFrame(header, []byte{0xd9, 0x05, 'a'}), errMalformed},
		{"trailing garbage", rawFrame(valid[4:], []byte{0x00}), errMalformed},
		{"invalid body code", rawFrame(header, []byte{0xc1}), errMalformed},
		{"unknown kind", rawFrame(mustMarshal(t, []any{1, 3, "m", "", ""}), []byte{0xc0}), errMalformed},
		{"zero kind", rawFrame(mustMarshal(t, []any{}), []byte{0xc0}), errMalformed},
		{"header is a map", rawFrame(mustMarshal(t, map[string]any{"ID": 1, "Kind": 1}), []byte{0xc0}), errMalformed},
		{"header wrong arity", rawFrame(mustMarshal(t, []any{1, 1, "m"}), []byte{0xc0}), errMalformed},
		{"header field wrong type", rawFrame(mustMarshal(t, []any{"x", 1, "m", "", ""}), []byte{0xc0}), errMalformed},
		{"body nested too deep", rawFrame(header, bytes.Repeat([]byte{0x91}, maxDepth+1), []byte{0xc0}), errMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := ReadFrame(bytes.NewReader(tt.in), testMaxFrame)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestReadFrameAcceptsMaxDepth(t *testing.T) {
	header := mustMarshal(t, &Header{ID: 1, Kind: KindResponse})
	in := rawFrame(header, bytes.Repeat([]byte{0x91}, maxDepth), []byte{0xc0})
	if _, _, err := ReadFrame(bytes.NewReader(in), testMaxFrame); err != nil {
		t.Fatalf("body nested exactly %d deep: %v", maxDepth, err)
	}
}

func TestWriteFrameRejects(t *testing.T) {
	tests := []struct {
		name string
		h    Header
		body any
		want error // nil: any error will do
	}{
		{"too large", Header{ID: 1, Kind: KindRequest}, strings.Repeat("x", 100), ErrFrameTooLarge},
		{"unknown kind", Header{ID: 1, Kind: 7}, nil, nil},
		{"unencodable body", Header{ID: 1, Kind: KindResponse}, make(chan int), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w countingWriter
			err := WriteFrame(&w, tt.h, tt.body, 64)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
			if w.writes != 0 {
				t.Errorf("refused frame was written")
			}
		})
	}
}

func TestSkipValueMatchesEncoding(t *testing.T) {
	values := []any{
		nil, true, false, 0, 127, 128, -1, -33, 300, -300, 70_000, -70_000, uint64(1) << 40, int64(-1) << 40,
		float32(1.5), 2.25, "", strings.Repeat("s", 31), strings.Repeat("s", 32), strings.Repeat("s", 300),
		strings.Repeat("s", 70_000), []byte{}, bytes.Repeat([]byte{1}, 300), bytes.Repeat([]byte{1}, 70_000),
		make([]int, 15), make([]int, 16), make([]int, 70_000), map[string]int{"a": 1},
		map[int]bool{1: true, 2: false, 3: true, 4: false, 5: true, 6: false, 7: true, 8: false,
			9: true, 10: false, 11: true, 12: false, 13: true, 14: false, 15: true, 16: false},
		[]any{[]any{map[string]any{"x": []any{nil}}}}, time.Unix(1, 2), time.Unix(1<<40, 0),
		sessionWrite{Key: "k", Tags: map[string]string{"a": "b"}},
	}
	raw := [][]byte{
		{0xd4, 0x01, 0xaa}, // fixext1
		append([]byte{0xd8, 0x01}, make([]byte, 16)...),              // fixext16
		{0xc7, 0x03, 0x05, 1, 2, 3},                                  // ext8
		append([]byte{0xc8, 0x01, 0x00, 0x05}, make([]byte, 256)...), // ext16
		{0xc9, 0, 0, 0, 1, 0x05, 9},                                  // ext32
		{0xdd, 0, 0, 0, 2, 0xc0, 0xc0},                               // array32
		{0xdf, 0, 0, 0, 1, 0xa1, 'k', 0xc0},                          // map32
	}
	for _, v := range values {
		raw = append(raw, mustMarshal(t, v))
	}
	for _, b := range raw {
		n, err := skipValue(append(b[:len(b):len(b)], 0xc0, 0xc0))
		if err != nil || n != len(b) {
			t.Errorf("skipValue(%.20x...) = %d, %v; want %d", b, n, err, len(b))
		}
		if _, err := skipValue(b[:len(b)-1]); err == nil {
			t.Errorf("skipValue accepted truncated %.20x...", b)
		}
	}
}

// fuzzMaxSize is the frame limit used by FuzzReadFrame.
const fuzzMaxSize = 64 << 10

func FuzzReadFrame(f *testing.F) {
	f.Add(mustFrame(f, Header{ID: 1, Kind: KindRequest, Method: "session.put"}, sessionWrite{Key: "k", Data: []byte("v")}))
	f.Fuzz(func(t *testing.T, data []byte) {
		var h Header
		var body msgpack.RawMessage
		var err error
		// Bounded before it allocates: the payload buffer grows with the
		// bytes that arrive (at most twice them plus one chunk), the
		// walker's stack is at most MaxDepth counters, and the header's
		// strings are copies of bytes of the input.
		if n := allocated(func() { h, body, err = ReadFrame(bytes.NewReader(data), fuzzMaxSize) }); n > uint64(4*len(data)+64<<10) {
			t.Fatalf("ReadFrame of %d bytes allocated %d", len(data), n)
		}
		if err != nil {
			return
		}
		// The msgpack decoder must agree that body is exactly one value.
		rd := bytes.NewReader(body)
		if err := msgpack.NewDecoder(rd).Skip(); err != nil || rd.Len() != 0 {
			t.Fatalf("accepted body %x: decoder skip err %v, %d bytes left", body, err, rd.Len())
		}
		// Re-encoding may grow the header (e.g. an ID sent as int8 -1 becomes
		// a uint64), hence the slack on the limit.
		var buf bytes.Buffer
		if err := WriteFrame(&buf, h, body, fuzzMaxSize+64); err != nil {
			t.Fatalf("re-encode %+v: %v", h, err)
		}
		h2, body2, err := ReadFrame(&buf, fuzzMaxSize+64)
		if err != nil {
			t.Fatalf("read back %+v: %v", h, err)
		}
		if h2 != h || !bytes.Equal(body2, body) {
			t.Fatalf("round trip changed frame: %+v %x -> %+v %x", h, body, h2, body2)
		}
	})
}
