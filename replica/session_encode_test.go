package replica

import (
	"bytes"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// reflectEncoded encodes s as msgpack's reflection does, with compact
// integers as peer frames ask: what Session.EncodeMsgpack replaces.
func reflectEncoded(t *testing.T, s *Session) []byte {
	t.Helper()
	type plain Session // the same fields, without the methods
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode((*plain)(s)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// ownEncoded encodes s with Session.EncodeMsgpack, through an encoder
// set up as peer frames set theirs.
func ownEncoded(t *testing.T, s *Session) []byte {
	t.Helper()
	var buf bytes.Buffer
	enc := msgpack.NewEncoder(&buf)
	enc.UseCompactInts(true)
	if err := enc.Encode(s); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// randomSession fills every field or leaves it empty, at random, with
// values at the edges of their encodings.
func randomSession(rng *rand.Rand) *Session {
	pick := func(vs ...uint64) uint64 { return vs[rng.IntN(len(vs))] }
	num := func() uint64 {
		return pick(0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32+1, math.MaxUint64, rng.Uint64())
	}
	str := func() string {
		return string(bytes.Repeat([]byte("x"), int(pick(0, 1, 31, 32, 255, 256, 70000))))
	}
	when := func() time.Time {
		switch rng.IntN(5) {
		case 0:
			return time.Time{}
		case 1:
			return time.Unix(int64(rng.Uint32()), 0).UTC()
		case 2:
			return time.Unix(int64(rng.Uint32()), int64(rng.IntN(1e9))).UTC()
		case 3:
			return time.Unix(1<<35, 7).UTC() // past the 34-bit form
		}
		return time.Unix(-int64(rng.Uint32()), 5).UTC()
	}
	s := &Session{ID: sessionID(rng.IntN(1000)), Principal: str(), Version: num(), Created: when(), LastAccess: when(),
		IdleTimeout: time.Duration(int64(num())), Deadline: when(), Stamp: num(), Writer: str(),
		Deleted: rng.IntN(2) == 0, Gen: num(), Forgot: num()}
	if rng.IntN(4) == 0 {
		s.IdleTimeout = -time.Duration(rng.Int64N(math.MaxInt64))
	}
	attrs := map[string]msgpack.RawMessage{}
	for range rng.IntN(3) {
		v, _ := msgpack.Marshal(map[string]any{"n": rng.Int64(), "s": str()})
		if rng.IntN(3) == 0 {
			v = msgpack.RawMessage{0xc0}
		}
		attrs[str()+string(rune('a'+rng.IntN(26)))] = v
	}
	s.Attributes = EncodeAttributes(attrs)
	for range rng.IntN(10) {
		s.Recent = append(s.Recent, Applied{Request: str(), Version: num(), Hash: num(), At: num()})
	}
	return s
}

// Session.EncodeMsgpack writes what msgpack's reflection writes from the
// fields' tags, byte for byte, and what it writes decodes to the same
// session.
func TestSessionEncodingMatchesReflection(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		s := randomSession(rng)
		own, ref := ownEncoded(t, s), reflectEncoded(t, s)
		if !bytes.Equal(own, ref) {
			t.Fatalf("session %d %+v:\n own % x\n ref % x", i, s, own, ref)
		}
		var fromOwn, fromRef Session
		if err := msgpack.Unmarshal(own, &fromOwn); err != nil {
			t.Fatalf("session %d: decode its own encoding: %v", i, err)
		}
		if err := msgpack.Unmarshal(ref, &fromRef); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(fromOwn, fromRef) {
			t.Fatalf("session %d decodes differently:\n own %+v\n ref %+v", i, fromOwn, fromRef)
		}
		if err := decodeBounded(own, &Session{}); err != nil {
			t.Fatalf("session %d: its encoding does not pass the peer's bounds: %v", i, err)
		}
	}
	var none *Session
	if b := ownEncoded(t, none); !bytes.Equal(b, []byte{0xc0}) {
		t.Fatalf("a nil session encodes as % x, want nil (c0)", b)
	}
}
