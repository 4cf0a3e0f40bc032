package replica

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/vmihailenco/msgpack/v5"
)

// Attributes keep a map of names to values as one encoding: sorted by
// name, so equal maps are equal bytes; decoded back whole, a value at a
// time, or by name; nil values and the empty map kept apart from none.
func TestAttributesRoundTrip(t *testing.T) {
	m := map[string]msgpack.RawMessage{"z": {0x01}, "a": {0xa1, 'x'}, "none": {0xc0}, "empty": nil}
	a := EncodeAttributes(m)
	again := EncodeAttributes(map[string]msgpack.RawMessage{"none": {0xc0}, "empty": {0xc0}, "a": {0xa1, 'x'}, "z": {0x01}})
	if !bytes.Equal(a, again) {
		t.Fatalf("equal maps encode differently:\n% x\n% x", a, again)
	}
	if a.Len() != 4 {
		t.Fatalf("Len = %d, want 4", a.Len())
	}
	var names []string
	if err := a.Range(func(name string, _ msgpack.RawMessage) bool { names = append(names, name); return true }); err != nil {
		t.Fatal(err)
	}
	if want := []string{"a", "empty", "none", "z"}; !slices.Equal(names, want) {
		t.Fatalf("Range visits %v, want %v", names, want)
	}
	back, err := a.Map()
	if err != nil || len(back) != 4 || !bytes.Equal(back["a"], []byte{0xa1, 'x'}) || !bytes.Equal(back["empty"], []byte{0xc0}) {
		t.Fatalf("Map = %v, %v", back, err)
	}
	if v, ok := a.Get("z"); !ok || !bytes.Equal(v, []byte{0x01}) {
		t.Fatalf("Get(z) = % x, %v", v, ok)
	}
	if _, ok := a.Get("y"); ok {
		t.Fatal("Get found an attribute that is not there")
	}
	for _, none := range []map[string]msgpack.RawMessage{nil, {}} {
		if a := EncodeAttributes(none); a != nil || a.Len() != 0 {
			t.Fatalf("no attributes encode as % x", a)
		}
	}
}

// Every header form of the map and of its names encodes as msgpack's
// decoder reads it, in a slice of exactly the encoding's size.
func TestAttributesEncodeEveryHeaderForm(t *testing.T) {
	for _, entries := range []int{1, 15, 16, 65535, 65536} {
		for _, nameLen := range []int{1, 31, 32, 255, 256, 65535, 65536} {
			if entries > 16 && nameLen > 32 {
				continue // enough bytes already
			}
			m := map[string]msgpack.RawMessage{}
			for i := range entries {
				name := fmt.Sprintf("%0*d", nameLen, i)
				m[name] = msgpack.RawMessage{byte(i % 100)}
			}
			a := EncodeAttributes(m)
			if len(a) != cap(a) {
				t.Fatalf("%d names of %d bytes: %d bytes in a slice of %d", entries, nameLen, len(a), cap(a))
			}
			var back map[string]msgpack.RawMessage
			if err := msgpack.Unmarshal(a, &back); err != nil || !maps.EqualFunc(back, m, func(x, y msgpack.RawMessage) bool { return bytes.Equal(x, y) }) {
				t.Fatalf("%d names of %d bytes: decoded to %d entries, %v", entries, nameLen, len(back), err)
			}
			if a.Len() != entries {
				t.Fatalf("%d names of %d bytes: Len = %d", entries, nameLen, a.Len())
			}
		}
	}
}

// Decoding attributes from a peer keeps their bytes and refuses what is
// not a map of string names to whole values; nil and the empty map are
// no attributes.
func TestAttributesDecodeChecksTheirShape(t *testing.T) {
	good := EncodeAttributes(map[string]msgpack.RawMessage{"n": {0x07}})
	for _, tc := range []struct {
		name string
		b    []byte
		ok   bool
		want []byte
	}{
		{"a map", good, true, good},
		{"nil", []byte{0xc0}, true, nil},
		{"an empty map", []byte{0x80}, true, nil},
		{"an integer", []byte{0x07}, false, nil},
		{"a number as a name", []byte{0x81, 0x01, 0x02}, false, nil},
		{"an array", []byte{0x91, 0x01}, false, nil},
		{"a name without its value", []byte{0x81, 0xa1, 'n'}, false, nil},
	} {
		var a Attributes
		err := msgpack.Unmarshal(tc.b, &a)
		if (err == nil) != tc.ok || (tc.ok && !bytes.Equal(a, tc.want)) {
			t.Errorf("%s (% x): % x, %v", tc.name, tc.b, a, err)
		}
		if !tc.ok && err != nil && tc.name != "a name without its value" && !errors.Is(err, errAttributesShape) {
			t.Errorf("%s: %v, want errAttributesShape", tc.name, err)
		}
	}
	// The decoded bytes are a slice of their own, not the frame's.
	frame := append([]byte(nil), good...)
	var a Attributes
	if err := msgpack.Unmarshal(frame, &a); err != nil {
		t.Fatal(err)
	}
	frame[len(frame)-1] = 0x09
	if v, _ := a.Get("n"); !bytes.Equal(v, []byte{0x07}) {
		t.Fatalf("changing the frame changed the decoded attributes: % x", v)
	}
}
