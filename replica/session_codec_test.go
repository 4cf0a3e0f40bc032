package replica

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica/peer"
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

// plainSession is Session without its methods: what msgpack's
// reflection decodes.
type plainSession Session

// reflectDecoded decodes b as msgpack's reflection does: what
// Session.DecodeMsgpack replaces. A panic is an error.
func reflectDecoded(b []byte) (s Session, err error) {
	err = unmarshalRecovering(b, (*plainSession)(&s))
	return s, err
}

// ownDecoded decodes b with Session.DecodeMsgpack. A panic is an error.
func ownDecoded(b []byte) (s Session, err error) {
	err = unmarshalRecovering(b, &s)
	return s, err
}

// unmarshalRecovering is msgpack.Unmarshal, a panic turned into an error.
func unmarshalRecovering(b []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return msgpack.Unmarshal(b, v)
}

// Session.DecodeMsgpack reads what msgpack's reflection reads from the
// fields' tags: the same session from every encoding of random sessions,
// as a map, as an array of fields, or with fields nil; and its tag lists
// follow the structs' fields.
func TestSessionDecodingMatchesReflection(t *testing.T) {
	for i, f := range reflect.VisibleFields(reflect.TypeFor[Session]()) {
		if tag := strings.Split(f.Tag.Get("msgpack"), ",")[0]; i >= len(sessionTags) || sessionTags[i] != tag {
			t.Fatalf("Session field %d (%s) is tagged %q; sessionTags say otherwise: %v", i, f.Name, tag, sessionTags)
		}
	}
	for i, f := range reflect.VisibleFields(reflect.TypeFor[Applied]()) {
		if tag := strings.Split(f.Tag.Get("msgpack"), ",")[0]; i >= len(appliedTags) || appliedTags[i] != tag {
			t.Fatalf("Applied field %d (%s) is tagged %q; appliedTags say otherwise: %v", i, f.Name, tag, appliedTags)
		}
	}
	rng := rand.New(rand.NewPCG(3, 4))
	type plain Session
	for i := range 3000 {
		s := randomSession(rng)
		encodings := [][]byte{ownEncoded(t, s)}
		if b, err := msgpack.Marshal(map[string]any{"id": s.ID, "v": nil, "rq": []any{nil, map[string]any{"r": "x", "zz": 1}}, "unknown": []int{1}, "a-field-name-longer-than-any-tag": "x"}); err == nil {
			encodings = append(encodings, b)
		}
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseArrayEncodedStructs(true)
		if err := enc.Encode((*plain)(s)); err != nil {
			t.Fatal(err)
		}
		encodings = append(encodings, buf.Bytes(), []byte{0xc0})
		for j, b := range encodings {
			own, ownErr := ownDecoded(b)
			ref, refErr := reflectDecoded(b)
			if ownErr != nil || refErr != nil || !reflect.DeepEqual(own, ref) {
				t.Fatalf("session %d, encoding %d (% x):\n own %+v (%v)\n ref %+v (%v)", i, j, b, own, ownErr, ref, refErr)
			}
		}
	}
}

// FuzzSessionDecodingMatchesReflection holds Session.DecodeMsgpack to
// reflection's result on any bytes that pass the peer's bounds: both
// refuse them, or both decode the same session.
func FuzzSessionDecodingMatchesReflection(f *testing.F) {
	rng := rand.New(rand.NewPCG(5, 6))
	for range 8 {
		b, err := msgpack.Marshal(randomSession(rng))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x92, 0xa1, 'x', 0xc0})
	// Times that Decoder.DecodeTime takes and reflection refuses: the
	// extension type 13 (a CI fuzz run found this), a string, an array.
	f.Add([]byte{0x81, 0xa2, 'd', 'l', 0xd6, 0x0d, 0x3e, 0x0f, 0xdb, 0x6a})
	f.Add([]byte{0x81, 0xa1, 'c', 0xa3, '2', '0', '1'})
	f.Add([]byte{0x81, 0xa2, 'l', 'a', 0x92, 0x01, 0x02})
	f.Add([]byte{0x81, 0xa1, 'c', 0xd5, 0xff, 0x01, 0x02})
	f.Fuzz(func(t *testing.T, b []byte) {
		// Session is peer.SelfChecked, so CheckShape takes it whole; the
		// reflection decoder needs the walk of its fields.
		if peer.CheckValue(b, peer.MaxDepth) != nil || peer.CheckShape(b, &plainSession{}) != nil {
			return
		}
		own, ownErr := ownDecoded(b)
		ref, refErr := reflectDecoded(b)
		if (ownErr == nil) != (refErr == nil) || (ownErr == nil && !reflect.DeepEqual(own, ref)) {
			t.Fatalf("% x:\n own %+v (%v)\n ref %+v (%v)", b, own, ownErr, ref, refErr)
		}
	})
}

// encodedSize counts the bytes msgpack.Marshal would return, without
// keeping them.
func TestEncodedSizeCountsTheEncoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 2000 {
		s := randomSession(rng)
		b, err := msgpack.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if n, err := encodedSize(s); err != nil || n != len(b) {
			t.Fatalf("session %d: encodedSize = %d, %v; the encoding has %d bytes", i, n, err, len(b))
		}
	}
}

// The decoders of the two messages that carry a session on every write
// and every answer, OpReply and replicateRequest, read what msgpack's
// reflection reads, session nil or not, and their tag lists follow their
// fields.
func TestSessionCarriersDecodeAsReflectionDoes(t *testing.T) {
	type plainReply OpReply
	type plainReplicate replicateRequest
	for _, tc := range []struct {
		t    reflect.Type
		tags []string
	}{{reflect.TypeFor[OpReply](), replyTags[:]}, {reflect.TypeFor[replicateRequest](), replicateTags[:]}} {
		for i, f := range reflect.VisibleFields(tc.t) {
			if tag := strings.Split(f.Tag.Get("msgpack"), ",")[0]; i >= len(tc.tags) || tc.tags[i] != tag {
				t.Fatalf("%v field %d (%s) is tagged %q; the tag list says otherwise: %v", tc.t, i, f.Name, tag, tc.tags)
			}
		}
	}
	rng := rand.New(rand.NewPCG(17, 18))
	for i := range 1000 {
		s := randomSession(rng)
		if i%5 == 0 {
			s = nil
		}
		reply := OpReply{Session: s}
		replicate := replicateRequest{From: "n1", Epoch: rng.Uint64(), Partition: rng.IntN(271), Session: s, Floor: uint64(rng.IntN(3))}
		for range rng.IntN(3) {
			replicate.Confirmed = append(replicate.Confirmed, confirmItem{Partition: rng.IntN(271), ID: fmt.Sprint("s", rng.IntN(100)),
				Mark: copyMark{Version: rng.Uint64(), Stamp: rng.Uint64(), Writer: fmt.Sprint("n", rng.IntN(3))}})
		}
		b1, err1 := msgpack.Marshal((*plainReply)(&reply))
		b2, err2 := msgpack.Marshal((*plainReplicate)(&replicate))
		if err1 != nil || err2 != nil {
			t.Fatal(err1, err2)
		}
		var gotReply, refReply OpReply
		var gotReplicate, refReplicate replicateRequest
		if err := decodeBounded(b1, &gotReply); err != nil {
			t.Fatalf("reply %d: %v", i, err)
		}
		if err := decodeBounded(b2, &gotReplicate); err != nil {
			t.Fatalf("replicate %d: %v", i, err)
		}
		if err := msgpack.Unmarshal(b1, (*plainReply)(&refReply)); err != nil {
			t.Fatal(err)
		}
		if err := msgpack.Unmarshal(b2, (*plainReplicate)(&refReplicate)); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotReply, refReply) || !reflect.DeepEqual(gotReplicate, refReplicate) {
			t.Fatalf("%d decodes differently:\n own %+v %+v\n ref %+v %+v", i, gotReply, gotReplicate, refReply, refReplicate)
		}
	}
	// An extension where either message's map should be is refused.
	for _, v := range []any{&OpReply{}, &replicateRequest{}} {
		if err := decodeBounded([]byte{0xc7, 0x05, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff}, v); !errors.Is(err, ErrInvalid) {
			t.Fatalf("%T from an extension: %v, want ErrInvalid", v, err)
		}
	}
}

// TestOpRepliesAreAppendedAsReflectionEncodesThem: Session.AppendMsgpack
// appends EncodeMsgpack's bytes after whatever the slice holds, and a primary's answer to an op, appended whole into its
// frame (peer.Appender), is byte for byte the frame msgpack's reflection
// made of the reply before, for random sessions and for none.
func TestOpRepliesAreAppendedAsReflectionEncodesThem(t *testing.T) {
	type plainReply struct {
		Session *plainSession `msgpack:"s"`
	}
	if n, m := reflect.TypeFor[plainReply]().NumField(), reflect.TypeFor[OpReply]().NumField(); n != m {
		t.Fatalf("OpReply has %d fields, the test's copy of it %d", m, n)
	}
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range 3000 {
		s := randomSession(rng)
		if i%50 == 0 {
			s = nil
		}
		prefix := []byte{0x01, 0x02, 0x03}
		if got, want := s.AppendMsgpack(prefix[:3:3]), append(prefix, ownEncoded(t, s)...); !bytes.Equal(got, want) {
			t.Fatalf("session %d: appended after a prefix\n% x\nwant\n% x", i, got, want)
		}
		h := peer.Header{ID: uint64(i) * 7919, Kind: peer.KindResponse}
		var appended, encoded bytes.Buffer
		if err := peer.WriteFrame(&appended, h, OpReply{Session: s}, 1<<30); err != nil {
			t.Fatal(err)
		}
		if err := peer.WriteFrame(&encoded, h, plainReply{Session: (*plainSession)(s)}, 1<<30); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(appended.Bytes(), encoded.Bytes()) {
			t.Fatalf("session %d %+v: the appended reply's frame\n% x\nreflection's\n% x", i, s, appended.Bytes(), encoded.Bytes())
		}
		_, body, err := peer.ReadFrame(&appended, 1<<30)
		if err != nil {
			t.Fatalf("session %d: read the reply's frame: %v", i, err)
		}
		var got OpReply
		if err := decodeBounded(body, &got); err != nil || (got.Session == nil) != (s == nil) {
			t.Fatalf("session %d: decode the reply: %v (a session: %v)", i, err, got.Session != nil)
		}
	}
}

// TestAppendersMatchTheEncodersCalls: each appender writes what the
// msgpack Encoder's call it replaces writes, at the edges of every form.
func TestAppendersMatchTheEncodersCalls(t *testing.T) {
	encoded := func(f func(enc *msgpack.Encoder) error) []byte {
		var buf bytes.Buffer
		enc := msgpack.NewEncoder(&buf)
		enc.UseCompactInts(true)
		if err := f(enc); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	check := func(what string, got, want []byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: appended % x, encoder % x", what, got, want)
		}
	}
	ints := []int64{0, 1, 127, 128, 255, 256, 65535, 65536, math.MaxUint32, math.MaxUint32 + 1, math.MaxInt64,
		-1, -31, -32, -33, -127, -128, -129, -32767, -32768, -32769, math.MinInt32, math.MinInt32 - 1, math.MinInt64}
	for _, n := range ints {
		check(fmt.Sprint("int ", n), appendInt(nil, n), encoded(func(e *msgpack.Encoder) error { return e.EncodeInt(n) }))
		if n >= 0 {
			check(fmt.Sprint("uint ", n), peer.AppendUint(nil, uint64(n)), encoded(func(e *msgpack.Encoder) error { return e.EncodeUint(uint64(n)) }))
		}
	}
	check("uint max", peer.AppendUint(nil, math.MaxUint64), encoded(func(e *msgpack.Encoder) error { return e.EncodeUint(math.MaxUint64) }))
	for _, n := range []int{0, 1, 15, 16, 31, 32, 255, 256, 65535, 65536} {
		check(fmt.Sprint("map of ", n), appendMapLen(nil, n), encoded(func(e *msgpack.Encoder) error { return e.EncodeMapLen(n) }))
		check(fmt.Sprint("array of ", n), appendArrayLen(nil, n), encoded(func(e *msgpack.Encoder) error { return e.EncodeArrayLen(n) }))
		s := strings.Repeat("s", n)
		check(fmt.Sprint("string of ", n), peer.AppendString(nil, s), encoded(func(e *msgpack.Encoder) error { return e.EncodeString(s) }))
	}
	for _, secs := range []int64{0, 1, 1<<32 - 1, 1 << 32, 1<<33 - 1, 1 << 33, 1<<34 - 1, 1 << 34, 1 << 40, -1, -1 << 40} {
		for _, nsec := range []int64{0, 1, 999_999_999} {
			tm := time.Unix(secs, nsec)
			check(fmt.Sprint("time ", secs, ".", nsec), appendTime(nil, tm), encoded(func(e *msgpack.Encoder) error { return e.EncodeTime(tm) }))
		}
	}
	check("zero time", appendTime(nil, time.Time{}), encoded(func(e *msgpack.Encoder) error { return e.EncodeTime(time.Time{}) }))
}

// TestReplicatedWritesAreAppendedAsReflectionEncodesThem: a primary's
// replicated write, appended into its frame (peer.Appender), is byte for
// byte the frame msgpack's reflection made of it before, with and without
// a floor and confirmations, and the buddy decodes it.
func TestReplicatedWritesAreAppendedAsReflectionEncodesThem(t *testing.T) {
	type plainMark copyMark
	type plainItem struct {
		Partition int       `msgpack:"p"`
		ID        string    `msgpack:"id"`
		Mark      plainMark `msgpack:"m"`
	}
	type plainRequest struct {
		From      string        `msgpack:"f"`
		Epoch     uint64        `msgpack:"e"`
		Partition int           `msgpack:"p"`
		Session   *plainSession `msgpack:"s"`
		Floor     uint64        `msgpack:"fl,omitempty"`
		Confirmed []plainItem   `msgpack:"c,omitempty"`
	}
	if n, m := reflect.TypeFor[plainRequest]().NumField(), reflect.TypeFor[replicateRequest]().NumField(); n != m {
		t.Fatalf("replicateRequest has %d fields, the test's copy of it %d", m, n)
	}
	rng := rand.New(rand.NewPCG(9, 10))
	pick := func(vs ...uint64) uint64 { return vs[rng.IntN(len(vs))] }
	num := func() uint64 { return pick(0, 1, 127, 128, 65536, math.MaxUint32+1, math.MaxUint64) }
	part := func() int { return int(pick(0, 1, 127, 128, 255, 256, 1<<20)) }
	for i := range 3000 {
		req := replicateRequest{From: strings.Repeat("n", rng.IntN(40)), Epoch: num(), Partition: part(), Session: randomSession(rng), Floor: num()}
		plain := plainRequest{From: req.From, Epoch: req.Epoch, Partition: req.Partition, Session: (*plainSession)(req.Session), Floor: req.Floor}
		if i%3 == 0 {
			req.Confirmed = []confirmItem{} // empty: left out, as nil is
		}
		for range rng.IntN(20) {
			c := confirmItem{Partition: part(), ID: sessionID(rng.IntN(1000)), Mark: copyMark{Version: num(), Stamp: num(), Writer: strings.Repeat("w", rng.IntN(3)*20)}}
			req.Confirmed = append(req.Confirmed, c)
			plain.Confirmed = append(plain.Confirmed, plainItem{Partition: c.Partition, ID: c.ID, Mark: plainMark(c.Mark)})
		}
		h := peer.Header{ID: uint64(i), Kind: peer.KindRequest, Method: methodReplicate}
		var appended, encoded bytes.Buffer
		if err := peer.WriteFrame(&appended, h, req, 1<<30); err != nil {
			t.Fatal(err)
		}
		if err := peer.WriteFrame(&encoded, h, plain, 1<<30); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(appended.Bytes(), encoded.Bytes()) {
			t.Fatalf("request %d: the appended frame\n% x\nreflection's\n% x", i, appended.Bytes(), encoded.Bytes())
		}
		_, body, err := peer.ReadFrame(&appended, 1<<30)
		if err != nil {
			t.Fatal(err)
		}
		var got replicateRequest
		if err := decodeBounded(body, &got); err != nil {
			t.Fatalf("request %d: the buddy cannot decode it: %v", i, err)
		}
		if got.From != req.From || got.Epoch != req.Epoch || got.Partition != req.Partition || got.Floor != req.Floor ||
			len(got.Confirmed) != len(req.Confirmed) || got.Session == nil || got.Session.Version != req.Session.Version {
			t.Fatalf("request %d decodes to %+v, want %+v", i, got, req)
		}
	}
}
