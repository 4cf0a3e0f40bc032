package replica

import (
	"errors"
	"reflect"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// seatWireSamples are one message of every kind, every field set.
func seatWireSamples() []any {
	h := run{"h", "7"}
	cfg := cfgOf(4, "a", "b", "c")
	next := cfgOf(5, "a", "b", "c", "d")
	numbers := seatNumbers{"a": 1, "b": 131073}
	revoked := revocations{h: 3, run{"x", "1"}: 1}
	ballot := answerOf(run{"b", "2"}, cfg, numbers)
	decide := seatDecide{Config: next, Revoked: revoked, Numbers: numbers}
	return []any{
		seatGrantAsk{Holder: h, Number: 65537, Epoch: 2, Known: 4},
		seatGrantAnswer{Seat: run{"a", "1"}, Config: cfg, Number: 1, Numbers: numbers, Granted: true, Epoch: 2, Decision: &decide},
		seatRevokeAsk{Holder: h, Epoch: 2},
		seatRevokeAnswer{Seat: run{"a", "1"}, Config: cfg, Number: 1, Numbers: numbers, Retry: true, Remaining: 123456789},
		seatPrepare{Version: 5, Ballot: seatBallot{Round: 9, Proposer: "b"}},
		seatPromise{seatBallotAnswer: ballot, Accepted: seatProposal{Ballot: seatBallot{Round: 8, Proposer: "c"}, Config: next}, Revoked: revoked},
		seatAccept{Proposal: seatProposal{Ballot: seatBallot{Round: 9, Proposer: "b"}, Config: next}},
		seatAccepted{seatBallotAnswer: ballot},
		decide,
		seatStateAsk{From: run{"d", "3"}, Number: 196609},
		seatState{Seat: run{"c", "1"}, Number: 1, For: 196609, Numbers: numbers, Active: true, Config: cfg, Sealed: true,
			Promised: seatBallot{Round: 9, Proposer: "b"}, Accepted: seatProposal{Ballot: seatBallot{Round: 8, Proposer: "c"}, Config: next}, Revoked: revoked},
		seatState{Seat: run{"e", "2"}, Recovering: true, Known: 4},
	}
}

// answerOf is a ballot answer with every field set.
func answerOf(seat run, cfg seatConfig, numbers seatNumbers) seatBallotAnswer {
	return seatBallotAnswer{Seat: seat, Config: cfg, Number: 131073, Numbers: numbers, OK: true, Promised: seatBallot{Round: 9, Proposer: "b"}}
}

// Every seat message crosses the wire whole: what decodes is what was
// encoded, field by field.
func TestSeatMessagesCrossTheWireWhole(t *testing.T) {
	for _, m := range seatWireSamples() {
		b, err := encodeSeat(m)
		if err != nil {
			t.Fatalf("encode %T: %v", m, err)
		}
		got, err := decodeSeat(b)
		if err != nil {
			t.Fatalf("decode %T: %v", m, err)
		}
		if !reflect.DeepEqual(got, m) {
			t.Errorf("%T crossed the wire as\n%+v\nnot\n%+v", m, got, m)
		}
	}
	if _, err := encodeSeat("hello"); !errors.Is(err, errSeatWire) {
		t.Fatalf("encoding a string: %v, want errSeatWire", err)
	}
}

// A body that is not exactly one seat message is refused as invalid.
func TestSeatWireRefusesWhatIsNotOneMessage(t *testing.T) {
	two, err := msgpack.Marshal(&seatWire{Prepare: &seatPrepare{Version: 1}, Accept: &seatAccept{}})
	if err != nil {
		t.Fatal(err)
	}
	none, err := msgpack.Marshal(&seatWire{})
	if err != nil {
		t.Fatal(err)
	}
	badRun, err := msgpack.Marshal(map[string]any{"ra": map[string]any{"Holder": []string{"a", "1", "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	badRevoked, err := msgpack.Marshal(map[string]any{"de": map[string]any{"Revoked": [][]any{{"a", "1"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range map[string][]byte{
		"two messages":          two,
		"no message":            none,
		"a run of three values": badRun,
		"a revocation of two":   badRevoked,
		"not msgpack":           {0xc1},
		"a claimed huge map":    {0xdf, 0xff, 0xff, 0xff, 0xff},
	} {
		if _, err := decodeSeat(b); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// FuzzDecodeSeat: no bytes make decodeSeat panic or allocate past a
// bound in their length, and what it accepts encodes again to a message
// that decodes the same.
func FuzzDecodeSeat(f *testing.F) {
	for _, m := range seatWireSamples() {
		b, err := encodeSeat(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m any
		var err error
		// What the decoders build follows the bytes: runs, names and
		// numbers as they are, maps of them. 16 times the input plus
		// the slack the other decoders' bounds allow.
		if n := allocated(func() { m, err = decodeSeat(b) }); n > uint64(16*len(b)+128<<10) {
			t.Fatalf("decodeSeat of %d bytes allocated %d", len(b), n)
		}
		if err != nil {
			return
		}
		again, err := encodeSeat(m)
		if err != nil {
			t.Fatalf("accepted %T does not encode: %v", m, err)
		}
		m2, err := decodeSeat(again)
		if err != nil || !reflect.DeepEqual(normalSeat(m), normalSeat(m2)) {
			t.Fatalf("accepted %+v, re-encoded as %+v (%v)", m, m2, err)
		}
	})
}

// normalSeat returns m with empty revocations as nil, which the wire
// does not tell apart.
func normalSeat(m any) any {
	v := reflect.ValueOf(&m).Elem().Elem()
	c := reflect.New(v.Type()).Elem()
	c.Set(v)
	var walk func(reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Struct:
			for i := range v.NumField() {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i))
				}
			}
		case reflect.Pointer:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Map:
			if v.Len() == 0 && v.CanSet() {
				v.Set(reflect.Zero(v.Type()))
			}
		}
	}
	walk(c)
	return c.Interface()
}

// An embedded struct's fields are reached two more ways than by their
// own names, both bounded: as array elements (msgpack decodes a struct
// from an array of its fields, an embedded struct's inlined), and as the
// embedded value whole under its Go name. A review found a 22-byte and a
// 39-byte seatAccepted each allocating 56 MB through them, an ext8
// wrapping a map32 header claiming 1,048,576 entries, before
// peer.CheckShape took embedded structs as msgpack does.
func TestSeatWireBoundsEmbeddedFields(t *testing.T) {
	asArray := []byte{
		0x81, 0xa2, 'a', 'd', // {"ad":
		0x96,                       // [6 fields of seatAccepted, inlined]
		0x92, 0xa1, 'a', 0xa1, '1', // Seat ["a","1"]
		0xc0,                                           // Config nil
		0x01,                                           // Number
		0xc7, 0x05, 0x01, 0xdf, 0x00, 0x10, 0x00, 0x00, // Numbers: ext8 wrapping map32 of 1<<20
		0xc3, // OK
		0xc0, // Promised
	}
	byName := append([]byte{0x81, 0xa2, 'a', 'd', 0x81, 0xb0}, "seatBallotAnswer"...)
	byName = append(byName, 0x81, 0xa7)
	byName = append(byName, "Numbers"...)
	byName = append(byName, 0xc7, 0x05, 0x01, 0xdf, 0x00, 0x10, 0x00, 0x00)
	for name, body := range map[string][]byte{"as an array": asArray, "under the embedded name": byName} {
		var err error
		n := allocated(func() { _, err = decodeSeat(body) })
		if n > 64<<10 {
			t.Errorf("%s: decoding %d bytes allocated %d", name, len(body), n)
		}
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}
