package httpapi_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/httpapi"
)

// startAPI starts n nodes, each with its HTTP API on loopback, and returns
// the APIs' base URLs.
func startAPI(t *testing.T, n int, maxBytes int) []string {
	t.Helper()
	lns := make([]net.Listener, n)
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, n, func(i int, cfg *tandem.Config) {
		cfg.HTTPAddr = lns[i].Addr().String()
		if maxBytes > 0 {
			cfg.MaxSessionBytes = maxBytes
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for i, node := range nodes {
		srv := &http.Server{Handler: httpapi.New(node, httpapi.Config{MaxBodyBytes: int64(max(maxBytes, 1<<20)), Insecure: true})}
		go srv.Serve(lns[i])
		t.Cleanup(func() {
			srv.Close()
			node.Kill()
		})
		urls = append(urls, "http://"+lns[i].Addr().String())
	}
	return urls
}

// call makes one request with header fields given as name, value pairs (a
// name repeated makes repeated fields) and returns status, headers and
// body.
func call(t *testing.T, method, url, body string, header ...string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Add(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, b
}

// session decodes a JSON session answer.
type session struct {
	ID         string         `json:"id"`
	Principal  string         `json:"principal"`
	Attributes map[string]any `json:"attributes"`
	Version    uint64         `json:"version"`
	CreatedAt  time.Time      `json:"created_at"`
	LastAccess time.Time      `json:"last_access_at"`
	ExpiresAt  *time.Time     `json:"expires_at"`
}

// decodeSession decodes b or fails.
func decodeSession(t *testing.T, b []byte) session {
	t.Helper()
	var s session
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	return s
}

const sid = "http-session-000000001"

func TestSessionLifecycleOverHTTP(t *testing.T) {
	urls := startAPI(t, 3, 0)
	a, b, c := urls[0], urls[1], urls[2]

	status, h, body := call(t, "PUT", a+"/v1/sessions/"+sid, `{"principal":"alice","attributes":{"cart":{"tea":1},"n":42,"f":1.5},"idle_timeout":"10m","absolute_timeout":"1h"}`)
	if status != 201 || h.Get("ETag") != `"1"` || h.Get("Location") != "/v1/sessions/"+sid {
		t.Fatalf("PUT: %d %s %s", status, h.Get("ETag"), body)
	}
	s := decodeSession(t, body)
	if s.ExpiresAt == nil || s.ExpiresAt.Sub(s.LastAccess) != 10*time.Minute {
		t.Fatalf("PUT: expires_at %v, last access %v", s.ExpiresAt, s.LastAccess)
	}

	status, h, body = call(t, "GET", b+"/v1/sessions/"+sid, "")
	s = decodeSession(t, body)
	if status != 200 || s.Principal != "alice" || s.Attributes["n"] != float64(42) || s.Attributes["f"] != 1.5 || h.Get("ETag") != `"1"` {
		t.Fatalf("GET via another node: %d %s", status, body)
	}

	// Merge patch: nested merge, delete, set.
	status, _, body = call(t, "PATCH", c+"/v1/sessions/"+sid, `{"cart":{"tea":null,"milk":2},"n":null,"theme":"dark"}`, "Content-Type", "application/merge-patch+json")
	s = decodeSession(t, body)
	cart, _ := s.Attributes["cart"].(map[string]any)
	if status != 200 || s.Version != 2 || len(cart) != 1 || cart["milk"] != float64(2) || s.Attributes["n"] != nil || s.Attributes["theme"] != "dark" {
		t.Fatalf("PATCH: %d %s", status, body)
	}

	// Conditional put: the stale ETag loses with 412 and changes nothing.
	status, _, body = call(t, "PUT", a+"/v1/sessions/"+sid, `{"principal":"mallory"}`, "If-Match", `"1"`)
	if status != 412 || !strings.Contains(string(body), `"code":"version_mismatch"`) {
		t.Fatalf("PUT with stale If-Match: %d %s", status, body)
	}
	status, _, body = call(t, "PUT", a+"/v1/sessions/"+sid, `{"principal":"bob"}`, "If-Match", `"2"`)
	if status != 200 || decodeSession(t, body).Version != 3 {
		t.Fatalf("PUT with current If-Match: %d %s", status, body)
	}

	// ?touch=false leaves last access alone.
	_, _, body = call(t, "GET", b+"/v1/sessions/"+sid+"?touch=false", "")
	before := decodeSession(t, body).LastAccess
	_, _, body = call(t, "GET", c+"/v1/sessions/"+sid+"?touch=false", "")
	if after := decodeSession(t, body).LastAccess; !after.Equal(before) {
		t.Fatalf("touch=false moved last access from %v to %v", before, after)
	}

	// Owners, for balancers.
	status, _, body = call(t, "GET", c+"/v1/sessions/"+sid+"/owners", "")
	var owners struct {
		Primary struct{ Name, HTTP string }
		Buddy   struct{ Name, HTTP string }
		Epoch   uint64
	}
	if err := json.Unmarshal(body, &owners); status != 200 || err != nil || owners.Primary.Name == owners.Buddy.Name || !strings.HasPrefix(owners.Primary.HTTP, "127.0.0.1:") || owners.Epoch == 0 {
		t.Fatalf("owners: %d %s", status, body)
	}

	if status, _, _ = call(t, "DELETE", b+"/v1/sessions/"+sid, ""); status != 204 {
		t.Fatalf("DELETE: %d", status)
	}
	if status, _, body = call(t, "GET", a+"/v1/sessions/"+sid, ""); status != 404 || !strings.Contains(string(body), `"code":"not_found"`) {
		t.Fatalf("GET deleted: %d %s", status, body)
	}
}

func TestCreateWithServerMadeID(t *testing.T) {
	urls := startAPI(t, 2, 0)
	status, h, body := call(t, "POST", urls[0]+"/v1/sessions", `{"principal":"carol"}`)
	s := decodeSession(t, body)
	if status != 201 || h.Get("Location") != "/v1/sessions/"+s.ID || len(s.ID) < 22 {
		t.Fatalf("POST: %d %v %s", status, h, body)
	}
	if status, _, _ := call(t, "GET", urls[1]+h.Get("Location"), ""); status != 200 {
		t.Fatalf("GET created: %d", status)
	}
	ids := map[string]bool{}
	for range 100 {
		id := httpapi.NewID()
		if ids[id] || len(id) != 22 {
			t.Fatalf("NewID gave %q (seen: %v)", id, ids[id])
		}
		ids[id] = true
	}
}

func TestMsgpackBodiesAndAnswers(t *testing.T) {
	urls := startAPI(t, 2, 0)
	body, _ := msgpack.Marshal(map[string]any{"principal": "dave", "attributes": map[string]any{"bin": []byte{0, 1, 2}, "n": 7}})
	status, h, resp := call(t, "PUT", urls[0]+"/v1/sessions/"+sid, string(body), "Content-Type", "application/msgpack", "Accept", "application/msgpack")
	if status != 201 || h.Get("Content-Type") != "application/msgpack" {
		t.Fatalf("msgpack PUT: %d %s", status, resp)
	}
	var s struct {
		ID         string                        `msgpack:"id"`
		Principal  string                        `msgpack:"principal"`
		Attributes map[string]msgpack.RawMessage `msgpack:"attributes"`
		Version    uint64                        `msgpack:"version"`
	}
	if err := msgpack.Unmarshal(resp, &s); err != nil || s.Principal != "dave" || s.Version != 1 {
		t.Fatalf("msgpack answer: %v %+v", err, s)
	}
	var bin []byte
	if err := msgpack.Unmarshal(s.Attributes["bin"], &bin); err != nil || !bytes.Equal(bin, []byte{0, 1, 2}) {
		t.Fatalf("binary attribute came back as %v (%v)", bin, err)
	}
	patch, _ := msgpack.Marshal(map[string]any{"n": nil, "more": "x"})
	status, _, resp = call(t, "PATCH", urls[1]+"/v1/sessions/"+sid, string(patch), "Content-Type", "application/msgpack")
	got := decodeSession(t, resp)
	if status != 200 || got.Attributes["n"] != nil || got.Attributes["more"] != "x" || got.Attributes["bin"] == nil {
		t.Fatalf("msgpack PATCH: %d %s", status, resp)
	}
}

// msgpack carries values JSON cannot show. A session holding one is
// stored as sent and read back whole in msgpack; a JSON read gets 406
// saying to ask in msgpack (not 500), and a write answered in JSON,
// applied by then, answers without a body rather than with an error.
func TestValuesJSONCannotShowAreKeptAndAnsweredInMsgpack(t *testing.T) {
	urls := startAPI(t, 2, 0)
	nan := make([]byte, 9)
	nan[0] = 0xcb // float64
	binary.BigEndian.PutUint64(nan[1:], math.Float64bits(math.NaN()))
	intKeys, _ := msgpack.Marshal(map[int]string{1: "one"})
	mixedKeys := []byte{0x82, 0xa1, 'a', 1, 2, 3} // {"a": 1, 2: 3}
	stamp, _ := msgpack.Marshal(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	cases := []struct {
		name  string
		value msgpack.RawMessage
		why   string // in the 406's message
	}{
		{"extension", msgpack.RawMessage{0xd4, 5, 1}, "a msgpack extension of type 5"}, // fixext 1 of type 5
		{"nan", nan, "NaN"},
		{"inf32", msgpack.RawMessage{0xca, 0x7f, 0x80, 0, 0}, "+Inf"},
		{"int keys", intKeys, "a map key that is not a string"},
		{"mixed keys", mixedKeys, "a map key that is not a string"},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := fmt.Sprintf("no-json-session-%07d", i)
			url := urls[0] + "/v1/sessions/" + id
			put, _ := msgpack.Marshal(map[string]any{"principal": "frank",
				"attributes": map[string]msgpack.RawMessage{"v": tc.value, "t": stamp}})
			status, h, body := call(t, "PUT", url, string(put), "Content-Type", "application/msgpack", "Accept", "application/msgpack")
			if status != 201 || h.Get("ETag") != `"1"` {
				t.Fatalf("msgpack PUT: %d %q", status, body)
			}

			// JSON readers are told to ask in msgpack, on either node.
			for _, u := range urls {
				status, h, body = call(t, "GET", u+"/v1/sessions/"+id, "")
				wantError(t, "JSON GET", status, body, 406, "not_acceptable")
				if msg := string(body); !strings.Contains(msg, tc.why) || !strings.Contains(msg, "Accept: application/msgpack") ||
					!strings.Contains(msg, "JSON cannot show") || h.Get("Content-Type") != "application/json" || h.Get("ETag") != "" {
					t.Fatalf("JSON GET: %v %s", h, body)
				}
			}
			if status, _, body = call(t, "HEAD", url, ""); status != 406 || len(body) != 0 {
				t.Fatalf("JSON HEAD: %d %q", status, body)
			}

			// msgpack readers get the value byte for byte.
			got := getMsgpack(t, url)
			if !bytes.Equal(got.Attributes["v"], tc.value) || got.Version != 1 {
				t.Fatalf("msgpack GET: v%d, v = %x, want %x", got.Version, got.Attributes["v"], tc.value)
			}

			// A JSON-answered write is applied and says so, without a body.
			status, h, body = call(t, "PATCH", url, `{"theme":"dark"}`)
			if status != 204 || h.Get("ETag") != `"2"` || len(body) != 0 {
				t.Fatalf("JSON PATCH: %d %v %q", status, h, body)
			}
			if got = getMsgpack(t, url); got.Version != 2 || !bytes.Equal(got.Attributes["v"], tc.value) || got.Attributes["theme"] == nil {
				t.Fatalf("after the JSON PATCH: v%d %v", got.Version, got.Attributes)
			}
			status, h, body = call(t, "PUT", url, string(put), "Content-Type", "application/msgpack")
			if status != 204 || h.Get("ETag") != `"3"` || len(body) != 0 {
				t.Fatalf("msgpack PUT answered in JSON: %d %v %q", status, h, body)
			}
			id2 := fmt.Sprintf("no-json-created-%07d", i)
			status, h, body = call(t, "PUT", urls[1]+"/v1/sessions/"+id2, string(put), "Content-Type", "application/msgpack")
			if status != 201 || h.Get("Location") != "/v1/sessions/"+id2 || len(body) != 0 {
				t.Fatalf("msgpack PUT creating, answered in JSON: %d %v %q", status, h, body)
			}
			if got = getMsgpack(t, urls[0]+"/v1/sessions/"+id2); !bytes.Equal(got.Attributes["v"], tc.value) {
				t.Fatalf("created session: %v", got.Attributes)
			}
		})
	}

	// A msgpack timestamp is a value JSON shows, as RFC 3339.
	put, _ := msgpack.Marshal(map[string]any{"attributes": map[string]msgpack.RawMessage{"t": stamp}})
	url := urls[0] + "/v1/sessions/" + sid
	if status, _, body := call(t, "PUT", url, string(put), "Content-Type", "application/msgpack"); status != 201 ||
		decodeSession(t, body).Attributes["t"] != "2026-01-02T03:04:05Z" {
		t.Fatalf("PUT of a timestamp: %d %s", status, body)
	}
}

// A JSON number past float64's range is refused rather than stored as
// ±Inf, which no JSON answer could show.
func TestJSONNumbersPastFloat64AreRefused(t *testing.T) {
	urls := startAPI(t, 1, 0)
	url := urls[0] + "/v1/sessions/" + sid
	if status, _, body := call(t, "PUT", url, `{"attributes":{"n":1}}`); status != 201 {
		t.Fatalf("setup PUT: %d %s", status, body)
	}
	for _, tc := range []struct{ method, body string }{
		{"PUT", `{"attributes":{"n":1e400}}`},
		{"PUT", `{"attributes":{"n":[-1e400]}}`},
		{"PATCH", `{"n":1e309}`},
		{"PATCH", `{"m":{"k":-1e999}}`},
	} {
		status, _, body := call(t, tc.method, url, tc.body)
		wantError(t, tc.method+" "+tc.body, status, body, 400, "invalid_body")
		if !strings.Contains(string(body), "range of a 64-bit float") {
			t.Fatalf("%s %s: %s", tc.method, tc.body, body)
		}
	}
	status, _, body := call(t, "GET", url, "")
	if s := decodeSession(t, body); status != 200 || s.Version != 1 || s.Attributes["n"] != float64(1) {
		t.Fatalf("after refused numbers: %d %s", status, body)
	}
	if status, _, body = call(t, "PATCH", url, `{"tiny":1e-400}`); status != 200 || decodeSession(t, body).Attributes["tiny"] != float64(0) {
		t.Fatalf("a number too small to tell from 0: %d %s", status, body)
	}
}

// msgpackSession decodes a msgpack session answer.
type msgpackSession struct {
	Attributes map[string]msgpack.RawMessage `msgpack:"attributes"`
	Version    uint64                        `msgpack:"version"`
}

// getMsgpack reads a session in msgpack or fails.
func getMsgpack(t *testing.T, url string) msgpackSession {
	t.Helper()
	status, h, body := call(t, "GET", url, "", "Accept", "application/msgpack")
	var s msgpackSession
	if err := msgpack.Unmarshal(body, &s); status != 200 || err != nil || h.Get("Content-Type") != "application/msgpack" {
		t.Fatalf("msgpack GET: %d %v %q", status, err, body)
	}
	return s
}

func TestBadInputGetsAClearErrorAndChangesNothing(t *testing.T) {
	urls := startAPI(t, 2, 4096)
	a := urls[0]
	if status, _, body := call(t, "PUT", a+"/v1/sessions/"+sid, `{"principal":"erin","attributes":{"k":"v"}}`); status != 201 {
		t.Fatalf("setup PUT: %d %s", status, body)
	}
	big := `{"attributes":{"blob":"` + strings.Repeat("x", 5000) + `"}}`
	cases := []struct {
		name, method, path, body string
		header                   []string
		status                   int
		code                     string
	}{
		{"short id", "GET", "/v1/sessions/short", "", nil, 400, "invalid_id"},
		{"bad characters", "PUT", "/v1/sessions/bad%20id%20with%20spaces!!", `{}`, nil, 400, "invalid_id"},
		{"id too long", "GET", "/v1/sessions/" + strings.Repeat("a", 129), "", nil, 400, "invalid_id"},
		{"body over the limit", "PUT", "/v1/sessions/" + sid, big, nil, 413, "too_large"},
		{"undecodable JSON", "PUT", "/v1/sessions/" + sid, `{"principal":`, nil, 400, "invalid_body"},
		{"unknown field", "PUT", "/v1/sessions/" + sid, `{"principle":"x"}`, nil, 400, "invalid_body"},
		{"trailing data", "PUT", "/v1/sessions/" + sid, `{} {}`, nil, 400, "invalid_body"},
		{"bad duration", "PUT", "/v1/sessions/" + sid, `{"idle_timeout":"forever"}`, nil, 400, "invalid"},
		{"undecodable msgpack", "PUT", "/v1/sessions/" + sid, "\xc1\xc1", []string{"Content-Type", "application/msgpack"}, 400, "invalid_body"},
		{"patch not an object", "PATCH", "/v1/sessions/" + sid, `[1,2]`, nil, 400, "invalid_body"},
		{"bad If-Match", "PUT", "/v1/sessions/" + sid, `{}`, []string{"If-Match", "abc"}, 400, "invalid_if_match"},
		{"wrong method", "POST", "/v1/sessions/" + sid, `{}`, nil, 405, "method_not_allowed"},
		{"wrong method on cluster", "DELETE", "/v1/cluster", "", nil, 405, "method_not_allowed"},
		{"unknown path", "GET", "/v2/everything", "", nil, 404, "not_found"},
		{"patch unknown session", "PATCH", "/v1/sessions/unknown-session-00000001", `{"a":1}`, nil, 404, "not_found"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := call(t, tc.method, a+tc.path, tc.body, tc.header...)
			var e struct{ Error, Code string }
			if err := json.Unmarshal(body, &e); err != nil || status != tc.status || e.Code != tc.code || e.Error == "" || h.Get("Content-Type") != "application/json" {
				t.Fatalf("%s %s: %d %s, want %d with code %q", tc.method, tc.path, status, body, tc.status, tc.code)
			}
		})
	}
	// A session that only grows too large through a patch is refused too.
	if status, _, body := call(t, "PATCH", a+"/v1/sessions/"+sid, `{"blob":"`+strings.Repeat("y", 4000)+`"}`); status != 413 {
		t.Fatalf("patch past the session limit: %d %s", status, body)
	}
	status, _, body := call(t, "GET", urls[1]+"/v1/sessions/"+sid, "")
	if s := decodeSession(t, body); status != 200 || s.Version != 1 || s.Principal != "erin" || len(s.Attributes) != 1 {
		t.Fatalf("after bad input the session changed: %d %s", status, body)
	}
}

func TestHealthAndClusterView(t *testing.T) {
	urls := startAPI(t, 3, 0)
	for _, path := range []string{"/livez", "/readyz"} {
		if status, _, body := call(t, "GET", urls[0]+path, ""); status != 200 {
			t.Fatalf("%s: %d %s", path, status, body)
		}
	}
	status, _, body := call(t, "GET", urls[1]+"/v1/cluster", "")
	var view struct {
		Ready   bool   `json:"ready"`
		Epoch   uint64 `json:"epoch"`
		Members []struct {
			Name string `json:"name"`
		} `json:"members"`
		Partitions      map[string]struct{ Primary, Buddy int } `json:"partitions"`
		UnderReplicated int                                     `json:"under_replicated"`
	}
	if err := json.Unmarshal(body, &view); status != 200 || err != nil || len(view.Members) != 3 || len(view.Partitions) != 3 || view.Epoch == 0 {
		t.Fatalf("cluster: %d %s", status, body)
	}
	total := 0
	for _, l := range view.Partitions {
		total += l.Primary
	}
	if total != 271 || view.UnderReplicated != 0 {
		t.Fatalf("cluster: %d primaries, %d under-replicated: %s", total, view.UnderReplicated, body)
	}
	call(t, "PUT", urls[0]+"/v1/sessions/"+sid, `{}`)
	status, h, body := call(t, "GET", urls[0]+"/metrics", "")
	for _, want := range []string{"tandem_ready{node=", "tandem_under_replicated_partitions{node=", "tandem_writes_total", "tandem_sessions{node=", "go_goroutines",
		"tandem_lease_misses_total{", "tandem_fence_waits_total{", "tandem_handover_waits_total{", "tandem_handoff_refusals_total{", "tandem_rejoins_total{", "tandem_duplicates_total{", "tandem_peer_identity_refusals_total{", "tandem_peer_wire_downs_total{",
		`tandem_request_duration_seconds_bucket{node="node-1",op="put",le="0.001"}`, "tandem_replication_duration_seconds_count{", "tandem_build_info{"} {
		if !strings.Contains(string(body), want) {
			t.Fatalf("/metrics (%d, %s) lacks %s:\n%s", status, h.Get("Content-Type"), want, body)
		}
	}
}

func TestLogAUserOutEverywhere(t *testing.T) {
	urls := startAPI(t, 3, 0)
	for i := range 9 {
		principal := "frank"
		if i%3 == 0 {
			principal = "grace"
		}
		id := "principal-session-000" + string(rune('a'+i))
		if status, _, body := call(t, "PUT", urls[i%3]+"/v1/sessions/"+id, `{"principal":"`+principal+`"}`); status != 201 {
			t.Fatalf("PUT: %d %s", status, body)
		}
	}
	status, _, body := call(t, "DELETE", urls[1]+"/v1/principals/frank/sessions", "")
	if status != 200 || !strings.Contains(string(body), `"deleted":6`) {
		t.Fatalf("DELETE principal sessions: %d %s", status, body)
	}
	for i := range 9 {
		id := "principal-session-000" + string(rune('a'+i))
		status, _, _ := call(t, "GET", urls[2]+"/v1/sessions/"+id, "")
		if want := map[bool]int{true: 200, false: 404}[i%3 == 0]; status != want {
			t.Fatalf("GET %s after logout of frank: %d, want %d", id, status, want)
		}
	}
}

// TestForwardedAnswersAreThePrimarysAnswers: a node that forwards a read
// to the session's primary answers the bytes the primary answers itself,
// in JSON and in msgpack, for attributes of every kind.
func TestForwardedAnswersAreThePrimarysAnswers(t *testing.T) {
	urls := startAPI(t, 3, 0)
	attrs := map[string]any{
		"cart":    map[string]any{"tea": 1, "items": []any{"a", map[string]any{"z": nil, "b": 2.5}}, "empty": map[string]any{}},
		"null":    nil,
		"unicode": "héllo 世界 😀 \u2028 <&> \"q\"\n",
		"bin":     []byte{0, 1, 0xfe, 0xff},
		"n":       -42,
		"big":     uint64(1) << 63,
		"f":       0.000001,
	}
	body, _ := msgpack.Marshal(map[string]any{"principal": "zoë", "attributes": attrs, "idle_timeout": "10m"})
	if status, _, resp := call(t, "PUT", urls[0]+"/v1/sessions/"+sid, string(body), "Content-Type", "application/msgpack"); status != 201 {
		t.Fatalf("PUT: %d %s", status, resp)
	}
	_, _, resp := call(t, "GET", urls[0]+"/v1/sessions/"+sid+"/owners", "")
	var owners struct {
		Primary struct{ HTTP string } `json:"primary"`
	}
	if err := json.Unmarshal(resp, &owners); err != nil || owners.Primary.HTTP == "" {
		t.Fatalf("owners: %v %s", err, resp)
	}
	const wantAttrs = `"attributes":{"big":9223372036854775808,"bin":"AAH+/w==",` +
		`"cart":{"empty":{},"items":["a",{"b":2.5,"z":null}],"tea":1},"f":0.000001,"n":-42,"null":null,` +
		`"unicode":"héllo 世界 😀 \u2028 \u003c\u0026\u003e \"q\"\n"}`
	for _, accept := range []string{"application/json", "application/msgpack"} {
		primary := "http://" + owners.Primary.HTTP
		status, h, want := call(t, "GET", primary+"/v1/sessions/"+sid+"?touch=false", "", "Accept", accept)
		if status != 200 || h.Get("ETag") != `"1"` {
			t.Fatalf("GET from the primary: %d %s", status, want)
		}
		if accept == "application/json" && !bytes.Contains(want, []byte(wantAttrs)) {
			t.Fatalf("the primary's answer\n%s\nlacks\n%s", want, wantAttrs)
		}
		forwarded := 0
		for _, u := range urls {
			status, h2, got := call(t, "GET", u+"/v1/sessions/"+sid+"?touch=false", "", "Accept", accept)
			if status != 200 || h2.Get("ETag") != h.Get("ETag") || h2.Get("Content-Type") != h.Get("Content-Type") || !bytes.Equal(got, want) {
				t.Fatalf("%s from %s: %d %s\n%q\nthe primary answered\n%q", accept, u, status, h2, got, want)
			}
			if u != primary {
				forwarded++
			}
		}
		if forwarded != 2 {
			t.Fatalf("%d of the reads were forwarded, want 2", forwarded)
		}
	}
}
