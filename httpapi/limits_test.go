package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/httpapi"
)

// allocated returns how many bytes f allocated on the heap (client and
// server both run in this process), by MemStats.TotalAlloc.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// wantError checks an answer is a JSON error with status and code.
func wantError(t *testing.T, what string, status int, body []byte, wantStatus int, wantCode string) {
	t.Helper()
	var e struct{ Error, Code string }
	if err := json.Unmarshal(body, &e); err != nil || status != wantStatus || e.Code != wantCode || e.Error == "" {
		t.Fatalf("%s: %d %s, want %d with code %q", what, status, body, wantStatus, wantCode)
	}
}

// The five bytes that took a node down (a msgpack map header claiming
// 4·10⁹ entries) and a JSON attribute nested 1,100 deep get 400 before
// anything is decoded; a value at the nesting limit is served, through
// the peer wire too; the session is unchanged by what was refused.
func TestHostileBodiesAreRefusedBeforeTheyAllocate(t *testing.T) {
	urls := startAPI(t, 2, 0)
	a, b := urls[0], urls[1]
	if status, _, body := call(t, "PUT", a+"/v1/sessions/"+sid, `{"principal":"erin","attributes":{"k":"v"}}`); status != 201 {
		t.Fatalf("setup PUT: %d %s", status, body)
	}
	five := "\xdf\xff\xff\xff\xff"
	deep := strings.Repeat("[", 1100) + strings.Repeat("]", 1100)
	cases := []struct {
		name, method, body string
		header             []string
	}{
		{"five-byte msgpack PATCH", "PATCH", five, []string{"Content-Type", "application/msgpack"}},
		{"five-byte msgpack PUT", "PUT", five, []string{"Content-Type", "application/msgpack"}},
		{"msgpack attributes claiming 4e9 entries", "PUT", "\x81\xaaattributes" + five, []string{"Content-Type", "application/msgpack"}},
		{"msgpack string claiming 4 GiB", "PATCH", "\x81\xa1a\xdb\xff\xff\xff\xff", []string{"Content-Type", "application/msgpack"}},
		{"JSON 1,100 deep in a PATCH", "PATCH", `{"a":` + deep + `}`, nil},
		{"JSON 1,100 deep in a PUT", "PUT", `{"attributes":{"a":` + deep + `}}`, nil},
		{"msgpack 1,100 deep", "PATCH", "\x81\xa1a" + strings.Repeat("\x91", 1100) + "\xc0", []string{"Content-Type", "application/msgpack"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var status int
			var body []byte
			n := allocated(func() { status, _, body = call(t, tc.method, a+"/v1/sessions/"+sid, tc.body, tc.header...) })
			wantError(t, tc.name, status, body, 400, "invalid_body")
			if n > 4<<20 {
				t.Fatalf("%s: the request cost %d bytes", tc.name, n)
			}
		})
	}
	// One level deeper than the limit is refused; the limit itself passes,
	// is stored on both copies and reads back through the other node.
	over := strings.Repeat("[", tandem.MaxValueDepth+1) + strings.Repeat("]", tandem.MaxValueDepth+1)
	status, _, body := call(t, "PATCH", a+"/v1/sessions/"+sid, `{"a":`+over+`}`)
	wantError(t, "a value one level past the limit", status, body, 400, "invalid_body")
	at := strings.Repeat("[", tandem.MaxValueDepth) + strings.Repeat("]", tandem.MaxValueDepth)
	if status, _, body := call(t, "PATCH", b+"/v1/sessions/"+sid, `{"a":`+at+`}`); status != 200 {
		t.Fatalf("a value at the limit: %d %s", status, body)
	}
	status, _, body = call(t, "GET", b+"/v1/sessions/"+sid, "")
	if s := decodeSession(t, body); status != 200 || s.Version != 2 || s.Attributes["a"] == nil {
		t.Fatalf("read back: %d %.200s", status, body)
	}
}

// A reused Idempotency-Key with another body answers 422 and changes
// nothing; the same body again is a retry and answers what the first did.
func TestReusedIdempotencyKey(t *testing.T) {
	urls := startAPI(t, 2, 0)
	a, b := urls[0], urls[1]
	if status, _, body := call(t, "PUT", a+"/v1/sessions/"+sid, `{"attributes":{"n":0}}`); status != 201 {
		t.Fatalf("setup PUT: %d %s", status, body)
	}
	key := []string{"Idempotency-Key", "key-1"}
	status, _, body := call(t, "PATCH", a+"/v1/sessions/"+sid, `{"n":1,"o":{"x":1,"y":[1,2]},"gone":null}`, key...)
	if status != 200 || decodeSession(t, body).Version != 2 {
		t.Fatalf("first PATCH: %d %s", status, body)
	}
	// The same body, with its top-level members in another order: a retry.
	status, _, body = call(t, "PATCH", b+"/v1/sessions/"+sid, `{"gone":null,"o":{"x":1,"y":[1,2]},"n":1}`, key...)
	if status != 200 || decodeSession(t, body).Version != 2 {
		t.Fatalf("retried PATCH: %d %s, want v2 again", status, body)
	}
	for _, other := range []string{`{"n":2,"o":{"x":1,"y":[1,2]},"gone":null}`, `{"n":1}`} {
		status, _, body = call(t, "PATCH", b+"/v1/sessions/"+sid, other, key...)
		wantError(t, "PATCH reusing the key", status, body, 422, "request_reused")
	}
	status, _, body = call(t, "PUT", a+"/v1/sessions/"+sid, `{"attributes":{"n":1}}`, key...)
	wantError(t, "PUT reusing the key", status, body, 422, "request_reused")
	status, _, body = call(t, "GET", a+"/v1/sessions/"+sid, "")
	if s := decodeSession(t, body); status != 200 || s.Version != 2 || s.Attributes["n"] != float64(1) {
		t.Fatalf("after reuse: %d %s, want v2 with n=1", status, body)
	}
}

// A retry that says how long ago it was first sent (Idempotency-Age) and
// that the session no longer remembers — more writes came since than a
// session remembers requests — answers 503 "indeterminate" and changes
// nothing, where it would have been applied twice; the same retry without
// the header is taken for a new request. A malformed age, or one without
// a key, answers 400.
func TestAForgottenRetryIsIndeterminate(t *testing.T) {
	urls := startAPI(t, 2, 0)
	a, b := urls[0], urls[1]
	key := []string{"Idempotency-Key", "key-forgotten"}
	if status, _, body := call(t, "PUT", a+"/v1/sessions/"+sid, `{"attributes":{"n":0}}`, key...); status != 201 {
		t.Fatalf("first PUT: %d %s", status, body)
	}
	for i := range 9 {
		if status, _, body := call(t, "PATCH", b+"/v1/sessions/"+sid, fmt.Sprintf(`{"n":%d}`, i+1), "Idempotency-Key", fmt.Sprintf("other-%d", i)); status != 200 {
			t.Fatalf("PATCH %d: %d %s", i, status, body)
		}
	}
	retry := append(key, "Idempotency-Age", "30")
	status, _, body := call(t, "PUT", b+"/v1/sessions/"+sid, `{"attributes":{"n":0}}`, retry...)
	wantError(t, "retry the session forgot", status, body, 503, "indeterminate")
	status, _, body = call(t, "GET", a+"/v1/sessions/"+sid, "")
	if s := decodeSession(t, body); status != 200 || s.Version != 10 || s.Attributes["n"] != float64(9) {
		t.Fatalf("after the refused retry: %d %s, want v10 with n=9", status, body)
	}
	for _, bad := range []string{"-1", "soon", "NaN", "1e9"} {
		status, _, body = call(t, "PUT", b+"/v1/sessions/"+sid, `{"attributes":{"n":0}}`, append(key, "Idempotency-Age", bad)...)
		wantError(t, "Idempotency-Age "+bad, status, body, 400, "invalid")
	}
	status, _, body = call(t, "PUT", b+"/v1/sessions/"+sid, `{"attributes":{"n":0}}`, "Idempotency-Age", "1")
	wantError(t, "Idempotency-Age without a key", status, body, 400, "invalid")
	status, _, body = call(t, "PUT", b+"/v1/sessions/"+sid, `{"attributes":{"n":0}}`, key...)
	if s := decodeSession(t, body); status != 200 || s.Version != 11 {
		t.Fatalf("the retry without Idempotency-Age: %d %s, want it applied as new, v11", status, body)
	}
}

// The attribute limits answer 413 (count) and 400 (name), checked at the
// edge before decoding when the body alone shows it, and by the write.
func TestAttributeLimitsOverHTTP(t *testing.T) {
	urls := startAPI(t, 2, 0)
	a := urls[0]
	if status, _, body := call(t, "PUT", a+"/v1/sessions/"+sid, `{"attributes":{"k":"v"}}`); status != 201 {
		t.Fatalf("setup PUT: %d %s", status, body)
	}
	attrs := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, `"a%d":1,`, i)
		}
		return `{` + strings.TrimSuffix(b.String(), ",") + `}`
	}
	status, _, body := call(t, "PUT", a+"/v1/sessions/"+sid, `{"attributes":`+attrs(1025)+`}`)
	wantError(t, "PUT of 1025 attributes", status, body, 413, "too_large")
	status, _, body = call(t, "PATCH", a+"/v1/sessions/"+sid, attrs(1025))
	wantError(t, "PATCH of 1025 attributes", status, body, 413, "too_large")
	if status, _, body := call(t, "PATCH", a+"/v1/sessions/"+sid, attrs(1023)); status != 200 {
		t.Fatalf("PATCH to 1024 attributes: %d %.200s", status, body)
	}
	status, _, body = call(t, "PATCH", a+"/v1/sessions/"+sid, `{"one_more":1}`)
	wantError(t, "PATCH past 1024 attributes", status, body, 413, "too_large")
	status, _, body = call(t, "PATCH", a+"/v1/sessions/"+sid, `{"`+strings.Repeat("n", 257)+`":1}`)
	wantError(t, "a 257-byte name", status, body, 400, "invalid")
	status, _, body = call(t, "GET", a+"/v1/sessions/"+sid, "")
	if s := decodeSession(t, body); status != 200 || s.Version != 2 || len(s.Attributes) != 1024 {
		t.Fatalf("after refused writes: %d, v%d, %d attributes", status, s.Version, len(s.Attributes))
	}
}

// Without a MaxBodyBytes, a handler bounds bodies by the node's session
// limit (DefaultMaxBodyBytes) and answers 413 past it.
func TestDefaultBodyLimitFollowsTheSessionLimit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, 1, func(_ int, cfg *tandem.Config) { cfg.MaxSessionBytes = 4096 })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nodes[0].Kill() })
	srv := httptest.NewServer(httpapi.New(nodes[0], httpapi.Config{Insecure: true}))
	t.Cleanup(srv.Close)
	limit := httpapi.DefaultMaxBodyBytes(4096)
	if limit != 2*4096+64<<10 {
		t.Fatalf("DefaultMaxBodyBytes(4096) = %d", limit)
	}
	over := `{"attributes":{"blob":"` + strings.Repeat("x", int(limit)) + `"}}`
	status, _, body := call(t, "PUT", srv.URL+"/v1/sessions/"+sid, over)
	wantError(t, "body over the default limit", status, body, 413, "too_large")
	if !bytes.Contains(body, []byte(fmt.Sprintf("body exceeds %d bytes", limit))) {
		t.Fatalf("413 does not name the limit: %s", body)
	}
	status, _, body = call(t, "PUT", srv.URL+"/v1/sessions/"+sid, `{"attributes":{"blob":"`+strings.Repeat("x", 5000)+`"}}`)
	wantError(t, "body within the limit, session over it", status, body, 413, "too_large")
}
