package replica

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/vmihailenco/msgpack/v5"
)

// The seat protocol's messages on the wire (docs/design/LEASES-AT-SCALE.md,
// step 5). Each message travels as a seatWire, msgpack, with exactly one
// field set; its types are the protocol's own (seats.go), whose fields are
// all exported but for two: a run, sent as [name, incarnation], and the
// revocations, sent as a list of [name, incarnation, epoch]. Both decode
// themselves without msgpack's map decoding, so a body checked by
// peer.CheckValue decodes without allocating past its bytes
// (decodeBounded). The explorer sends every message of a share of its
// seeds through this encoding, so that what its runs hear is what the wire
// carries.

// seatWire is one seat message: exactly one field is set.
type seatWire struct {
	GrantAsk     *seatGrantAsk     `msgpack:"ga,omitempty"`
	GrantAnswer  *seatGrantAnswer  `msgpack:"gr,omitempty"`
	RevokeAsk    *seatRevokeAsk    `msgpack:"ra,omitempty"`
	RevokeAnswer *seatRevokeAnswer `msgpack:"rr,omitempty"`
	Prepare      *seatPrepare      `msgpack:"pp,omitempty"`
	Promise      *seatPromise      `msgpack:"pr,omitempty"`
	Accept       *seatAccept       `msgpack:"ac,omitempty"`
	Accepted     *seatAccepted     `msgpack:"ad,omitempty"`
	Decide       *seatDecide       `msgpack:"de,omitempty"`
	StateAsk     *seatStateAsk     `msgpack:"sa,omitempty"`
	State        *seatState        `msgpack:"st,omitempty"`
}

// errSeatWire is a seat message that is not one of the protocol's.
var errSeatWire = errors.New("not one seat message")

// encodeSeat encodes body, one of the protocol's messages: it goes in
// the seatWire field of its type.
func encodeSeat(body any) ([]byte, error) {
	var w seatWire
	v, t := reflect.ValueOf(&w).Elem(), reflect.PointerTo(reflect.TypeOf(body))
	set := false
	for i := range v.NumField() {
		if f := v.Field(i); f.Type() == t {
			p := reflect.New(t.Elem())
			p.Elem().Set(reflect.ValueOf(body))
			f.Set(p)
			set = true
		}
	}
	if !set {
		return nil, fmt.Errorf("%w: %T", errSeatWire, body)
	}
	out, err := msgpack.Marshal(&w)
	if err != nil {
		return nil, fmt.Errorf("encode %T: %w", body, err)
	}
	return out, nil
}

// decodeSeat decodes a seat message from another node's bytes: bounded
// (decodeBounded), and exactly one message.
func decodeSeat(b []byte) (any, error) {
	var w seatWire
	if err := decodeBounded(b, &w); err != nil {
		return nil, fmt.Errorf("decode seat message: %w", err)
	}
	var out []any
	v := reflect.ValueOf(w)
	for i := range v.NumField() {
		if f := v.Field(i); !f.IsNil() {
			out = append(out, f.Elem().Interface())
		}
	}
	if len(out) != 1 {
		return nil, fmt.Errorf("%w: %w: %d messages in one", ErrInvalid, errSeatWire, len(out))
	}
	return out[0], nil
}

// EncodeMsgpack writes r as [name, incarnation].
func (r run) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(2); err != nil {
		return err
	}
	if err := enc.EncodeString(r.name); err != nil {
		return err
	}
	return enc.EncodeString(r.incarnation)
}

// DecodeMsgpack reads [name, incarnation].
func (r *run) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	if n != 2 {
		return fmt.Errorf("a run is [name, incarnation], not %d values", n)
	}
	if r.name, err = dec.DecodeString(); err != nil {
		return err
	}
	r.incarnation, err = dec.DecodeString()
	return err
}

// DecodesExtensionsSafely marks run as peer.SelfChecked: it decodes an
// array of two strings, never a map.
func (*run) DecodesExtensionsSafely() {}

// EncodeMsgpack writes r as a list of [name, incarnation, epoch].
func (r revocations) EncodeMsgpack(enc *msgpack.Encoder) error {
	if err := enc.EncodeArrayLen(len(r)); err != nil {
		return err
	}
	for h, e := range r {
		if err := enc.EncodeArrayLen(3); err != nil {
			return err
		}
		if err := enc.EncodeString(h.name); err != nil {
			return err
		}
		if err := enc.EncodeString(h.incarnation); err != nil {
			return err
		}
		if err := enc.EncodeUint(e); err != nil {
			return err
		}
	}
	return nil
}

// DecodeMsgpack reads a list of [name, incarnation, epoch]; nil stays
// an empty map.
func (r *revocations) DecodeMsgpack(dec *msgpack.Decoder) error {
	n, err := dec.DecodeArrayLen()
	if err != nil {
		return err
	}
	*r = revocations{}
	for range max(n, 0) {
		if m, err := dec.DecodeArrayLen(); err != nil {
			return err
		} else if m != 3 {
			return fmt.Errorf("a revocation is [name, incarnation, epoch], not %d values", m)
		}
		var h run
		if h.name, err = dec.DecodeString(); err != nil {
			return err
		}
		if h.incarnation, err = dec.DecodeString(); err != nil {
			return err
		}
		e, err := dec.DecodeUint64()
		if err != nil {
			return err
		}
		(*r)[h] = max((*r)[h], e)
	}
	return nil
}

// DecodesExtensionsSafely marks revocations as peer.SelfChecked: it
// decodes arrays, never a map.
func (*revocations) DecodesExtensionsSafely() {}
