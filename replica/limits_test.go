package replica

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem/replica/peer"
)

// nested returns a msgpack value depth one-element arrays deep around nil.
func nested(depth int) msgpack.RawMessage {
	return append(bytes.Repeat([]byte{0x91}, depth), 0xc0)
}

// attrs returns n attributes named a0, a1, ... holding true.
func attrs(n int) map[string]msgpack.RawMessage {
	m := make(map[string]msgpack.RawMessage, n)
	for i := range n {
		m[fmt.Sprintf("a%d", i)] = msgpack.RawMessage{0xc3}
	}
	return m
}

// Every limit answers with its sentinel and a message that names it, and
// changes nothing.
func TestLimitsRefuseWithClearErrorsAndChangeNothing(t *testing.T) {
	c := newTestCluster(t, 2, func(cfg *Config) { cfg.MaxAttributes, cfg.MaxAttributeNameBytes = 4, 8 })
	n := c.list()[0]
	if got := n.Limits(); got != (Limits{MaxSessionBytes: 1 << 20, MaxAttributes: 4, MaxAttributeNameBytes: 8}) {
		t.Fatalf("Limits() = %+v", got)
	}
	id := sessionID(40)
	if _, err := n.Do(testCtx(t), &Op{Kind: OpPut, ID: id, Attributes: attrs(4)}); err != nil {
		t.Fatalf("put at the attribute limit: %v", err)
	}
	cases := []struct {
		name string
		op   Op
		want error
		msg  string
	}{
		{"too many attributes", Op{Kind: OpPut, ID: id, Attributes: attrs(5)}, ErrTooLarge, "would hold 5 attributes, limit 4"},
		{"patch adds one too many", Op{Kind: OpPatch, ID: id, Set: attrs(5)}, ErrTooLarge, "would hold 5 attributes, limit 4"},
		{"long name in a put", Op{Kind: OpPut, ID: id, Attributes: map[string]msgpack.RawMessage{"ninechars": {0xc0}}}, ErrInvalid, "attribute name of 9 bytes"},
		{"long name in a set", Op{Kind: OpPatch, ID: id, Set: map[string]msgpack.RawMessage{"ninechars": {0xc0}}}, ErrInvalid, "exceeds the limit of 8 bytes"},
		{"long name in a merge", Op{Kind: OpPatch, ID: id, Merge: map[string]msgpack.RawMessage{"ninechars": {0x80}}}, ErrInvalid, "exceeds the limit of 8 bytes"},
		{"value too deep", Op{Kind: OpPut, ID: id, Attributes: map[string]msgpack.RawMessage{"a": nested(peer.MaxValueDepth + 1)}}, ErrInvalid, fmt.Sprintf("nesting deeper than %d", peer.MaxValueDepth)},
		{"merge too deep", Op{Kind: OpPatch, ID: id, Merge: map[string]msgpack.RawMessage{"a": nested(peer.MaxValueDepth + 1)}}, ErrInvalid, "nesting deeper"},
		{"value claims 4e9 entries", Op{Kind: OpPut, ID: id, Attributes: map[string]msgpack.RawMessage{"a": {0xdf, 0xff, 0xff, 0xff, 0xff}}}, ErrInvalid, "malformed msgpack value"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := n.Do(testCtx(t), &tc.op)
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("got %v, want %v with %q", err, tc.want, tc.msg)
			}
		})
	}
	s, err := n.Get(testCtx(t), id, true)
	if err != nil || s.Version != 1 || s.Attributes.Len() != 4 {
		t.Fatalf("after refused writes: %+v, %v; want v1 with 4 attributes", s, err)
	}
	// At the limits: a value MaxValueDepth deep replicates to the buddy
	// (the deepest frames carry it), and a patch that replaces
	// attributes of a full session is no growth.
	deep := &Op{Kind: OpPatch, ID: id, Set: map[string]msgpack.RawMessage{"a0": nested(peer.MaxValueDepth), "eightchr": {0xc0}}, Delete: []string{"a1"}}
	if s, err := n.Do(testCtx(t), deep); err != nil || s.Version != 2 {
		t.Fatalf("patch at the limits: %+v %v", s, err)
	}
}

// A session stored under a higher attribute limit can still be patched
// without growing.
func TestAttributeLimitCountsGrowthOnly(t *testing.T) {
	prev := &Session{ID: sessionID(41), Version: 1, Attributes: EncodeAttributes(attrs(6))}
	lim := limits{maxAttributes: 4}
	shrink := &Op{Kind: OpPatch, ID: prev.ID, Set: map[string]msgpack.RawMessage{"a0": {0xc2}}, Delete: []string{"a1"}}
	if _, err := apply(shrink, prev, time.Now(), 1, "n", lim); err != nil {
		t.Fatalf("patch that removes one of 6 under a limit of 4: %v", err)
	}
	grow := &Op{Kind: OpPatch, ID: prev.ID, Set: map[string]msgpack.RawMessage{"new": {0xc2}}}
	if _, err := apply(grow, prev, time.Now(), 1, "n", lim); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("patch that adds a seventh under a limit of 4: %v, want ErrTooLarge", err)
	}
}

// A request id seen with other content is refused, whatever differs; the
// same content is a retry, however its maps were built.
func TestReusedRequestIDs(t *testing.T) {
	set := func(kv ...string) map[string]msgpack.RawMessage {
		m := map[string]msgpack.RawMessage{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = value(t, kv[i+1])
		}
		return m
	}
	id := sessionID(42)
	first := Op{Kind: OpPatch, ID: id, RequestID: "key-1", Set: set("a", "1", "b", "2"), Delete: []string{"x", "y"}}
	cases := []struct {
		name  string
		again Op
		want  error // nil: answered as a retry, with the first's version
	}{
		{"same op", first, nil},
		{"same content, maps built in another order, deletes reordered",
			Op{Kind: OpPatch, ID: id, RequestID: "key-1", Set: set("b", "2", "a", "1"), Delete: []string{"y", "x"}}, nil},
		{"empty maps for none", Op{Kind: OpPatch, ID: id, RequestID: "key-1", Set: set("a", "1", "b", "2"), Merge: map[string]msgpack.RawMessage{}, Delete: []string{"x", "y"}}, nil},
		{"other value", Op{Kind: OpPatch, ID: id, RequestID: "key-1", Set: set("a", "1", "b", "3"), Delete: []string{"x", "y"}}, ErrRequestReused},
		{"other attribute", Op{Kind: OpPatch, ID: id, RequestID: "key-1", Set: set("a", "1"), Delete: []string{"x", "y"}}, ErrRequestReused},
		{"other kind", Op{Kind: OpDelete, ID: id, RequestID: "key-1"}, ErrRequestReused},
		{"other condition", Op{Kind: OpPatch, ID: id, RequestID: "key-1", IfVersion: 1, Set: set("a", "1", "b", "2"), Delete: []string{"x", "y"}}, ErrRequestReused},
		{"set instead of merge", Op{Kind: OpPatch, ID: id, RequestID: "key-1", Merge: set("a", "1", "b", "2"), Delete: []string{"x", "y"}}, ErrRequestReused},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, 2, nil)
			primary, _ := c.ownersOf(id)
			put(t, primary, id, "a", 0)
			op := first
			s, err := c.list()[0].Do(testCtx(t), &op)
			if err != nil || s.Version != 2 {
				t.Fatalf("first: %+v %v", s, err)
			}
			again := tc.again
			s, err = c.list()[1].Do(testCtx(t), &again)
			switch {
			case tc.want == nil && (err != nil || s.Version != 2):
				t.Fatalf("retry: %+v %v, want v2 again", s, err)
			case tc.want != nil && (!errors.Is(err, tc.want) || !strings.Contains(err.Error(), `"key-1"`)):
				t.Fatalf("reuse: %v, want %v naming the id", err, tc.want)
			}
			if s, err := primary.Get(testCtx(t), id, true); err != nil || s.Version != 2 {
				t.Fatalf("after: %+v %v, want v2", s, err)
			}
		})
	}
}

// A record made before hashes existed (Hash 0) takes any request with its
// id as a retry, as it did then; and it still decodes.
func TestRecordsWithoutHashStillRetry(t *testing.T) {
	old := struct {
		Request string `msgpack:"r"`
		Version uint64 `msgpack:"v"`
	}{"key-0", 3}
	b, err := msgpack.Marshal(old)
	if err != nil {
		t.Fatal(err)
	}
	var a Applied
	if err := decodeBounded(b, &a); err != nil || a != (Applied{Request: "key-0", Version: 3}) {
		t.Fatalf("old record decodes as %+v, %v", a, err)
	}
	c := newTestCluster(t, 1, nil)
	n := c.list()[0]
	id := sessionID(43)
	put(t, n, id, "a", 0)
	s := n.store.get(n.Table().Partition(id), id)
	stored := *s
	stored.Recent = []Applied{{Request: "key-0", Version: s.Version}}
	if _, _, err := n.store.putUnder(n.Table().Partition(id), &stored, false, nil); err != nil {
		t.Fatal(err)
	}
	got, err := n.Do(testCtx(t), &Op{Kind: OpPatch, ID: id, RequestID: "key-0", Set: map[string]msgpack.RawMessage{"z": {0xc0}}})
	if err != nil || got.Version != s.Version {
		t.Fatalf("retry against a record without hash: %+v %v, want v%d", got, err, s.Version)
	}
}

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

// fuzzAllocSlack is the constant part of the fuzz targets' allocation
// bound: the checker's stack, the decoder's buffers, other goroutines.
const fuzzAllocSlack = 64 << 10

// sessionAllocFactor bounds what decoding a session may allocate: at most
// this many times its size, plus fuzzAllocSlack. The structural check
// refuses any length the input does not hold, so every decoded element
// took at least one byte; but one byte can become a whole Go value (an
// empty map 0x80 in Recent decodes into a 40-byte Applied, an attribute
// of four bytes into a map entry with its own key and value), so the
// factor is per element rather than per byte: the worst inputs measured
// (TestDecodeSessionWorstCases) cost 66 times their size.
const sessionAllocFactor = 96

// FuzzDecodeSession feeds hostile bytes to the session decoder
// (decodeBounded into a Session, as requests carrying sessions are
// decoded). It must never panic, never allocate more than
// sessionAllocFactor times the input plus fuzzAllocSlack, and every
// attribute it returns must be exactly one msgpack value.
func FuzzDecodeSession(f *testing.F) {
	full, _ := msgpack.Marshal(&Session{ID: sessionID(1), Principal: "alice", Version: 3, Created: time.Unix(1, 0),
		Attributes: EncodeAttributes(map[string]msgpack.RawMessage{"cart": value(f, []any{"tea", 2}), "n": value(f, 1), "none": {0xc0}}),
		Recent:     []Applied{{Request: "r1", Version: 2, Hash: 99}, {Request: "r2", Version: 3}}})
	f.Add(full)
	f.Add([]byte{0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0x81, 0xa2, 'a', 't', 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte(nested(2000)))
	// Extensions claiming maps of four billion entries where the
	// session's attributes are, and where the session is.
	f.Add([]byte{0x81, 0xa2, 'a', 't', 0xc7, 0x05, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0xc7, 0x05, 0x01, 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		var s Session
		var err error
		n := allocated(func() { err = decodeBounded(b, &s) })
		if limit := uint64(sessionAllocFactor*len(b) + fuzzAllocSlack); n > limit {
			t.Fatalf("decoding %d bytes allocated %d (limit %d)", len(b), n, limit)
		}
		if err != nil {
			return
		}
		err = s.Attributes.Range(func(name string, v msgpack.RawMessage) bool {
			if err := peer.CheckValue(v, peer.MaxDepth); err != nil {
				t.Fatalf("decoded attribute %q is not one value: %v", name, err)
			}
			return true
		})
		if err != nil {
			t.Fatalf("decoded attributes are not a map of names to values: %v", err)
		}
	})
}

// TestDecodeSessionWorstCases measures the sessions that cost the most per
// byte to decode, so FuzzDecodeSession's bound is known to hold for them.
func TestDecodeSessionWorstCases(t *testing.T) {
	attrs := binary.BigEndian.AppendUint16([]byte{0x81, 0xa2, 'a', 't', 0xde}, 10000)
	for i := range 10000 {
		attrs = append(attrs, 0xa2, byte(i>>8)|0x80, byte(i), 0xc0)
	}
	recent := append(binary.BigEndian.AppendUint16([]byte{0x81, 0xa2, 'r', 'q', 0xdc}, 10000), bytes.Repeat([]byte{0x80}, 10000)...)
	for _, tc := range []struct {
		name string
		b    []byte
	}{{"10000 attributes of 4 bytes", attrs}, {"10000 empty records in Recent", recent}} {
		var s Session
		var err error
		n := allocated(func() { err = decodeBounded(tc.b, &s) })
		t.Logf("%s: %d bytes allocated %d (%.1f×)", tc.name, len(tc.b), n, float64(n)/float64(len(tc.b)))
		if err != nil || s.Attributes.Len()+len(s.Recent) != 10000 {
			t.Fatalf("%s: %v, %d attributes, %d records", tc.name, err, s.Attributes.Len(), len(s.Recent))
		}
		if limit := uint64(sessionAllocFactor*len(tc.b) + fuzzAllocSlack); n > limit {
			t.Fatalf("%s: %d bytes allocated %d, over the bound %d", tc.name, len(tc.b), n, limit)
		}
	}
}

// FuzzValidateID: ValidateID accepts exactly the ids of 16–128 characters
// of [A-Za-z0-9_.-], refuses everything else with ErrInvalid, never
// panics, and allocates nothing for an id it accepts (its error message is
// the only allocation, bounded by fuzzAllocSlack).
func FuzzValidateID(f *testing.F) {
	for _, s := range []string{sessionID(1), "short", strings.Repeat("a", 129), "session-with/slash-0001", "sessión-000000000001", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		var err error
		n := allocated(func() { err = ValidateID(id) })
		want := len(id) >= 16 && len(id) <= 128 && strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") == ""
		switch {
		case want && err != nil:
			t.Fatalf("ValidateID(%q) = %v, want nil", id, err)
		case !want && !errors.Is(err, ErrInvalid):
			t.Fatalf("ValidateID(%q) = %v, want ErrInvalid", id, err)
		case want && n > fuzzAllocSlack, n > fuzzAllocSlack:
			t.Fatalf("ValidateID(%q) allocated %d bytes", id, n)
		}
	})
}

// A nil attribute value (0xc0) survives every hop: forwarded in an op,
// replicated to the buddy, read back from either copy. (msgpack's decoder
// turns it into no bytes at all, which no frame could carry on.)
func TestNilValuesSurviveTheWire(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	id := sessionID(44)
	primary, buddy := c.ownersOf(id)
	var other *testNode
	for _, n := range c.list() {
		if n != primary && n != buddy {
			other = n
		}
	}
	op := &Op{Kind: OpPut, ID: id, Attributes: map[string]msgpack.RawMessage{"none": {0xc0}}}
	if _, err := other.Do(testCtx(t), op); err != nil {
		t.Fatalf("put through a node that forwards it: %v", err)
	}
	patch := &Op{Kind: OpPatch, ID: id, Set: map[string]msgpack.RawMessage{"also": {0xc0}}}
	if _, err := other.Do(testCtx(t), patch); err != nil {
		t.Fatalf("patch through a node that forwards it: %v", err)
	}
	for _, n := range []*testNode{primary, buddy} {
		s := n.store.get(n.Table().Partition(id), id)
		if s == nil || !bytes.Equal(s.Attributes.value("none"), []byte{0xc0}) || !bytes.Equal(s.Attributes.value("also"), []byte{0xc0}) {
			t.Fatalf("%s holds %+v", n.Name(), s)
		}
	}
}

// An extension where a request has a map is refused before msgpack's
// decoder unwraps it: twenty bytes of an op whose Set is an ext32 claiming
// a map of a million entries made a node allocate 100 MB.
func TestAnExtensionWhereAMapBelongsIsRefused(t *testing.T) {
	body := append(append([]byte{0x82, 0xa1, 'k', 0x02, 0xa3}, "set"...), 0xc9, 0, 0, 0, 5, 0x30, 0xdf, 0x00, 0x10, 0, 0)
	var op Op
	var err error
	if n := allocated(func() { err = decodeBounded(body, &op) }); n > 64<<10 {
		t.Fatalf("decoding %d bytes allocated %d", len(body), n)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("decode: %v, want ErrInvalid", err)
	}
}
