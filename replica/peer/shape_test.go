package peer

import (
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// shapeInner and shapeOuter stand for the wire's request types: maps of
// attribute values, times, nested structs and slices of them.
type shapeInner struct {
	Attrs map[string]msgpack.RawMessage `msgpack:"at"`
	At    time.Time                     `msgpack:"t"`
}

type shapeOuter struct {
	Name   string            `msgpack:"n"`
	Inner  *shapeInner       `msgpack:"in"`
	List   []shapeInner      `msgpack:"l"`
	Counts map[string]uint64 `msgpack:"c"`
	Raw    msgpack.RawMessage
	Any    any         `msgpack:"any"`
	Next   *shapeOuter `msgpack:"nx"` // a type that holds itself
}

// An extension is refused where the decoder would unwrap it into a map
// (or any other structure) and accepted where the type takes it whole: a
// time, a raw value, an interface, an attribute value.
func TestCheckShape(t *testing.T) {
	bomb := []byte{0xc9, 0, 0, 0, 5, 0x30, 0xdf, 0x7f, 0xff, 0xff, 0xff} // ext32: a payload claiming a map of 2^31 entries
	str := func(s string) []byte { return append([]byte{0xa0 | byte(len(s))}, s...) }
	stamp, err := msgpack.Marshal(time.Unix(1700000000, 123456789))
	if err != nil {
		t.Fatal(err)
	}
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	cases := []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"a well-formed value", cat([]byte{0x83}, str("n"), str("x"), str("in"), []byte{0x82}, str("at"), []byte{0x81}, str("a"), stamp, str("t"), stamp, str("c"), []byte{0x81}, str("k"), []byte{0x01}), true},
		{"the value itself an extension", bomb, false},
		{"a map field an extension", cat([]byte{0x81}, str("c"), bomb), false},
		{"a nested struct's map an extension", cat([]byte{0x81}, str("in"), []byte{0x81}, str("at"), bomb), false},
		{"a map in a slice of structs an extension", cat([]byte{0x81}, str("l"), []byte{0x91, 0x81}, str("at"), bomb), false},
		{"a map key an extension", cat([]byte{0x81}, str("c"), []byte{0x81}, bomb, []byte{0x01}), false},
		{"a field name an extension", cat([]byte{0x81}, bomb, []byte{0x01}), false},
		{"a string field an extension", cat([]byte{0x81}, str("n"), bomb), false},
		{"an attribute value an extension", cat([]byte{0x81}, str("in"), []byte{0x81}, str("at"), []byte{0x81}, str("a"), bomb), true},
		{"a raw field an extension", cat([]byte{0x81}, str("Raw"), bomb), true},
		{"an interface field an extension", cat([]byte{0x81}, str("any"), bomb), true},
		{"an unknown field an extension", cat([]byte{0x81}, str("zz"), bomb), true},
		{"a map an extension in the type's own type", cat([]byte{0x81}, str("nx"), []byte{0x81}, str("c"), bomb), false},
		{"an extension three levels down the type's own type", cat([]byte{0x81}, str("nx"), []byte{0x81}, str("nx"), []byte{0x81}, str("n"), bomb), false},
		// A name longer than any field's (and than the walk keeps) is
		// consumed whole: the fields after it are still checked.
		{"a long unknown name, then a map an extension", cat([]byte{0x82, 0xd9, 200}, make([]byte, 200), []byte{0x01}, str("c"), bomb), false},
		{"a long unknown name, then a well-formed map", cat([]byte{0x82, 0xd9, 200}, make([]byte, 200), []byte{0x01}, str("c"), []byte{0x81}, str("k"), []byte{0x01}), true},
		{"a field name in bin, a map an extension", cat([]byte{0x81, 0xc4, 0x01, 'c'}, bomb), false},
	}
	for _, tc := range cases {
		if err := CheckValue(tc.b, MaxDepth); err != nil {
			t.Fatalf("%s: CheckValue: %v", tc.name, err)
		}
		var v shapeOuter
		if err := CheckShape(tc.b, &v); (err == nil) != tc.ok {
			t.Errorf("%s: CheckShape = %v, want accepted=%v", tc.name, err, tc.ok)
		}
	}
	// An array-encoded struct (the frame header) is checked field by field.
	h, err := msgpack.Marshal(Header{ID: 7, Kind: KindRequest, Method: "lease"})
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckShape(h, &Header{}); err != nil {
		t.Fatalf("a header: %v", err)
	}
}

// shapeEmbedded stands for a wire type that embeds an unexported struct,
// as the seat protocol's promise and accepted answers embed their ballot
// answer: msgpack inlines its fields, reads them from an array in
// place, and also takes the embedded value whole under its Go name.
type shapeEmbedded struct {
	shapeBase
	Tail uint64 `msgpack:"tl"`
}

type shapeBase struct {
	Head   string            `msgpack:"hd"`
	Counts map[string]uint64 `msgpack:"c"`
}

// An embedded struct's map is checked every way msgpack reaches it.
func TestCheckShapeEmbedded(t *testing.T) {
	bomb := []byte{0xc9, 0, 0, 0, 5, 0x30, 0xdf, 0x7f, 0xff, 0xff, 0xff}
	str := func(s string) []byte { return append([]byte{0xa0 | byte(len(s))}, s...) }
	cat := func(parts ...[]byte) []byte {
		var out []byte
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
	}{
		{"inlined, well-formed", cat([]byte{0x82}, str("hd"), str("x"), str("c"), []byte{0x81}, str("k"), []byte{0x01}), true},
		{"inlined, a map an extension", cat([]byte{0x81}, str("c"), bomb), false},
		{"as an array, a map an extension", cat([]byte{0x93}, str("x"), bomb, []byte{0x01}), false},
		{"under the embedded name, a map an extension", cat([]byte{0x81}, str("shapeBase"), []byte{0x81}, str("c"), bomb), false},
	} {
		if err := CheckValue(tc.b, MaxDepth); err != nil {
			t.Fatalf("%s: CheckValue: %v", tc.name, err)
		}
		var v shapeEmbedded
		if err := CheckShape(tc.b, &v); (err == nil) != tc.ok {
			t.Errorf("%s: CheckShape = %v, want accepted=%v", tc.name, err, tc.ok)
		}
	}
}
