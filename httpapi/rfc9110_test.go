package httpapi_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vmihailenco/msgpack/v5"
)

// The HTTP API follows RFC 9110: preconditions, 201 on create, content
// types, content negotiation, HEAD, and error bodies in the user's terms.

// rfcID returns a session id for case i of a test, unique within it.
func rfcID(test string, i int) string { return fmt.Sprintf("rfc-%s-%012d", test, i) }

// callMulti makes one request with header fields given as name, value
// pairs, a name repeated making repeated fields, and returns status and
// body.
func callMulti(t *testing.T, method, url, body string, header []string) (int, []byte) {
	t.Helper()
	status, _, b := call(t, method, url, body, header...)
	return status, b
}

// mustPut writes session id with {"attributes":{"n":n}} and fails unless
// it answers want.
func mustPut(t *testing.T, base, id string, n, want int) session {
	t.Helper()
	status, _, body := call(t, "PUT", base+"/v1/sessions/"+id, fmt.Sprintf(`{"attributes":{"n":%d}}`, n))
	if status != want {
		t.Fatalf("PUT %s: %d %s, want %d", id, status, body, want)
	}
	return decodeSession(t, body)
}

// current reads session id without touching it: its version, or 0 when
// it does not exist.
func current(t *testing.T, base, id string) (uint64, session) {
	t.Helper()
	status, _, body := call(t, "GET", base+"/v1/sessions/"+id+"?touch=false", "")
	switch status {
	case 404:
		return 0, session{}
	case 200:
		s := decodeSession(t, body)
		return s.Version, s
	}
	t.Fatalf("GET %s: %d %s", id, status, body)
	return 0, session{}
}

func TestIfNoneMatchOnPut(t *testing.T) {
	urls := startAPI(t, 2, 0)
	a, b := urls[0], urls[1]
	cases := []struct {
		name    string
		setup   func(t *testing.T, id string) // the session before the PUT
		header  string
		status  int
		version uint64 // the version after the request
	}{
		{"* when absent creates", func(*testing.T, string) {}, "*", 201, 1},
		{"* when present is refused", func(t *testing.T, id string) { mustPut(t, a, id, 0, 201) }, "*", 412, 1},
		{"* after a delete creates", func(t *testing.T, id string) {
			mustPut(t, a, id, 0, 201)
			if status, _, body := call(t, "DELETE", a+"/v1/sessions/"+id, ""); status != 204 {
				t.Fatalf("DELETE: %d %s", status, body)
			}
		}, "*", 201, 3},
		{"the current ETag is refused", func(t *testing.T, id string) { mustPut(t, a, id, 0, 201) }, `"1"`, 412, 1},
		{"the current ETag, weak, is refused (weak comparison)", func(t *testing.T, id string) { mustPut(t, a, id, 0, 201) }, `W/"1"`, 412, 1},
		{"another ETag replaces", func(t *testing.T, id string) { mustPut(t, a, id, 0, 201) }, `"7", "8"`, 200, 2},
		{"an ETag when absent creates", func(*testing.T, string) {}, `"1"`, 201, 1},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id := rfcID("inm", i)
			tc.setup(t, id)
			status, h, body := call(t, "PUT", b+"/v1/sessions/"+id, `{"attributes":{"n":1}}`, "If-None-Match", tc.header)
			if status != tc.status {
				t.Fatalf("PUT with If-None-Match %s: %d %s, want %d", tc.header, status, body, tc.status)
			}
			if status == 412 && !strings.Contains(string(body), `"code":"version_mismatch"`) {
				t.Fatalf("412 body: %s", body)
			}
			if status == 201 && h.Get("Location") != "/v1/sessions/"+id {
				t.Fatalf("201 without Location: %v", h)
			}
			if v, _ := current(t, a, id); v != tc.version {
				t.Fatalf("after: version %d, want %d", v, tc.version)
			}
		})
	}
}

func TestIfMatchOnPutPatchDelete(t *testing.T) {
	urls := startAPI(t, 3, 0)
	a, c := urls[0], urls[2]
	bodies := map[string]string{"PUT": `{"attributes":{"n":9}}`, "PATCH": `{"n":9}`, "DELETE": ""}
	cases := []struct {
		name    string
		exists  bool // the session is at version 2 before the request
		header  string
		status  map[string]int // by method
		changed bool
	}{
		{"* on an existing session", true, `*`, map[string]int{"PUT": 200, "PATCH": 200, "DELETE": 204}, true},
		{"* on an absent session", false, `*`, map[string]int{"PUT": 412, "PATCH": 412, "DELETE": 412}, false},
		{"the current ETag", true, `"2"`, map[string]int{"PUT": 200, "PATCH": 200, "DELETE": 204}, true},
		{"a stale ETag", true, `"1"`, map[string]int{"PUT": 412, "PATCH": 412, "DELETE": 412}, false},
		{"a list holding the current ETag", true, `"1", "2"`, map[string]int{"PUT": 200, "PATCH": 200, "DELETE": 204}, true},
		{"a list holding it last, over two fields", true, `"5", "1"|"2"`, map[string]int{"PUT": 200, "PATCH": 200, "DELETE": 204}, true},
		{"a list without it", true, `"1", "3", "4"`, map[string]int{"PUT": 412, "PATCH": 412, "DELETE": 412}, false},
		{"the current ETag, weak (strong comparison)", true, `W/"2"`, map[string]int{"PUT": 412, "PATCH": 412, "DELETE": 412}, false},
		{"a list of weak ETags", true, `W/"1", W/"2"`, map[string]int{"PUT": 412, "PATCH": 412, "DELETE": 412}, false},
		{"weak and strong", true, `W/"2", "2"`, map[string]int{"PUT": 200, "PATCH": 200, "DELETE": 204}, true},
		{"an opaque ETag", true, `"abc"`, map[string]int{"PUT": 412, "PATCH": 412, "DELETE": 412}, false},
		{"a list on an absent session", false, `"1", "2"`, map[string]int{"PUT": 412, "PATCH": 412, "DELETE": 412}, false},
		{"not an entity tag", true, `abc`, map[string]int{"PUT": 400, "PATCH": 400, "DELETE": 400}, false},
		{"an unterminated tag", true, `"2`, map[string]int{"PUT": 400, "PATCH": 400, "DELETE": 400}, false},
	}
	i := 0
	for _, tc := range cases {
		for _, method := range []string{"PUT", "PATCH", "DELETE"} {
			id := rfcID("im", i)
			i++
			t.Run(tc.name+"/"+method, func(t *testing.T) {
				if tc.exists {
					mustPut(t, a, id, 0, 201)
					mustPut(t, a, id, 1, 200)
				}
				var header []string
				for _, v := range strings.Split(tc.header, "|") {
					header = append(header, "If-Match", v)
				}
				status, body := callMulti(t, method, c+"/v1/sessions/"+id, bodies[method], header)
				if want := tc.status[method]; status != want {
					t.Fatalf("%s with If-Match %s: %d %s, want %d", method, tc.header, status, body, want)
				}
				v, s := current(t, a, id)
				switch {
				case !tc.exists && v != 0:
					t.Fatalf("an absent session was written: v%d", v)
				case tc.exists && !tc.changed && (v != 2 || s.Attributes["n"] != float64(1)):
					t.Fatalf("a refused %s changed the session: v%d %v", method, v, s.Attributes)
				case tc.exists && tc.changed && method == "DELETE" && v != 0:
					t.Fatalf("DELETE left v%d", v)
				case tc.exists && tc.changed && method != "DELETE" && (v != 3 || s.Attributes["n"] != float64(9)):
					t.Fatalf("%s did not apply: v%d %v", method, v, s.Attributes)
				}
			})
		}
	}
}

func TestPutAnswers201WhenItCreates(t *testing.T) {
	urls := startAPI(t, 3, 0)
	a, b, c := urls[0], urls[1], urls[2]
	id := rfcID("created", 0)
	steps := []struct {
		name, method, via, header string
		status                    int
		version                   uint64
	}{
		{"a PUT of a new session creates", "PUT", a, "", 201, 1},
		{"a second PUT replaces", "PUT", b, "", 200, 2},
		{"a conditional PUT replaces", "PUT", c, `"2"`, 200, 3},
		{"delete", "DELETE", a, "", 204, 0},
		{"a PUT after the delete creates, at version 5", "PUT", b, "", 201, 5},
		{"and the next replaces", "PUT", c, "", 200, 6},
	}
	for _, st := range steps {
		var header []string
		if st.header != "" {
			header = []string{"If-Match", st.header}
		}
		status, h, body := call(t, st.method, st.via+"/v1/sessions/"+id, `{"principal":"p","attributes":{}}`, header...)
		if status != st.status {
			t.Fatalf("%s: %d %s, want %d", st.name, status, body, st.status)
		}
		if loc := h.Get("Location"); (status == 201) != (loc == "/v1/sessions/"+id) {
			t.Fatalf("%s: %d with Location %q", st.name, status, loc)
		}
		if st.version != 0 {
			if s := decodeSession(t, body); s.Version != st.version || h.Get("ETag") != fmt.Sprintf(`"%d"`, st.version) {
				t.Fatalf("%s: v%d ETag %s, want v%d", st.name, s.Version, h.Get("ETag"), st.version)
			}
		}
	}
}

func TestContentTypes(t *testing.T) {
	urls := startAPI(t, 2, 0)
	a := urls[0]
	id := rfcID("ct", 0)
	mustPut(t, a, id, 0, 201)
	mp, _ := msgpack.Marshal(map[string]any{"attributes": map[string]any{"n": 5}})
	mpPatch, _ := msgpack.Marshal(map[string]any{"n": 5})
	cases := []struct {
		name, method, path, body string
		header                   []string
		status                   int
	}{
		{"PUT as XML", "PUT", "/v1/sessions/" + id, `<session/>`, []string{"Content-Type", "application/xml"}, 415},
		{"JSON labelled as XML", "PUT", "/v1/sessions/" + id, `{"attributes":{"n":5}}`, []string{"Content-Type", "application/xml"}, 415},
		{"a form (curl -d's default)", "PUT", "/v1/sessions/" + id, `{"attributes":{"n":5}}`, []string{"Content-Type", "application/x-www-form-urlencoded"}, 415},
		{"text", "PATCH", "/v1/sessions/" + id, `{"n":5}`, []string{"Content-Type", "text/plain"}, 415},
		{"POST as XML", "POST", "/v1/sessions", `<session/>`, []string{"Content-Type", "application/xml"}, 415},
		{"a merge patch is not a PUT body", "PUT", "/v1/sessions/" + id, `{"attributes":{"n":5}}`, []string{"Content-Type", "application/merge-patch+json"}, 415},
		{"an unparsable type", "PUT", "/v1/sessions/" + id, `{"attributes":{"n":5}}`, []string{"Content-Type", "application/"}, 415},
		{"gzip", "PUT", "/v1/sessions/" + id, `{"attributes":{"n":5}}`, []string{"Content-Type", "application/json", "Content-Encoding", "gzip"}, 415},
		{"JSON", "PUT", "/v1/sessions/" + id, `{"attributes":{"n":5}}`, []string{"Content-Type", "application/json"}, 200},
		{"JSON with a charset", "PUT", "/v1/sessions/" + id, `{"attributes":{"n":5}}`, []string{"Content-Type", "application/json; charset=utf-8"}, 200},
		{"no Content-Type is JSON", "PUT", "/v1/sessions/" + id, `{"attributes":{"n":5}}`, nil, 200},
		{"msgpack", "PUT", "/v1/sessions/" + id, string(mp), []string{"Content-Type", "application/msgpack"}, 200},
		{"x-msgpack", "PUT", "/v1/sessions/" + id, string(mp), []string{"Content-Type", "application/x-msgpack"}, 200},
		{"identity encoding", "PUT", "/v1/sessions/" + id, `{"attributes":{"n":5}}`, []string{"Content-Encoding", "identity"}, 200},
		{"a merge patch", "PATCH", "/v1/sessions/" + id, `{"n":5}`, []string{"Content-Type", "application/merge-patch+json"}, 200},
		{"a msgpack patch", "PATCH", "/v1/sessions/" + id, string(mpPatch), []string{"Content-Type", "application/msgpack"}, 200},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before, _ := current(t, a, id)
			status, h, body := call(t, tc.method, a+tc.path, tc.body, tc.header...)
			if status != tc.status {
				t.Fatalf("%s: %d %s, want %d", tc.name, status, body, tc.status)
			}
			after, _ := current(t, a, id)
			if status == 415 {
				wantError(t, tc.name, status, body, 415, "unsupported_media_type")
				if after != before {
					t.Fatalf("a 415 changed the session: v%d to v%d", before, after)
				}
				if tc.method == "PATCH" && !strings.Contains(h.Get("Accept-Patch"), "application/merge-patch+json") {
					t.Fatalf("a PATCH's 415 without Accept-Patch: %v", h)
				}
			} else if after != before+1 {
				t.Fatalf("v%d to v%d", before, after)
			}
		})
	}
}

func TestBodiesMustBeObjects(t *testing.T) {
	urls := startAPI(t, 2, 0)
	a := urls[0]
	id := rfcID("obj", 0)
	mustPut(t, a, id, 7, 201)
	nilMsgpack, _ := msgpack.Marshal(nil)
	arrMsgpack, _ := msgpack.Marshal([]int{1})
	cases := []struct {
		name, method, path, body string
		header                   []string
	}{
		{"PUT null", "PUT", "/v1/sessions/" + id, `null`, nil},
		{"PUT null with space", "PUT", "/v1/sessions/" + id, " null\n", nil},
		{"PUT an array", "PUT", "/v1/sessions/" + id, `[]`, nil},
		{"PUT a string", "PUT", "/v1/sessions/" + id, `"x"`, nil},
		{"PUT a number", "PUT", "/v1/sessions/" + id, `1`, nil},
		{"PUT true", "PUT", "/v1/sessions/" + id, `true`, nil},
		{"PUT nothing", "PUT", "/v1/sessions/" + id, ``, nil},
		{"PUT msgpack nil", "PUT", "/v1/sessions/" + id, string(nilMsgpack), []string{"Content-Type", "application/msgpack"}},
		{"PUT a msgpack array", "PUT", "/v1/sessions/" + id, string(arrMsgpack), []string{"Content-Type", "application/msgpack"}},
		{"POST null", "POST", "/v1/sessions", `null`, nil},
		{"PATCH null", "PATCH", "/v1/sessions/" + id, `null`, nil},
		{"PATCH a string", "PATCH", "/v1/sessions/" + id, `"x"`, nil},
		{"PATCH msgpack nil", "PATCH", "/v1/sessions/" + id, string(nilMsgpack), []string{"Content-Type", "application/msgpack"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := call(t, tc.method, a+tc.path, tc.body, tc.header...)
			wantError(t, tc.name, status, body, 400, "invalid_body")
			if v, s := current(t, a, id); v != 1 || s.Attributes["n"] != float64(7) {
				t.Fatalf("after %s: v%d %v", tc.name, v, s.Attributes)
			}
		})
	}
}

func TestReadOnlyFieldsAreIgnored(t *testing.T) {
	urls := startAPI(t, 2, 0)
	a, b := urls[0], urls[1]
	id := rfcID("ro", 0)
	if status, _, body := call(t, "PUT", a+"/v1/sessions/"+id, `{"principal":"ann","attributes":{"cart":["tea"]},"idle_timeout":"10m"}`); status != 201 {
		t.Fatalf("PUT: %d %s", status, body)
	}
	_, _, got := call(t, "GET", b+"/v1/sessions/"+id, "")
	_, _, gotMsgpack := call(t, "GET", b+"/v1/sessions/"+id+"?touch=false", "", "Accept", "application/msgpack")
	cases := []struct {
		name, method, path, body string
		header                   []string
		status                   int
		code                     string
	}{
		{"a GET's JSON body PUT back", "PUT", "/v1/sessions/" + id, string(got), nil, 200, ""},
		{"a GET's msgpack body PUT back", "PUT", "/v1/sessions/" + id, string(gotMsgpack), []string{"Content-Type", "application/msgpack"}, 200, ""},
		{"read-only fields of any value", "PUT", "/v1/sessions/" + id, `{"id":"` + id + `","principal":"ann","attributes":{"cart":["tea"]},"version":99,"created_at":"yesterday","last_access_at":null,"expires_at":{"x":1}}`, nil, 200, ""},
		{"another id", "PUT", "/v1/sessions/" + id, `{"id":"rfc-ro-other-00000000","principal":"ann"}`, nil, 400, "invalid"},
		{"an id in a POST", "POST", "/v1/sessions", `{"id":"` + id + `"}`, nil, 400, "invalid"},
		{"a field no answer has", "PUT", "/v1/sessions/" + id, `{"principal":"ann","owner":"x"}`, nil, 400, "invalid_body"},
	}
	want := uint64(1)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := call(t, tc.method, a+tc.path, tc.body, tc.header...)
			if tc.code != "" {
				wantError(t, tc.name, status, body, tc.status, tc.code)
			} else if status != tc.status {
				t.Fatalf("%s: %d %s, want %d", tc.name, status, body, tc.status)
			}
			if status < 300 {
				want++
			}
			v, s := current(t, a, id)
			cart, _ := s.Attributes["cart"].([]any)
			if v != want || s.Principal != "ann" || len(cart) != 1 || cart[0] != "tea" || s.ID != id {
				t.Fatalf("after %s: v%d (want %d) %+v", tc.name, v, want, s)
			}
		})
	}
}

func TestHeadDoesNotTouch(t *testing.T) {
	urls := startAPI(t, 2, 0)
	a, b := urls[0], urls[1]
	id := rfcID("head", 0)
	mustPut(t, a, id, 0, 201)
	_, before := current(t, a, id)
	cases := []struct {
		name, method, query string
		touches             bool
	}{
		{"HEAD", "HEAD", "", false},
		{"HEAD through another node", "HEAD", "", false},
		{"HEAD ?touch=true", "HEAD", "?touch=true", false},
		{"GET ?touch=false", "GET", "?touch=false", false},
		{"GET", "GET", "", true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			time.Sleep(5 * time.Millisecond) // so that a touch would show
			via := a
			if i%2 == 1 {
				via = b
			}
			status, h, body := call(t, tc.method, via+"/v1/sessions/"+id+tc.query, "")
			if status != 200 || h.Get("ETag") != `"1"` || h.Get("Content-Type") != "application/json" {
				t.Fatalf("%s: %d %v", tc.name, status, h)
			}
			if tc.method == "HEAD" && len(body) != 0 {
				t.Fatalf("HEAD answered a body: %q", body)
			}
			_, after := current(t, a, id)
			if moved := !after.LastAccess.Equal(before.LastAccess); moved != tc.touches {
				t.Fatalf("%s: last access %v to %v (touches: %v)", tc.name, before.LastAccess, after.LastAccess, tc.touches)
			}
			before = after
		})
	}
}

func TestAcceptNegotiation(t *testing.T) {
	urls := startAPI(t, 2, 0)
	a := urls[0]
	id := rfcID("accept", 0)
	mustPut(t, a, id, 0, 201)
	cases := []struct {
		accept string
		want   string // the answer's Content-Type, or "406"
	}{
		{"", "application/json"},
		{"application/json", "application/json"},
		{"application/msgpack", "application/msgpack"},
		{"application/x-msgpack", "application/msgpack"},
		{"*/*", "application/json"},
		{"application/*", "application/json"},
		{"application/json;q=0.5, application/msgpack", "application/msgpack"},
		{"application/msgpack;q=0.1, application/json", "application/json"},
		{"application/msgpack;q=0.9, application/json;q=0.8", "application/msgpack"},
		{"application/msgpack, application/json", "application/msgpack"},
		{"application/msgpack;q=0.5, */*;q=0.5", "application/msgpack"},
		{"text/html, application/msgpack;q=0.1", "application/msgpack"},
		{"application/msgpack;q=0, */*", "application/json"},
		{"application/json;q=0, */*", "application/msgpack"},
		{"application/json;q=0, application/*;q=0.3", "application/msgpack"},
		{"text/html, application/xhtml+xml", "406"},
		{"application/json;q=0", "406"},
		{"*/*;q=0", "406"},
		{"application/json;q=0, application/msgpack;q=0, */*", "406"},
	}
	for _, tc := range cases {
		t.Run(tc.accept, func(t *testing.T) {
			status, h, body := call(t, "GET", a+"/v1/sessions/"+id+"?touch=false", "", "Accept", tc.accept)
			if tc.want == "406" {
				wantError(t, "Accept "+tc.accept, status, body, 406, "not_acceptable")
				return
			}
			if status != 200 || h.Get("Content-Type") != tc.want {
				t.Fatalf("Accept %q: %d %s, want %s", tc.accept, status, h.Get("Content-Type"), tc.want)
			}
			var v struct {
				Version uint64 `json:"version" msgpack:"version"`
			}
			var err error
			if tc.want == "application/json" {
				err = json.Unmarshal(body, &v)
			} else {
				err = msgpack.Unmarshal(body, &v)
			}
			if err != nil || v.Version != 1 {
				t.Fatalf("answer as %s: %v %+v", tc.want, err, v)
			}
		})
	}
	// A write the client could not read the answer of is not made.
	fresh := rfcID("accept", 1)
	status, _, body := call(t, "PUT", a+"/v1/sessions/"+fresh, `{}`, "Accept", "text/html")
	wantError(t, "PUT with Accept: text/html", status, body, 406, "not_acceptable")
	if v, _ := current(t, a, fresh); v != 0 {
		t.Fatalf("a 406 PUT created v%d", v)
	}
	for _, path := range []string{"/v1/cluster", "/v1/sessions/" + id + "/owners", "/livez"} {
		if status, h, _ := call(t, "GET", a+path, "", "Accept", "application/msgpack;q=0.5, application/json;q=0.4"); status != 200 || h.Get("Content-Type") != "application/msgpack" {
			t.Fatalf("GET %s: %d %s", path, status, h.Get("Content-Type"))
		}
	}
	// Probes answer JSON whatever the prober accepts.
	for _, path := range []string{"/livez", "/readyz"} {
		if status, h, _ := call(t, "GET", a+path, "", "Accept", "text/plain"); status != 200 || h.Get("Content-Type") != "application/json" {
			t.Fatalf("GET %s with Accept: text/plain: %d %s", path, status, h.Get("Content-Type"))
		}
	}
	status, _, body = call(t, "GET", a+"/v1/cluster", "", "Accept", "text/plain")
	wantError(t, "GET /v1/cluster with Accept: text/plain", status, body, 406, "not_acceptable")
}

func TestErrorBodiesSpeakToTheUser(t *testing.T) {
	urls := startAPI(t, 3, 4096)
	id := rfcID("err", 0)
	mustPut(t, urls[0], id, 0, 201)
	internals := []string{"forward", "remote", "node-", "127.0.0.1", "replicate", "partition"}
	type tcase struct {
		name, method, path, body string
		header                   []string
		status                   int
		code, says               string
	}
	var cases []tcase
	for i, u := range urls { // at least one of the three forwards to the primary
		cases = append(cases,
			tcase{fmt.Sprintf("GET unknown via %d", i), "GET", u + "/v1/sessions/rfc-err-unknown-0000", "", nil, 404, "not_found", "session rfc-err-unknown-0000 does not exist"},
			tcase{fmt.Sprintf("PATCH unknown via %d", i), "PATCH", u + "/v1/sessions/rfc-err-unknown-0000", `{"a":1}`, nil, 404, "not_found", "does not exist"},
			tcase{fmt.Sprintf("DELETE unknown via %d", i), "DELETE", u + "/v1/sessions/rfc-err-unknown-0000", "", nil, 404, "not_found", "does not exist"},
			tcase{fmt.Sprintf("stale If-Match via %d", i), "PUT", u + "/v1/sessions/" + id, `{}`, []string{"If-Match", `"9"`}, 412, "version_mismatch", `If-Match names ("9")`},
			tcase{fmt.Sprintf("If-None-Match via %d", i), "PUT", u + "/v1/sessions/" + id, `{}`, []string{"If-None-Match", `*`}, 412, "version_mismatch", "exists"},
			tcase{fmt.Sprintf("too large via %d", i), "PATCH", u + "/v1/sessions/" + id, `{"blob":"` + strings.Repeat("y", 4000) + `"}`, nil, 413, "too_large", "limit 4096"},
		)
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := call(t, tc.method, tc.path, tc.body, tc.header...)
			wantError(t, tc.name, status, body, tc.status, tc.code)
			var e struct{ Error string }
			_ = json.Unmarshal(body, &e)
			if !strings.Contains(e.Error, tc.says) {
				t.Fatalf("%s: %q does not say %q", tc.name, e.Error, tc.says)
			}
			for _, word := range internals {
				if strings.Contains(e.Error, word) {
					t.Fatalf("%s: %q exposes %q", tc.name, e.Error, word)
				}
			}
		})
	}
}
