package httpapi

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
	"github.com/vmihailenco/msgpack/v5/msgpcode"

	"github.com/tandem-io/tandem"
)

// answersOf returns what writeSession's two writers answer for s in the
// given type (Accept): the direct writer's answer and whether it wrote
// one, and the reflective writer's.
func answersOf(t *testing.T, s *tandem.Session, accept string) (direct *httptest.ResponseRecorder, ok bool, view *httptest.ResponseRecorder) {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/v1/sessions/"+s.ID, nil)
	r.Header.Set("Accept", accept)
	direct, view = httptest.NewRecorder(), httptest.NewRecorder()
	ok = writeSessionDirect(direct, r, http.StatusOK, s)
	writeSessionView(view, r, http.StatusOK, s)
	return direct, ok, view
}

// sameAnswer fails t unless the direct answer is the reflective one:
// status, headers and bytes; a msgpack answer of more than one attribute
// (which the reflective encoder writes in random order) decodes to the
// same value.
func sameAnswer(t *testing.T, what string, s *tandem.Session, accept string) {
	t.Helper()
	direct, ok, view := answersOf(t, s, accept)
	if !ok {
		t.Fatalf("%s: the direct writer did not take the session on", what)
	}
	if direct.Code != view.Code || !reflect.DeepEqual(direct.Header(), view.Header()) {
		t.Fatalf("%s: direct answer %d %v, reflective %d %v", what, direct.Code, direct.Header(), view.Code, view.Header())
	}
	if bytes.Equal(direct.Body.Bytes(), view.Body.Bytes()) {
		return
	}
	if accept == contentMsgpack && len(s.Attributes) > 1 {
		var a, b any
		if err := msgpack.Unmarshal(direct.Body.Bytes(), &a); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if err := msgpack.Unmarshal(view.Body.Bytes(), &b); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if reflect.DeepEqual(a, b) {
			return
		}
	}
	t.Fatalf("%s: direct answer\n%q\nreflective\n%q", what, direct.Body.Bytes(), view.Body.Bytes())
}

// mp encodes v as msgpack, for the tests' attribute values.
func mp(t testing.TB, v any) msgpack.RawMessage {
	t.Helper()
	b, err := msgpack.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// answerSession is a session with attributes attrs, expiring or not.
func answerSession(attrs map[string]msgpack.RawMessage, expires bool) *tandem.Session {
	created := time.Date(2026, 12, 3, 14, 0, 0, 123456789, time.UTC)
	s := &tandem.Session{ID: "answer-session-0001", Principal: "alice <&> \u2028 é", Attributes: attrs, Version: 42,
		Created: created, LastAccess: created.Add(1500 * time.Millisecond)}
	if expires {
		s.IdleTimeout = 30 * time.Minute
	}
	return s
}

// raw builds a msgpack value from a code and the bytes after it.
func raw(code byte, rest ...byte) msgpack.RawMessage { return append([]byte{code}, rest...) }

// be is n's big-endian bytes, width bytes wide.
func be(n uint64, width int) []byte {
	b := binary.BigEndian.AppendUint64(nil, n)
	return b[8-width:]
}

func TestDirectAnswersAreTheReflectiveOnes(t *testing.T) {
	long := strings.Repeat("x", 70000)
	values := map[string]msgpack.RawMessage{
		"nil":       mp(t, nil),
		"true":      mp(t, true),
		"false":     mp(t, false),
		"fixint":    mp(t, 7),
		"negfix":    mp(t, -3),
		"int8":      raw(msgpcode.Int8, 0x80),
		"int16":     raw(msgpcode.Int16, be(uint64(0x8001), 2)...),
		"int32":     raw(msgpcode.Int32, be(uint64(0xfffffffe), 4)...),
		"int64":     mp(t, int64(math.MinInt64)),
		"uint8":     raw(msgpcode.Uint8, 0xff),
		"uint16":    raw(msgpcode.Uint16, be(0xffff, 2)...),
		"uint32":    raw(msgpcode.Uint32, be(0xffffffff, 4)...),
		"uint64":    mp(t, uint64(math.MaxUint64)),
		"float32":   mp(t, float32(3.1415927)),
		"float32e":  mp(t, float32(1e-7)),
		"float64":   mp(t, 0.1),
		"float64e":  mp(t, 1e21),
		"float64e-": mp(t, 1.5e-9),
		"negzero":   mp(t, math.Copysign(0, -1)),
		"str":       mp(t, "plain"),
		"unicode":   mp(t, "héllo, 世界 😀 \u2028\u2029 <b>&amp;</b> \"q\" \\ \b\f\n\r\t \x00\x1f\x7f"),
		"badutf8":   mp(t, "a\xffb\xc3(c\xed\xa0\x80"),
		"str16":     mp(t, long),
		"bin":       mp(t, []byte{0, 1, 2, 0xff, 0xfe}),
		"emptybin":  mp(t, []byte{}),
		"bin16":     mp(t, bytes.Repeat([]byte{0xab}, 300)),
		"array":     mp(t, []any{1, "two", nil, []any{}, map[string]any{}, 3.5}),
		"array16":   mp(t, make([]any, 20)),
		"nested":    mp(t, map[string]any{"z": 1, "a": map[string]any{"y": []any{true, map[string]any{"k": "v"}}, "b": nil}, "é": "x", "<": ">"}),
		"map16":     mp(t, map[string]any{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8, "i": 9, "j": 10, "k": 11, "l": 12, "m": 13, "n": 14, "o": 15, "p": 16, "q": 17}),
		"emptymap":  mp(t, map[string]any{}),
		"badkey":    mp(t, map[string]any{"\xff": 1, "ok\n": 2}),
		"html":      mp(t, map[string]any{"<script>": "&"}),
	}
	for name, v := range values {
		for _, expires := range []bool{false, true} {
			s := answerSession(map[string]msgpack.RawMessage{name: v}, expires)
			sameAnswer(t, name+" as JSON", s, contentJSON)
			sameAnswer(t, name+" as msgpack", s, contentMsgpack)
		}
	}
	all := answerSession(values, true)
	sameAnswer(t, "all as JSON", all, contentJSON)
	sameAnswer(t, "all as msgpack", all, contentMsgpack)
	none := answerSession(nil, false)
	none.Principal = ""
	sameAnswer(t, "none as JSON", none, contentJSON)
	sameAnswer(t, "none as msgpack", none, contentMsgpack)
	head := httptest.NewRequest(http.MethodHead, "/v1/sessions/"+all.ID, nil)
	w := httptest.NewRecorder()
	if !writeSessionDirect(w, head, http.StatusOK, all) || w.Body.Len() != 0 || w.Header().Get("ETag") != `"42"` {
		t.Fatalf("HEAD: %d bytes, ETag %q", w.Body.Len(), w.Header().Get("ETag"))
	}
}

func TestDirectAnswersLeaveTheRestToTheReflectiveOnes(t *testing.T) {
	nan := math.Float64bits(math.NaN())
	for name, v := range map[string]msgpack.RawMessage{
		"time":         mp(t, time.Unix(1700000000, 5)),
		"ext":          raw(msgpcode.FixExt1, 7, 1),
		"nan":          raw(msgpcode.Double, be(nan, 8)...),
		"inf32":        raw(msgpcode.Float, be(uint64(math.Float32bits(float32(math.Inf(1)))), 4)...),
		"intkey":       mp(t, map[int]any{1: "x"}),
		"binkey":       raw(msgpcode.FixedMapLow|1, append([]byte{msgpcode.Bin8, 1, 'k'}, 1)...),
		"dupkey":       raw(msgpcode.FixedMapLow|2, 0xa1, 'k', 1, 0xa1, 'k', 2),
		"truncated":    raw(msgpcode.Str8, 5, 'a'),
		"trailing":     raw(1, 2),
		"unused":       raw(0xc1),
		"empty":        {},
		"shortmap":     raw(msgpcode.Map16, 0xff, 0xff),
		"deep":         append(bytes.Repeat([]byte{msgpcode.FixedArrayLow | 1}, tandem.MaxValueDepth+3), msgpcode.Nil),
		"dupkey-later": raw(msgpcode.FixedMapLow|3, 0xa1, 'a', 1, 0xa1, 'b', 2, 0xa1, 'a', 3),
		// Each map walks what it holds once more: 300 maps around 20 000
		// numbers would take six million steps.
		"deep-maps": append(append(bytes.Repeat([]byte{msgpcode.FixedMapLow | 1, 0xa1, 'a'}, 300),
			msgpcode.Array16, 20000>>8, 20000&0xff), bytes.Repeat([]byte{1}, 20000)...),
	} {
		s := answerSession(map[string]msgpack.RawMessage{name: v}, false)
		direct, ok, _ := answersOf(t, s, contentJSON)
		if ok {
			t.Errorf("%s: the direct writer answered %q; it is the reflective writer's to answer", name, direct.Body.Bytes())
		}
		if direct.Code != http.StatusOK || direct.Body.Len() != 0 || len(direct.Header()) != 0 {
			t.Errorf("%s: the direct writer wrote before giving up: %d %v %q", name, direct.Code, direct.Header(), direct.Body.Bytes())
		}
	}
	old := answerSession(nil, false)
	old.Created = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, ok, _ := answersOf(t, old, contentJSON); ok {
		t.Error("a year past 9999 went the direct way; encoding/json refuses it")
	}
}

// randomValue makes a random Go value for msgpack to encode, depth deep
// at most.
func randomValue(r *rand.Rand, depth int) any {
	strs := []string{"", "a", "é", "\u2028", "<&>", "\x00", "\xff\xfe", "😀", `"\`, strings.Repeat("s", 40), "z"}
	switch k := r.IntN(14); {
	case k == 0:
		return nil
	case k == 1:
		return r.IntN(2) == 0
	case k == 2:
		return int8(r.Uint32())
	case k == 3:
		return int64(r.Uint64())
	case k == 4:
		return uint16(r.Uint32())
	case k == 5:
		return r.Uint64() >> r.IntN(64)
	case k == 6:
		return float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(60)-30)))
	case k == 7:
		return r.NormFloat64() * math.Pow(10, float64(r.IntN(600)-300))
	case k == 8:
		return strs[r.IntN(len(strs))] + strs[r.IntN(len(strs))]
	case k == 9:
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		return b
	case depth > 0 && k <= 11:
		a := make([]any, r.IntN(20))
		for i := range a {
			a[i] = randomValue(r, depth-1)
		}
		return a
	case depth > 0:
		m := map[string]any{}
		for range r.IntN(20) {
			m[strs[r.IntN(len(strs))]+strs[r.IntN(len(strs))]] = randomValue(r, depth-1)
		}
		return m
	}
	return "leaf"
}

func TestDirectAnswersOfRandomValues(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		attrs := map[string]msgpack.RawMessage{}
		for j := range r.IntN(4) {
			attrs[string(rune('a'+j))+"\u00e9"] = mp(t, randomValue(r, 4))
		}
		s := answerSession(attrs, i%2 == 0)
		sameAnswer(t, "random JSON", s, contentJSON)
		sameAnswer(t, "random msgpack", s, contentMsgpack)
	}
}

// FuzzDirectAnswers: whatever an attribute's bytes, the direct JSON
// writer either gives them up or writes what the reflective one does.
// (The reflective one is asked only when the direct one answered: bytes
// it gives up may claim lengths they do not hold, which the write path's
// checks refuse and msgpack's decoder would allocate.)
func FuzzDirectAnswers(f *testing.F) {
	for _, v := range []any{nil, 1, "s", []byte{1}, []any{1.5, float32(2)}, map[string]any{"b": 1, "a": []any{}}} {
		f.Add([]byte(mp(f, v)))
	}
	f.Fuzz(func(t *testing.T, v []byte) {
		s := answerSession(map[string]msgpack.RawMessage{"v": v}, false)
		r := httptest.NewRequest(http.MethodGet, "/v1/sessions/"+s.ID, nil)
		direct := httptest.NewRecorder()
		if !writeSessionDirect(direct, r, http.StatusOK, s) {
			return
		}
		view := httptest.NewRecorder()
		writeSessionView(view, r, http.StatusOK, s)
		if direct.Code != view.Code || !bytes.Equal(direct.Body.Bytes(), view.Body.Bytes()) {
			t.Fatalf("%x: direct answer %d %q, reflective %d %q", v, direct.Code, direct.Body.Bytes(), view.Code, view.Body.Bytes())
		}
	})
}
