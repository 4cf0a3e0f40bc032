package tandem

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica"
)

// Op has every field of the engine's op, under the same name and type
// (Kind aside, and FirstSent, a time.Time here and Unix nanoseconds on
// the wire), so engineOp can carry each one. NotAfter is the peer wire's,
// set by whoever sends an op to its primary, never by apps.
func TestOpMirrorsEngineOp(t *testing.T) {
	ours, theirs := reflect.TypeFor[Op](), reflect.TypeFor[replica.Op]()
	if ours.NumField() != theirs.NumField()-1 {
		t.Fatalf("Op has %d fields, replica.Op %d (NotAfter aside)", ours.NumField(), theirs.NumField()-1)
	}
	for i := range theirs.NumField() {
		f := theirs.Field(i)
		g, ok := ours.FieldByName(f.Name)
		switch {
		case f.Name == "NotAfter":
		case !ok:
			t.Errorf("Op lacks replica.Op's %s", f.Name)
		case f.Name == "Kind":
		case f.Name == "FirstSent" && g.Type == reflect.TypeFor[time.Time]():
		case g.Type != f.Type:
			t.Errorf("Op.%s is %v, replica.Op's %v", f.Name, g.Type, f.Type)
		}
	}
}

// The engine's Session and Op stay behind the API's: every field of an
// Op reaches the engine, and what a stored session tells apps is kept.
func TestEngineTypesConvert(t *testing.T) {
	op := &Op{Kind: OpPatch, ID: "convert-session-001", RequestID: "r1", FirstSent: time.Unix(1_700_000_000, 5), NoTouch: true, IfVersion: 3, IfAbsent: true,
		Principal: "alice", SetPrincipal: true, Attributes: map[string]msgpack.RawMessage{"a": {0xc3}}, IdleTimeout: time.Minute,
		AbsoluteTimeout: time.Hour, Set: map[string]msgpack.RawMessage{"s": {0xc2}}, Merge: map[string]msgpack.RawMessage{"m": {0x80}}, Delete: []string{"d"}}
	got := engineOp(op)
	want := &replica.Op{Kind: replica.OpPatch, ID: op.ID, RequestID: "r1", FirstSent: 1_700_000_000_000_000_005, NoTouch: true, IfVersion: 3, IfAbsent: true,
		Principal: "alice", SetPrincipal: true, Attributes: op.Attributes, IdleTimeout: time.Minute,
		AbsoluteTimeout: time.Hour, Set: op.Set, Merge: op.Merge, Delete: op.Delete}
	if !sameOp(got, want) {
		t.Fatalf("engineOp = %+v, want %+v", got, want)
	}
	if none, err := sessionOf(nil); engineOp(nil) != nil || none != nil || err != nil {
		t.Fatal("nil does not stay nil")
	}
	for k, want := range map[OpKind]replica.OpKind{OpGet: replica.OpGet, OpPut: replica.OpPut, OpPatch: replica.OpPatch,
		OpDelete: replica.OpDelete, OpTouch: replica.OpTouch} {
		if got := engineOp(&Op{Kind: k}).Kind; got != want || k.String() != want.String() {
			t.Errorf("kind %s reaches the engine as %s, want %s", k, got, want)
		}
	}
	at := time.Unix(1_700_000_000, 0)
	s, err := sessionOf(&replica.Session{ID: op.ID, Principal: "alice", Attributes: replica.EncodeAttributes(op.Attributes), Version: 7, Created: at,
		LastAccess: at.Add(time.Second), IdleTimeout: time.Minute, Deadline: at.Add(time.Hour), Stamp: 9, Writer: "n1"})
	if err != nil || !bytes.Equal(s.Attributes["a"], op.Attributes["a"]) {
		t.Fatalf("sessionOf: %v, attributes %v, want %v", err, s.Attributes, op.Attributes)
	}
	if s.ID != op.ID || s.Principal != "alice" || len(s.Attributes) != 1 || s.Version != 7 || !s.Created.Equal(at) ||
		!s.LastAccess.Equal(at.Add(time.Second)) || s.IdleTimeout != time.Minute || !s.Deadline.Equal(at.Add(time.Hour)) {
		t.Fatalf("sessionOf = %+v", s)
	}
	if !s.ExpiresAt().Equal(at.Add(time.Second+time.Minute)) || s.Expired(at) || !s.Expired(at.Add(2*time.Minute)) {
		t.Fatalf("session expires at %v", s.ExpiresAt())
	}
}

// sameOp reports whether a and b are the same request.
func sameOp(a, b *replica.Op) bool {
	sameMap := func(x, y map[string]msgpack.RawMessage) bool {
		if len(x) != len(y) {
			return false
		}
		for k, v := range x {
			if string(y[k]) != string(v) {
				return false
			}
		}
		return true
	}
	return a.Kind == b.Kind && a.ID == b.ID && a.RequestID == b.RequestID && a.FirstSent == b.FirstSent && a.NoTouch == b.NoTouch &&
		a.IfVersion == b.IfVersion && a.IfAbsent == b.IfAbsent && a.Principal == b.Principal &&
		a.SetPrincipal == b.SetPrincipal && sameMap(a.Attributes, b.Attributes) && a.IdleTimeout == b.IdleTimeout &&
		a.AbsoluteTimeout == b.AbsoluteTimeout && sameMap(a.Set, b.Set) && sameMap(a.Merge, b.Merge) &&
		strings.Join(a.Delete, ",") == strings.Join(b.Delete, ",")
}
