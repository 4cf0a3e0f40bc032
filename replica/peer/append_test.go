package peer

import (
	"bytes"
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// TestHeaderEncodingMatchesTheEncoders: a frame header appended by hand
// is, byte for byte, what msgpack's Encoder made of it before (reflection
// over Header, compact integers), for IDs and strings at the edges of
// their encodings.
func TestHeaderEncodingMatchesTheEncoders(t *testing.T) {
	ids := []uint64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxUint64}
	strs := []string{"", "op", strings.Repeat("m", 31), strings.Repeat("m", 32), strings.Repeat("m", 255),
		strings.Repeat("m", 256), strings.Repeat("m", 65535), strings.Repeat("m", 65536)}
	n := 0
	for _, id := range ids {
		for _, kind := range []Kind{KindRequest, KindResponse, 0, 200, 255} {
			for i, s := range strs {
				h := Header{ID: id, Kind: kind, Method: s, Code: strs[(i+1)%len(strs)], Msg: strs[(i+3)%len(strs)]}
				var buf bytes.Buffer
				enc := msgpack.NewEncoder(&buf)
				enc.UseCompactInts(true)
				if err := enc.Encode(&h); err != nil {
					t.Fatal(err)
				}
				if got := appendHeader(nil, &h); !bytes.Equal(got, buf.Bytes()) {
					t.Fatalf("header %d/%d/%d/%d/%d: appended\n% x\nencoder\n% x", id, kind, len(h.Method), len(h.Code), len(h.Msg), got, buf.Bytes())
				}
				n++
			}
		}
	}
	t.Logf("%d headers", n)
}

// appendedBody is a body that appends its own encoding: a string,
// as msgpack encodes one.
type appendedBody string

func (a appendedBody) AppendMsgpack(b []byte) []byte { return AppendString(b, string(a)) }

// TestAppenderBodiesMakeTheSameFrames: a body that appends its encoding
// gives the frame an encoded body would, reads back as one, and is held
// to the frame size limit the same way.
func TestAppenderBodiesMakeTheSameFrames(t *testing.T) {
	h := Header{ID: 300, Kind: KindResponse}
	for _, s := range []string{"", "x", strings.Repeat("y", 40), strings.Repeat("z", 70000)} {
		var appended, encoded bytes.Buffer
		if err := WriteFrame(&appended, h, appendedBody(s), 1<<20); err != nil {
			t.Fatal(err)
		}
		if err := WriteFrame(&encoded, h, s, 1<<20); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(appended.Bytes(), encoded.Bytes()) {
			t.Fatalf("a %d byte string: the appended frame differs from the encoded one", len(s))
		}
		gh, body, err := ReadFrame(&appended, 1<<20)
		if err != nil || gh != h {
			t.Fatalf("read back: %+v, %v", gh, err)
		}
		var got string
		if err := msgpack.Unmarshal(body, &got); err != nil || got != s {
			t.Fatalf("read back a %d byte string as %d bytes, %v", len(s), len(got), err)
		}
	}
	var w countingWriter
	if err := WriteFrame(&w, h, appendedBody(strings.Repeat("x", 100)), 64); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("an appended body over the limit: err = %v, want ErrFrameTooLarge", err)
	}
	if w.writes != 0 {
		t.Fatal("a refused frame was written")
	}
}
