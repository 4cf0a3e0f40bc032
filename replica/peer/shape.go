package peer

import (
	"bytes"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"
)

// CheckShape refuses msgpack bytes that would make msgpack.Unmarshal into
// v allocate what they claim rather than what they hold. Where the decoder
// expects a map, an array, a string or bytes and finds an extension, it
// unwraps it and takes the length the extension's payload claims (capped
// at a million entries): twenty bytes made a node allocate 100 MB. So an
// extension is accepted only where v's type takes one whole: a time.Time
// (msgpack timestamps), a msgpack.RawMessage (attribute values, kept as
// they are), an interface. Run it after CheckValue, which bounds every
// length b claims outside extensions; it walks b alongside v's type
// without decoding anything but map keys. Struct fields are matched by
// their msgpack tags as msgpack matches them; a type with its own
// DecodeMsgpack is checked as its underlying struct.
func CheckShape(b []byte, v any) error {
	t := reflect.TypeOf(v)
	if t == nil {
		return nil
	}
	r := bytes.NewReader(b)
	dec := msgpack.GetDecoder() // msgpack's own pool
	dec.Reset(r)
	err := checkShape(dec, t, 0)
	dec.Reset(nil) // the pool keeps no reference to b
	msgpack.PutDecoder(dec)
	if err != nil {
		return fmt.Errorf("msgpack value for %v: %w", t, err)
	}
	return nil
}

// Types CheckShape lets take an extension whole.
var (
	timeType = reflect.TypeOf(time.Time{})
	rawType  = reflect.TypeOf(msgpack.RawMessage(nil))
)

// checkShape checks the value at dec against t (see CheckShape). depth
// bounds the walk as CheckValue bounds the value.
func checkShape(dec *msgpack.Decoder, t reflect.Type, depth int) error {
	if depth > MaxDepth {
		return fmt.Errorf("nested deeper than %d", MaxDepth)
	}
	c, err := dec.PeekCode()
	if err != nil {
		return nil // CheckValue accepted the whole; the decoder reports the rest
	}
	if c == msgpcode.Nil || t == timeType || t == rawType || t.Kind() == reflect.Interface {
		return dec.Skip()
	}
	if t.Kind() == reflect.Pointer {
		return checkShape(dec, t.Elem(), depth)
	}
	isContainer := t.Kind() == reflect.Struct || t.Kind() == reflect.Map || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.String
	if msgpcode.IsExt(c) {
		if isContainer {
			return fmt.Errorf("an extension (type byte %#02x) where %v is expected", c, t)
		}
		return dec.Skip() // a number or a bool: the decoder refuses it, allocating nothing
	}
	switch t.Kind() {
	case reflect.Struct:
		return checkStruct(dec, t, depth)
	case reflect.Map:
		return checkMap(dec, t, depth)
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 {
			return dec.Skip() // bytes: not an extension (above), so CheckValue bounded them
		}
		if !isArray(c) {
			return dec.Skip() // the decoder refuses it
		}
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return nil
		}
		for range n {
			if err := checkShape(dec, t.Elem(), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return dec.Skip()
}

// checkStruct checks an encoding of struct type t, field by field: a map
// of field names, or an array of the fields in order (as_array).
func checkStruct(dec *msgpack.Decoder, t reflect.Type, depth int) error {
	c, _ := dec.PeekCode()
	if isArray(c) {
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return nil
		}
		order := fieldsInOrder(t)
		for i := range n {
			if i >= len(order) {
				if err := dec.Skip(); err != nil {
					return nil
				}
				continue
			}
			if err := checkShape(dec, order[i], depth+1); err != nil {
				return fmt.Errorf("field %d: %w", i, err)
			}
		}
		return nil
	}
	if !isMap(c) {
		return dec.Skip() // the decoder refuses it
	}
	n, err := dec.DecodeMapLen()
	if err != nil {
		return nil
	}
	fields := fieldsOf(t)
	for range n {
		if c, err := dec.PeekCode(); err == nil && msgpcode.IsExt(c) {
			return fmt.Errorf("an extension (type byte %#02x) as a field name of %v", c, t)
		}
		name, err := dec.DecodeString()
		if err != nil {
			return nil
		}
		ft, ok := fields[name]
		if !ok {
			if err := dec.Skip(); err != nil { // ignored by the decoder
				return nil
			}
			continue
		}
		if err := checkShape(dec, ft, depth+1); err != nil {
			return fmt.Errorf("field %q: %w", name, err)
		}
	}
	return nil
}

// checkMap checks a map of type t: its keys and values.
func checkMap(dec *msgpack.Decoder, t reflect.Type, depth int) error {
	c, _ := dec.PeekCode()
	if !isMap(c) {
		return dec.Skip() // the decoder refuses it
	}
	n, err := dec.DecodeMapLen()
	if err != nil {
		return nil
	}
	for range n {
		if err := checkShape(dec, t.Key(), depth+1); err != nil {
			return fmt.Errorf("a key: %w", err)
		}
		if err := checkShape(dec, t.Elem(), depth+1); err != nil {
			return err
		}
	}
	return nil
}

// isMap and isArray report whether c starts a map or an array.
func isMap(c byte) bool {
	return msgpcode.IsFixedMap(c) || c == msgpcode.Map16 || c == msgpcode.Map32
}

func isArray(c byte) bool {
	return msgpcode.IsFixedArray(c) || c == msgpcode.Array16 || c == msgpcode.Array32
}

// fieldsInOrder returns the types of struct type t's fields in the order
// an array encoding holds them: exported fields not tagged "-".
func fieldsInOrder(t reflect.Type) []reflect.Type {
	var out []reflect.Type
	for i := range t.NumField() {
		f := t.Field(i)
		if f.IsExported() && f.Tag.Get("msgpack") != "-" {
			out = append(out, f.Type)
		}
	}
	return out
}

// structFields caches fieldsOf per struct type.
var structFields sync.Map // reflect.Type → map[string]reflect.Type

// fieldsOf returns struct type t's fields by the names msgpack decodes
// them under: the tag's name, else the field's; "-" and unexported fields
// are left out, and anonymous struct fields without a name are inlined.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	if f, ok := structFields.Load(t); ok {
		return f.(map[string]reflect.Type)
	}
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("msgpack")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case tag == "-" || (!f.IsExported() && !f.Anonymous):
			continue
		case f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct:
			for k, v := range fieldsOf(f.Type) {
				out[k] = v
			}
			continue
		case name == "":
			name = f.Name
		}
		out[name] = f.Type
	}
	structFields.Store(t, out)
	return out
}

// decodeReply decodes a response body, which ReadFrame bounded with
// CheckValue, into reply once CheckShape has passed it.
func decodeReply(body []byte, reply any) error {
	if err := CheckShape(body, reply); err != nil {
		return fmt.Errorf("decode reply: %w", err)
	}
	if err := msgpack.Unmarshal(body, reply); err != nil {
		return fmt.Errorf("decode reply: %w", err)
	}
	return nil
}
