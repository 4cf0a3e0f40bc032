package httpapi

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
)

// allocated returns how many bytes f allocated on the heap, by the
// runtime's cumulative count (MemStats.TotalAlloc), which garbage
// collection does not lower. The count is process-wide, so another
// goroutine allocating meanwhile (a test's server winding down) adds to
// it; f is deterministic and runs allocatedRuns times, and the least
// count is f's own. Bounds built on it still carry a constant slack.
func allocated(f func()) uint64 {
	least := uint64(math.MaxUint64)
	for range allocatedRuns {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		f()
		runtime.ReadMemStats(&after)
		least = min(least, after.TotalAlloc-before.TotalAlloc)
	}
	return least
}

// allocatedRuns is how many times allocated measures f.
const allocatedRuns = 3

// The fuzz targets' allocation bound: body decoding may allocate at most
// fuzzAllocFactor times its input plus fuzzAllocSlack. The structural
// check (checkBody) runs first and refuses any length the input does not
// hold, any nesting past the limit and more than fuzzMaxAttributes
// attributes, so what the decoders build follows the input's bytes: msgpack
// values are kept as they are, JSON values are transcoded into one buffer
// (at most five times the input: a one-digit number becomes a 9-byte
// int64), and JSON and msgpack decoders buffer and copy the body. What
// does not follow the input's size is bounded by the limits: the
// checkers' and decoders' stacks (by the nesting limit) and the attribute
// maps (a few hundred bytes an attribute, by the attribute limit); the
// slack covers them and other goroutines.
const (
	fuzzAllocFactor   = 16
	fuzzAllocSlack    = 128 << 10
	fuzzMaxAttributes = 64
)

const fuzzID = "fuzz-session-000000001"

// fuzzBodies decodes b both as a session body and as a patch, failing
// the test if either allocates past the bound.
func fuzzBodies(t *testing.T, b []byte, asMsgpack bool) {
	limit := uint64(fuzzAllocFactor*len(b) + fuzzAllocSlack)
	var body *sessionBody
	var err error
	if n := allocated(func() { body, err = decodeSessionBody(b, asMsgpack, fuzzMaxAttributes) }); n > limit {
		t.Fatalf("decodeSessionBody of %d bytes allocated %d (limit %d)", len(b), n, limit)
	}
	if err == nil {
		for name, v := range body.Attributes {
			if err := tandem.CheckValue(v, tandem.MaxValueDepth); err != nil {
				t.Fatalf("accepted body %q: attribute %q: %v", b, name, err)
			}
		}
	}
	var op *tandem.Op
	if n := allocated(func() { op, err = decodePatch(b, asMsgpack, fuzzID, fuzzMaxAttributes) }); n > limit {
		t.Fatalf("decodePatch of %d bytes allocated %d (limit %d)", len(b), n, limit)
	}
	if err == nil {
		for name, v := range op.Set {
			if err := tandem.CheckValue(v, tandem.MaxValueDepth); err != nil {
				t.Fatalf("accepted patch %q: attribute %q: %v", b, name, err)
			}
		}
		if !asMsgpack {
			checkTranscoded(t, b, op)
		}
	}
}

// checkTranscoded checks that the values of a JSON patch were transcoded
// to msgpack values equal to what encoding/json makes of them (integers
// that fit as int64, other numbers as float64).
func checkTranscoded(t *testing.T, body []byte, op *tandem.Op) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(body, &obj); err != nil {
		t.Fatalf("accepted patch %q that encoding/json refuses: %v", body, err)
	}
	for name, raw := range obj {
		want, err := referenceJSON(raw)
		if err != nil {
			t.Fatalf("attribute %q: %v", name, err)
		}
		got, ok := op.Set[name]
		if !ok {
			got, ok = op.Merge[name]
		}
		if !ok {
			if want != nil || !slices.Contains(op.Delete, name) {
				t.Fatalf("patch %q lost attribute %q", body, name)
			}
			continue
		}
		var v any
		if err := msgpack.Unmarshal(got, &v); err != nil || !reflect.DeepEqual(v, want) {
			t.Fatalf("attribute %q = %s became %#v (%v), want %#v", name, raw, v, err, want)
		}
	}
}

// referenceJSON decodes a JSON value as the API did before it transcoded:
// encoding/json with numbers kept, then integers that fit as int64, other
// numbers as float64.
func referenceJSON(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var conv func(any) any
	conv = func(v any) any {
		switch x := v.(type) {
		case json.Number:
			if i, err := x.Int64(); err == nil {
				return i
			}
			f, _ := x.Float64()
			return f
		case map[string]any:
			for k, e := range x {
				x[k] = conv(e)
			}
		case []any:
			for i, e := range x {
				x[i] = conv(e)
			}
		}
		return v
	}
	return conv(v), nil
}

func TestTranscodeMatchesEncodingJSON(t *testing.T) {
	for _, s := range []string{
		`{"a":1,"b":-0,"c":1.5,"d":1e2,"e":1e-400,"f":-9223372036854775808,"g":9223372036854775808}`,
		`{"s":"plain","e":"esc\"aped\n\u00e9\ud83d\ude00","bad":"\ud800","raw":"` + "ÿþ ok Ã" + `"}`,
		`{"n":null,"t":true,"f":false,"o":{"x":{"y":[1,{"z":[]}]},"dup":1,"dup":2},"arr":[[],{},"",0]}`,
		` { "sp" : [ 1 , 2 ] , "long" : "` + strings.Repeat("x", 70000) + `" } `,
		`{"many":[` + strings.TrimSuffix(strings.Repeat("0,", 70000), ",") + `]}`,
	} {
		op, err := decodePatch([]byte(s), false, fuzzID, 0)
		if err != nil {
			t.Fatalf("%.60s: %v", s, err)
		}
		checkTranscoded(t, []byte(s), op)
	}
}

// FuzzDecodeJSONBody drives the JSON decoding of PUT, POST and PATCH
// bodies: never a panic, never an allocation past the bound.
func FuzzDecodeJSONBody(f *testing.F) {
	for _, s := range []string{
		`{"principal":"alice","attributes":{"cart":["tea",2],"n":1.5,"o":{"k":null}},"idle_timeout":"30m"}`,
		`{"a":null,"b":{"x":1},"c":"s"}`,
		`{"attributes":{"a":` + strings.Repeat("[", 1100) + strings.Repeat("]", 1100) + `}}`,
		`{"a":"\"[{\\"}`, `[]`, `{"principle":"x"}`, `{} {}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) { fuzzBodies(t, b, false) })
}

// FuzzDecodeMsgpackBody drives the msgpack decoding of PUT, POST and
// PATCH bodies: never a panic, never an allocation past the bound.
func FuzzDecodeMsgpackBody(f *testing.F) {
	put, _ := msgpack.Marshal(map[string]any{"principal": "dave", "attributes": map[string]any{"bin": []byte{0, 1, 2}, "n": 7}})
	patch, _ := msgpack.Marshal(map[string]any{"n": nil, "m": map[string]any{"k": 1}, "s": "x"})
	for _, b := range [][]byte{put, patch, {0xdf, 0xff, 0xff, 0xff, 0xff}, {0x81, 0xaa}, append(bytes.Repeat([]byte{0x91}, 1100), 0xc0)} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) { fuzzBodies(t, b, true) })
}

// TestDecodeAllocationWorstCases measures the inputs that cost the most
// per byte, so the fuzz bound is known to hold for them, not only for
// what the fuzzer happens to find. Each is an attribute map, sent as a
// PATCH body and inside a PUT body, with the fuzz targets' attribute limit
// and with the default one (1024: at that limit the attribute maps cost
// up to about 512 KiB).
func TestDecodeAllocationWorstCases(t *testing.T) {
	list := func(unit string, n int) string { return strings.TrimSuffix(strings.Repeat(unit+",", n), ",") }
	jsonAttrs := func(n int) []byte {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `"%d":1,`, i)
		}
		return []byte(`{` + strings.TrimSuffix(b.String(), ",") + `}`)
	}
	msgpackAttrs := func(n int) []byte {
		b := binary.BigEndian.AppendUint16([]byte{0xde}, uint16(n))
		for i := range n {
			b = append(b, 0xa4, byte('0'+i/1000), byte('0'+i/100%10), byte('0'+i/10%10), byte('0'+i%10), 0xc3)
		}
		return b
	}
	cases := []struct {
		name          string
		attrs         []byte
		asMsgpack     bool
		maxAttributes int
		slack         uint64 // beyond fuzzAllocSlack
		refused       error
	}{
		{"json: many empty objects", []byte(`{"a":[` + list("{}", 20000) + `]}`), false, fuzzMaxAttributes, 0, nil},
		{"json: many empty arrays", []byte(`{"a":[` + list("[]", 20000) + `]}`), false, fuzzMaxAttributes, 0, nil},
		{"json: many small numbers", []byte(`{"a":[` + list("1", 30000) + `]}`), false, fuzzMaxAttributes, 0, nil},
		{"json: many empty strings", []byte(`{"a":[` + list(`""`, 20000) + `]}`), false, fuzzMaxAttributes, 0, nil},
		{"json: invalid UTF-8 in a string", []byte(`{"a":"` + strings.Repeat("\xff", 20000) + `"}`), false, fuzzMaxAttributes, 0, nil},
		{"json: escapes", []byte(`{"a":"` + strings.Repeat(`\u00e9`, 10000) + `"}`), false, fuzzMaxAttributes, 0, nil},
		{"json: deep", []byte(`{"a":` + strings.Repeat("[", tandem.MaxValueDepth) + strings.Repeat("]", tandem.MaxValueDepth) + `}`), false, fuzzMaxAttributes, 0, nil},
		{"json: attributes at the fuzz limit", jsonAttrs(fuzzMaxAttributes), false, fuzzMaxAttributes, 0, nil},
		{"json: attributes past the limit", jsonAttrs(5000), false, 1024, 0, tandem.ErrTooLarge},
		{"json: attributes at the default limit", jsonAttrs(1024), false, 1024, 512 << 10, nil},
		{"msgpack: many empty maps", append([]byte{0x81, 0xa1, 'a', 0xdc, 0x4e, 0x20}, bytes.Repeat([]byte{0x80}, 20000)...), true, fuzzMaxAttributes, 0, nil},
		{"msgpack: deep", append(append([]byte{0x81, 0xa1, 'a'}, bytes.Repeat([]byte{0x91}, tandem.MaxValueDepth)...), 0xc0), true, fuzzMaxAttributes, 0, nil},
		{"msgpack: attributes at the fuzz limit", msgpackAttrs(fuzzMaxAttributes), true, fuzzMaxAttributes, 0, nil},
		{"msgpack: attributes past the limit", msgpackAttrs(5000), true, 1024, 0, tandem.ErrTooLarge},
		{"msgpack: attributes at the default limit", msgpackAttrs(1024), true, 1024, 512 << 10, nil},
	}
	for _, tc := range cases {
		put := []byte(`{"attributes":` + string(tc.attrs) + `}`)
		if tc.asMsgpack {
			put = append([]byte{0x81, 0xaa, 'a', 't', 't', 'r', 'i', 'b', 'u', 't', 'e', 's'}, tc.attrs...)
		}
		for _, kind := range []string{"PUT", "PATCH"} {
			var err error
			b := put
			if kind == "PATCH" {
				b = tc.attrs
			}
			n := allocated(func() {
				if kind == "PATCH" {
					_, err = decodePatch(b, tc.asMsgpack, fuzzID, tc.maxAttributes)
				} else {
					_, err = decodeSessionBody(b, tc.asMsgpack, tc.maxAttributes)
				}
			})
			t.Logf("%s as %s: %d bytes allocated %d (%.1f×)", tc.name, kind, len(b), n, float64(n)/float64(len(b)))
			if (tc.refused == nil && err != nil) || (tc.refused != nil && !errors.Is(err, tc.refused)) {
				t.Errorf("%s as %s: %v, want %v", tc.name, kind, err, tc.refused)
			}
			if limit := uint64(fuzzAllocFactor*len(b)+fuzzAllocSlack) + tc.slack; n > limit {
				t.Errorf("%s as %s: %d bytes allocated %d, over the bound %d", tc.name, kind, len(b), n, limit)
			}
		}
	}
}

// An extension where a body has structure is refused before the decoder
// unwraps it and allocates what its payload claims; inside an attribute
// value (a msgpack timestamp) it is kept.
func TestExtensionsOnlyInsideAttributeValues(t *testing.T) {
	attrs := append([]byte{0x81, 0xaa}, "attributes"...)
	mapInExt := []byte{0xc9, 0, 0, 0, 5, 0x30, 0xdf, 0x7f, 0xff, 0xff, 0xff} // ext32 whose payload claims a map of 2^31 entries
	stamp := []byte{0xd6, 0xff, 0x65, 0x5c, 0x00, 0x00}                      // a msgpack timestamp
	for _, tc := range []struct {
		name  string
		body  []byte
		patch bool
		ok    bool
	}{
		{"a patch that is an extension", []byte{0xd6, 0x30, 0xde, 0xc2, 0x72, 0x4d}, true, false},
		{"a body whose attributes are an extension", append(slices.Clone(attrs), mapInExt...), false, false},
		{"a patch naming an attribute with an extension", append([]byte{0x81}, append(slices.Clone(mapInExt), 0x01)...), true, false},
		{"a principal that is an extension", append(append([]byte{0x81, 0xa9}, "principal"...), mapInExt...), false, false},
		{"a timestamp in a read-only field", append(append([]byte{0x81, 0xaa}, "created_at"...), stamp...), false, true},
		{"a timestamp as an attribute value", append(append(slices.Clone(attrs), 0x81, 0xa1, 't'), stamp...), false, true},
		{"a timestamp patched in", append([]byte{0x81, 0xa1, 't'}, stamp...), true, true},
	} {
		var err error
		limit := uint64(fuzzAllocFactor*len(tc.body) + fuzzAllocSlack)
		n := allocated(func() {
			if tc.patch {
				_, err = decodePatch(tc.body, true, fuzzID, fuzzMaxAttributes)
			} else {
				_, err = decodeSessionBody(tc.body, true, fuzzMaxAttributes)
			}
		})
		if (err == nil) != tc.ok || n > limit {
			t.Errorf("%s: err %v, allocated %d (limit %d); want accepted=%v", tc.name, err, n, limit, tc.ok)
		}
	}
}
