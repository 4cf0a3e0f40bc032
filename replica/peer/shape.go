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
// DecodeMsgpack is checked as its underlying struct, unless it is
// SelfChecked.
func CheckShape(b []byte, v any) error {
	t := reflect.TypeOf(v)
	if t == nil {
		return nil
	}
	plan := planOf(t)
	if plan.kind == planWhole {
		return nil // nothing to walk: v takes any value whole, or checks itself
	}
	w := &shapeWalk{dec: msgpack.GetDecoder()} // msgpack's own pool
	w.r.Reset(b)
	w.dec.Reset(&w.r)
	err := plan.check(w, 0)
	w.dec.Reset(nil) // the pool keeps no reference to b
	msgpack.PutDecoder(w.dec)
	if err != nil {
		return fmt.Errorf("msgpack value for %v: %w", t, err)
	}
	return nil
}

// SelfChecked is a type whose DecodeMsgpack refuses a msgpack extension
// wherever it expects a map (it never calls msgpack's DecodeMapLen, which
// unwraps one), so that its decoding allocates no more than the bytes
// hold once CheckValue has bounded them. CheckShape takes a value of such
// a type whole, without walking it: the type checks itself as it decodes.
type SelfChecked interface {
	// DecodesExtensionsSafely marks the type; it does nothing.
	DecodesExtensionsSafely()
}

// Types CheckShape lets take an extension whole.
var (
	timeType        = reflect.TypeOf(time.Time{})
	rawType         = reflect.TypeOf(msgpack.RawMessage(nil))
	selfCheckedType = reflect.TypeFor[SelfChecked]()
)

// shapeWalk is one CheckShape's state: the decoder over the bytes, and
// room for a field name (fieldName), allocated once per check.
type shapeWalk struct {
	r   bytes.Reader
	dec *msgpack.Decoder
	buf [fieldNameMax]byte
}

// shapePlan is how CheckShape walks the encoding of one type, worked out
// once per type (planOf) so that a check looks nothing up by reflection.
// A pointer's plan is its element's: the walk is the same.
type shapePlan struct {
	t    reflect.Type
	kind planKind
	// planStruct: the fields by the names msgpack decodes them under,
	// and in the order an array encoding holds them.
	fields map[string]*shapePlan
	order  []*shapePlan
	// planMap: its keys' and values' plans; planList: elem only.
	key, elem *shapePlan
}

// planKind says what a shapePlan does with the value it meets.
type planKind uint8

const (
	// planWhole takes any value whole, an extension too: time.Time
	// (msgpack timestamps), msgpack.RawMessage, an interface, a
	// SelfChecked type.
	planWhole planKind = iota
	// planScalar is a number or a bool: an extension there is refused by
	// the decoder, allocating nothing, so it is skipped.
	planScalar
	// planFlat is a string or bytes: no extension; CheckValue bounded
	// the rest.
	planFlat
	planList
	planStruct
	planMap
)

// shapePlans caches planOf per type.
var shapePlans sync.Map // reflect.Type → *shapePlan

// planOf returns type t's plan, compiling it the first time.
func planOf(t reflect.Type) *shapePlan {
	if p, ok := shapePlans.Load(t); ok {
		return p.(*shapePlan)
	}
	p := compilePlan(t, map[reflect.Type]*shapePlan{})
	shapePlans.Store(t, p)
	return p
}

// compilePlan builds t's plan; seen holds the plans under construction,
// so that a recursive type refers to its own.
func compilePlan(t reflect.Type, seen map[reflect.Type]*shapePlan) *shapePlan {
	for t.Kind() == reflect.Pointer && t != timeType && t != rawType {
		t = t.Elem()
	}
	if p, ok := seen[t]; ok {
		return p
	}
	p := &shapePlan{t: t}
	seen[t] = p
	switch {
	case t == timeType || t == rawType || t.Kind() == reflect.Interface:
		p.kind = planWhole
	case t.Implements(selfCheckedType) || reflect.PointerTo(t).Implements(selfCheckedType):
		p.kind = planWhole // it checks itself (SelfChecked)
	case t.Kind() == reflect.String:
		p.kind = planFlat
	case (t.Kind() == reflect.Slice || t.Kind() == reflect.Array) && t.Elem().Kind() == reflect.Uint8:
		p.kind = planFlat
	case t.Kind() == reflect.Slice || t.Kind() == reflect.Array:
		p.kind, p.elem = planList, compilePlan(t.Elem(), seen)
	case t.Kind() == reflect.Map:
		p.kind, p.key, p.elem = planMap, compilePlan(t.Key(), seen), compilePlan(t.Elem(), seen)
	case t.Kind() == reflect.Struct:
		p.kind, p.fields = planStruct, map[string]*shapePlan{}
		for name, ft := range fieldsOf(t) {
			p.fields[name] = compilePlan(ft, seen)
		}
		for _, ft := range fieldsInOrder(t) {
			p.order = append(p.order, compilePlan(ft, seen))
		}
	default:
		p.kind = planScalar
	}
	return p
}

// check checks the value at dec against the plan (see CheckShape). depth
// bounds the walk as CheckValue bounds the value.
func (p *shapePlan) check(w *shapeWalk, depth int) error {
	dec := w.dec
	if depth > MaxDepth {
		return fmt.Errorf("nested deeper than %d", MaxDepth)
	}
	c, err := dec.PeekCode()
	if err != nil {
		return nil // CheckValue accepted the whole; the decoder reports the rest
	}
	if c == msgpcode.Nil || p.kind == planWhole {
		return dec.Skip()
	}
	if msgpcode.IsExt(c) {
		if p.kind != planScalar {
			return fmt.Errorf("an extension (type byte %#02x) where %v is expected", c, p.t)
		}
		return dec.Skip() // a number or a bool: the decoder refuses it, allocating nothing
	}
	switch p.kind {
	case planStruct:
		return p.checkStruct(w, c, depth)
	case planMap:
		return p.checkMap(w, c, depth)
	case planList:
		if !isArray(c) {
			return dec.Skip() // the decoder refuses it
		}
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return nil
		}
		for range n {
			if err := p.elem.check(w, depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	return dec.Skip() // a scalar, or a string or bytes: not an extension (above), so CheckValue bounded them
}

// checkStruct checks an encoding of a struct, starting with code c,
// field by field: a map of field names, or an array of the fields in
// order (as_array).
func (p *shapePlan) checkStruct(w *shapeWalk, c byte, depth int) error {
	dec := w.dec
	if isArray(c) {
		n, err := dec.DecodeArrayLen()
		if err != nil {
			return nil
		}
		for i := range n {
			if i >= len(p.order) {
				if err := dec.Skip(); err != nil {
					return nil
				}
				continue
			}
			if err := p.order[i].check(w, depth+1); err != nil {
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
	for range n {
		if c, err := dec.PeekCode(); err == nil && msgpcode.IsExt(c) {
			return fmt.Errorf("an extension (type byte %#02x) as a field name of %v", c, p.t)
		}
		name, ok := fieldName(dec, w.buf[:])
		if !ok {
			return nil // the decoder reports it
		}
		fp, known := p.fields[string(name)]
		if !known {
			if err := dec.Skip(); err != nil { // ignored by the decoder
				return nil
			}
			continue
		}
		if err := fp.check(w, depth+1); err != nil {
			return fmt.Errorf("field %q: %w", name, err)
		}
	}
	return nil
}

// fieldNameMax bounds the field names fieldName keeps: longer ones name
// no field of any type Tandem decodes.
const fieldNameMax = 64

// fieldName reads a field name as msgpack's struct decoder does (a str or
// bin, or nil for ""), into buf when it fits, without allocating. A name
// longer than buf is consumed and returned empty. ok is false when the
// bytes are not a name.
func fieldName(dec *msgpack.Decoder, buf []byte) (name []byte, ok bool) {
	n, err := dec.DecodeBytesLen()
	if err != nil {
		return nil, false
	}
	if n <= 0 {
		return buf[:0], true
	}
	if n <= len(buf) {
		if dec.ReadFull(buf[:n]) != nil {
			return nil, false
		}
		return buf[:n], true
	}
	for n > 0 { // longer than any field's name: consumed, matching none
		chunk := min(n, len(buf))
		if dec.ReadFull(buf[:chunk]) != nil {
			return nil, false
		}
		n -= chunk
	}
	return buf[:0], true
}

// checkMap checks a map, starting with code c: its keys and values.
func (p *shapePlan) checkMap(w *shapeWalk, c byte, depth int) error {
	dec := w.dec
	if !isMap(c) {
		return dec.Skip() // the decoder refuses it
	}
	n, err := dec.DecodeMapLen()
	if err != nil {
		return nil
	}
	for range n {
		if err := p.key.check(w, depth+1); err != nil {
			return fmt.Errorf("a key: %w", err)
		}
		if err := p.elem.check(w, depth+1); err != nil {
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
		tag := f.Tag.Get("msgpack")
		switch {
		case tag == "-" || (!f.IsExported() && !f.Anonymous):
			continue
		case f.Anonymous && f.Type.Kind() == reflect.Struct && !strings.Contains(tag, "noinline"):
			out = append(out, fieldsInOrder(f.Type)...) // inlined, as msgpack's array decoding takes them
			continue
		}
		out = append(out, f.Type)
	}
	return out
}

// fieldsOf returns struct type t's fields by the names msgpack decodes
// them under: the tag's name, else the field's; "-" and unexported fields
// are left out, and anonymous struct fields without a name are inlined.
func fieldsOf(t reflect.Type) map[string]reflect.Type {
	out := map[string]reflect.Type{}
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("msgpack")
		name, _, _ := strings.Cut(tag, ",")
		switch {
		case tag == "-" || (!f.IsExported() && !f.Anonymous):
			continue
		case f.Anonymous && f.Type.Kind() == reflect.Struct && !strings.Contains(tag, "noinline"):
			for k, v := range fieldsOf(f.Type) {
				out[k] = v
			}
			if name == "" {
				name = f.Name
			}
			out[name] = f.Type // msgpack also decodes the whole embedded value under its name
			continue
		case name == "":
			name = f.Name
		}
		out[name] = f.Type
	}
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
