package replica

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/tandem-io/tandem/replica/peer"
)

// randomOp returns an op with each field set or left empty at random.
func randomOp(rng *rand.Rand) *Op {
	str := func() string {
		if rng.IntN(3) == 0 {
			return ""
		}
		return strings.Repeat(string(rune('a'+rng.IntN(26))), rng.IntN(40))
	}
	num := func() int64 {
		if rng.IntN(3) == 0 {
			return 0
		}
		return rng.Int64N(1<<62) - 1<<61
	}
	attrs := func() map[string]msgpack.RawMessage {
		switch rng.IntN(4) {
		case 0:
			return nil
		case 1:
			return map[string]msgpack.RawMessage{}
		}
		m := map[string]msgpack.RawMessage{}
		for range 1 + rng.IntN(3) {
			v, _ := msgpack.Marshal(map[string]any{"n": rng.Int64(), "s": str()})
			if rng.IntN(3) == 0 {
				v = msgpack.RawMessage{msgpcode.Nil}
			}
			m[str()+string(rune('a'+rng.IntN(26)))] = v
		}
		return m
	}
	op := &Op{Kind: OpKind(rng.IntN(6)), ID: sessionID(rng.IntN(1000)), RequestID: str(), FirstSent: num(),
		NoTouch: rng.IntN(2) == 0, NotAfter: num(), IfVersion: uint64(max(0, num())), IfAbsent: rng.IntN(2) == 0,
		Principal: str(), SetPrincipal: rng.IntN(2) == 0, Attributes: attrs(), IdleTimeout: time.Duration(num()),
		AbsoluteTimeout: time.Duration(num()), Set: attrs(), Merge: attrs()}
	switch rng.IntN(3) {
	case 1:
		op.Delete = []string{}
	case 2:
		op.Delete = []string{str(), str()}
	}
	return op
}

// plainOp is Op without its methods: what msgpack's reflection decodes.
type plainOp Op

// reflectDecodedOp decodes b as msgpack's reflection does, then gives
// back the nil values it drops, as Op's decoder did before it decoded
// itself. A panic is an error.
func reflectDecodedOp(b []byte) (op Op, err error) {
	if err = unmarshalRecovering(b, (*plainOp)(&op)); err != nil {
		return op, err
	}
	for _, attrs := range []map[string]msgpack.RawMessage{op.Attributes, op.Set, op.Merge} {
		for name, v := range attrs {
			if len(v) == 0 {
				attrs[name] = msgpack.RawMessage{msgpcode.Nil}
			}
		}
	}
	return op, nil
}

// ownDecodedOp decodes b with Op.DecodeMsgpack. A panic is an error.
func ownDecodedOp(b []byte) (op Op, err error) {
	err = unmarshalRecovering(b, &op)
	return op, err
}

// Op's encoder and decoder agree with msgpack's reflection: what one
// encodes the other decodes to the same op, on random ops; the encoding
// is reflection's byte for byte when no map has two entries to order;
// and opTags follow Op's fields.
func TestOpCodecMatchesReflection(t *testing.T) {
	for i, f := range reflect.VisibleFields(reflect.TypeFor[Op]()) {
		if tag := strings.Split(f.Tag.Get("msgpack"), ",")[0]; i >= len(opTags) || opTags[i] != tag {
			t.Fatalf("Op field %d (%s) is tagged %q; opTags say otherwise: %v", i, f.Name, tag, opTags)
		}
	}
	type plain Op
	rng := rand.New(rand.NewPCG(11, 12))
	for i := range 3000 {
		op := randomOp(rng)
		var own, ref bytes.Buffer
		for _, e := range []struct {
			buf *bytes.Buffer
			v   any
		}{{&own, op}, {&ref, (*plain)(op)}} {
			enc := msgpack.NewEncoder(e.buf)
			enc.UseCompactInts(true)
			if err := enc.Encode(e.v); err != nil {
				t.Fatal(err)
			}
		}
		few := len(op.Attributes) <= 1 && len(op.Set) <= 1 && len(op.Merge) <= 1
		if few && !bytes.Equal(own.Bytes(), ref.Bytes()) {
			t.Fatalf("op %d %+v:\n own % x\n ref % x", i, op, own.Bytes(), ref.Bytes())
		}
		for j, b := range [][]byte{own.Bytes(), ref.Bytes()} {
			mine, mineErr := ownDecodedOp(b)
			theirs, theirErr := reflectDecodedOp(b)
			if mineErr != nil || theirErr != nil || !reflect.DeepEqual(mine, theirs) {
				t.Fatalf("op %d, encoding %d (% x):\n own %+v (%v)\n ref %+v (%v)", i, j, b, mine, mineErr, theirs, theirErr)
			}
		}
		if err := decodeBounded(own.Bytes(), &Op{}); err != nil {
			t.Fatalf("op %d: its encoding does not pass the peer's bounds: %v", i, err)
		}
	}
}

// FuzzOpDecodingMatchesReflection holds Op.DecodeMsgpack to reflection's
// result on any bytes that pass the peer's bounds: both refuse them, or
// both decode the same op.
func FuzzOpDecodingMatchesReflection(f *testing.F) {
	rng := rand.New(rand.NewPCG(13, 14))
	for range 8 {
		b, err := msgpack.Marshal(randomOp(rng))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x90})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Op is peer.SelfChecked, so CheckShape takes it whole; the
		// reflection decoder needs the walk of its fields.
		if peer.CheckValue(b, peer.MaxDepth) != nil || peer.CheckShape(b, &plainOp{}) != nil {
			return
		}
		mine, mineErr := ownDecodedOp(b)
		theirs, theirErr := reflectDecodedOp(b)
		if (mineErr == nil) != (theirErr == nil) || (mineErr == nil && !reflect.DeepEqual(mine, theirs)) {
			t.Fatalf("% x:\n own %+v (%v)\n ref %+v (%v)", b, mine, mineErr, theirs, theirErr)
		}
	})
}

// FuzzDecodeOp feeds hostile bytes to the op decoder (decodeBounded into
// an Op, as every request to a primary is decoded). It must never panic,
// never allocate more than sessionAllocFactor times the input plus
// fuzzAllocSlack, and every attribute value it returns must be exactly
// one msgpack value.
func FuzzDecodeOp(f *testing.F) {
	rng := rand.New(rand.NewPCG(15, 16))
	for range 4 {
		b, err := msgpack.Marshal(randomOp(rng))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	// An ext32 claiming a map of a million entries, where Set's map is.
	f.Add(append(append([]byte{0x82, 0xa1, 'k', 0x02, 0xa3}, "set"...), 0xc9, 0, 0, 0, 5, 0x30, 0xdf, 0x00, 0x10, 0, 0))
	f.Add([]byte{0xc7, 0x05, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff}) // the op itself such an ext
	f.Fuzz(func(t *testing.T, b []byte) {
		var op Op
		var err error
		n := allocated(func() { err = decodeBounded(b, &op) })
		if limit := uint64(sessionAllocFactor*len(b) + fuzzAllocSlack); n > limit {
			t.Fatalf("decoding %d bytes allocated %d (limit %d)", len(b), n, limit)
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("decoding failed with %v, not ErrInvalid", err)
			}
			return
		}
		for _, attrs := range []map[string]msgpack.RawMessage{op.Attributes, op.Set, op.Merge} {
			for name, v := range attrs {
				if err := peer.CheckValue(v, peer.MaxDepth); err != nil {
					t.Fatalf("decoded attribute %q is not one value: %v", name, err)
				}
			}
		}
	})
}
