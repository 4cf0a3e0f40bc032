package tandem_test

// Tests of what scs users expect of the middleware: timeouts per
// middleware, persistent cookies, an error hook, typed getters and Pop,
// and responses that set cookies kept out of shared caches.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tandem-io/tandem"
)

func TestMiddlewareTimeoutsPerMiddleware(t *testing.T) {
	nodes := startCluster(t, 1)
	defaults := tandem.DefaultConfig("x")
	for _, tc := range []struct {
		name     string
		cfg      tandem.MiddlewareConfig
		idle     time.Duration
		lifetime time.Duration
	}{
		{"node defaults", tandem.MiddlewareConfig{}, defaults.IdleTimeout, defaults.AbsoluteTimeout},
		{"idle and lifetime", tandem.MiddlewareConfig{IdleTimeout: 5 * time.Minute, Lifetime: time.Hour}, 5 * time.Minute, time.Hour},
		{"lifetime only", tandem.MiddlewareConfig{Lifetime: 30 * 24 * time.Hour}, defaults.IdleTimeout, 30 * 24 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := serveApp(t, nodes[0], tc.cfg)
			b := newBrowser(t)
			check := func(step string) {
				t.Helper()
				s, err := nodes[0].Peek(context.Background(), b.cookie(srv, "tandem_session"))
				if err != nil {
					t.Fatalf("%s: %v", step, err)
				}
				if s.IdleTimeout != tc.idle {
					t.Fatalf("%s: idle timeout %v, want %v", step, s.IdleTimeout, tc.idle)
				}
				if d := s.Deadline.Sub(s.Created); d < tc.lifetime-time.Second || d > tc.lifetime+time.Second {
					t.Fatalf("%s: deadline %v after creation, want %v", step, d, tc.lifetime)
				}
			}
			b.must(200, "POST", srv.URL+"/set?name=a&value=b")
			check("first write")
			b.must(200, "POST", srv.URL+"/login?user=ann") // RenewID creates the session anew
			check("after RenewID")
		})
	}
}

func TestMiddlewarePersistentCookiesByDefaultSessionOnlyOnRequest(t *testing.T) {
	nodes := startCluster(t, 1)
	for _, tc := range []struct {
		name    string
		cfg     tandem.MiddlewareConfig
		persist time.Duration // the cookies' Max-Age, or 0 for session cookies
	}{
		{"default: persist for the node's absolute timeout", tandem.MiddlewareConfig{}, tandem.DefaultConfig("x").AbsoluteTimeout},
		{"persist for the middleware's Lifetime", tandem.MiddlewareConfig{Lifetime: 7 * 24 * time.Hour}, 7 * 24 * time.Hour},
		{"SessionOnly", tandem.MiddlewareConfig{SessionOnly: true}, 0},
		{"SessionOnly with a Lifetime", tandem.MiddlewareConfig{SessionOnly: true, Lifetime: time.Hour}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := serveApp(t, nodes[0], tc.cfg)
			b := newBrowser(t)
			resp, _ := b.must(200, "POST", srv.URL+"/set?name=a&value=b")
			s, err := nodes[0].Peek(context.Background(), b.cookie(srv, "tandem_session"))
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"tandem_session", "tandem_route"} {
				c := responseCookie(resp, name)
				if c == nil {
					t.Fatalf("no %s cookie: %v", name, resp.Cookies())
				}
				if tc.persist == 0 {
					if c.MaxAge != 0 || !c.Expires.IsZero() {
						t.Fatalf("%s: Max-Age %d, Expires %v, want a session cookie", name, c.MaxAge, c.Expires)
					}
					continue
				}
				if want := int(tc.persist / time.Second); c.MaxAge < want-2 || c.MaxAge > want {
					t.Fatalf("%s: Max-Age %d, want %d", name, c.MaxAge, want)
				}
				if d := c.Expires.Sub(s.Deadline); d < -time.Second || d > time.Second {
					t.Fatalf("%s: Expires %v, want the session's deadline %v", name, c.Expires, s.Deadline)
				}
			}
			// The deadline does not move, so reads and writes to the
			// session set no cookie; logging out expires both.
			if resp, _ := b.must(200, "GET", srv.URL+"/get?name=a"); len(resp.Cookies()) != 0 {
				t.Fatalf("a read set cookies: %v", resp.Cookies())
			}
			if resp, _ := b.must(200, "POST", srv.URL+"/set?name=a&value=c"); len(resp.Cookies()) != 0 {
				t.Fatalf("a write to the session set cookies: %v", resp.Cookies())
			}
			resp, _ = b.must(200, "POST", srv.URL+"/logout")
			for _, name := range []string{"tandem_session", "tandem_route"} {
				if c := responseCookie(resp, name); c == nil || c.MaxAge >= 0 {
					t.Fatalf("logout: %s cookie %+v, want expired", name, c)
				}
			}
		})
	}
}

func TestMiddlewareResponsesThatSetCookiesAreNotCached(t *testing.T) {
	nodes := startCluster(t, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=600")
		if v := r.FormValue("vary"); v != "" {
			w.Header().Set("Vary", v)
		}
		s := tandem.FromContext(r.Context())
		switch r.FormValue("do") {
		case "set":
			_ = s.Set("a", "b")
		case "get":
			s.GetString("a")
		case "logout":
			_ = s.Destroy(r.Context())
		}
		io.WriteString(w, "ok")
	})
	srv := httptest.NewServer(nodes[0].Middleware(mux))
	t.Cleanup(srv.Close)
	b := newBrowser(t)
	for _, tc := range []struct {
		query      string
		setsCookie bool
		wantVary   []string
	}{
		{"do=none", false, nil},
		{"do=set", true, []string{"Cookie"}},
		{"do=get", false, nil},
		{"do=logout", true, []string{"Cookie"}},
		{"do=set&vary=Accept-Encoding", true, []string{"Accept-Encoding", "Cookie"}},
		{"do=set&vary=cookie", true, []string{"cookie"}}, // already there, in any case: not twice
		{"do=set&vary=*", true, []string{"*"}},
	} {
		if strings.HasPrefix(tc.query, "do=set") {
			b.must(200, "GET", srv.URL+"/?do=logout") // so that the write starts a session and sets a cookie
		}
		resp, _ := b.must(200, "GET", srv.URL+"/?"+tc.query)
		if got := len(resp.Cookies()) > 0; got != tc.setsCookie {
			t.Fatalf("%s: cookies %v, want some: %v", tc.query, resp.Cookies(), tc.setsCookie)
		}
		cc, vary := resp.Header.Get("Cache-Control"), resp.Header.Values("Vary")
		if tc.setsCookie && cc != "no-store" || !tc.setsCookie && cc != "public, max-age=600" {
			t.Fatalf("%s: Cache-Control %q", tc.query, cc)
		}
		if fmt.Sprint(vary) != fmt.Sprint(tc.wantVary) {
			t.Fatalf("%s: Vary %q, want %q", tc.query, vary, tc.wantVary)
		}
	}
}

func TestMiddlewareErrorFunc(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, 1, func(_ int, cfg *tandem.Config) { cfg.MaxSessionBytes = 1024 })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nodes[0].Kill() })
	big := strings.Repeat("x", 4096) // a session over MaxSessionBytes cannot be saved

	var hookErr error
	custom := tandem.MiddlewareConfig{ErrorFunc: func(w http.ResponseWriter, r *http.Request, err error) {
		hookErr = err
		http.Error(w, "custom: "+r.URL.Path, http.StatusTeapot)
	}}
	for _, tc := range []struct {
		name       string
		cfg        tandem.MiddlewareConfig
		status     int
		body       string
		retryAfter string
	}{
		{"default keeps the 503", tandem.MiddlewareConfig{}, http.StatusServiceUnavailable, "session store unavailable, please retry\n", "1"},
		{"custom hook", custom, http.StatusTeapot, "custom: /set\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := serveApp(t, nodes[0], tc.cfg)
			resp, body := newBrowser(t).do("POST", srv.URL+"/set?name=a&value="+big)
			if resp.StatusCode != tc.status || body != tc.body || resp.Header.Get("Retry-After") != tc.retryAfter || len(resp.Cookies()) != 0 {
				t.Fatalf("%d %q Retry-After %q cookies %v", resp.StatusCode, body, resp.Header.Get("Retry-After"), resp.Cookies())
			}
		})
	}
	if !errors.Is(hookErr, tandem.ErrTooLarge) {
		t.Fatalf("ErrorFunc got %v, want ErrTooLarge", hookErr)
	}
}

func TestSessionHandleTypedGettersAndPop(t *testing.T) {
	nodes := startCluster(t, 1)
	when := time.Date(2026, 3, 14, 15, 9, 26, 535897932, time.UTC)
	values := map[string]any{
		"int": 42, "negative": -7, "big": int64(1) << 40, "bool": true, "float": 2.5,
		"time": when, "bytes": []byte{0, 1, 2, 255}, "string": "tea",
	}
	type read struct {
		get  func(*tandem.SessionHandle, string) any
		pop  func(*tandem.SessionHandle, string) any
		zero any
	}
	var (
		asInt   = read{func(h *tandem.SessionHandle, n string) any { return h.GetInt(n) }, func(h *tandem.SessionHandle, n string) any { return h.PopInt(n) }, 0}
		asInt64 = read{func(h *tandem.SessionHandle, n string) any { return h.GetInt64(n) }, func(h *tandem.SessionHandle, n string) any { return h.PopInt64(n) }, int64(0)}
		asBool  = read{func(h *tandem.SessionHandle, n string) any { return h.GetBool(n) }, func(h *tandem.SessionHandle, n string) any { return h.PopBool(n) }, false}
		asFloat = read{func(h *tandem.SessionHandle, n string) any { return h.GetFloat(n) }, func(h *tandem.SessionHandle, n string) any { return h.PopFloat(n) }, 0.0}
		asTime  = read{func(h *tandem.SessionHandle, n string) any { return h.GetTime(n) }, func(h *tandem.SessionHandle, n string) any { return h.PopTime(n) }, time.Time{}}
		asBytes = read{func(h *tandem.SessionHandle, n string) any { return h.GetBytes(n) }, func(h *tandem.SessionHandle, n string) any { return h.PopBytes(n) }, []byte(nil)}
		asStr   = read{func(h *tandem.SessionHandle, n string) any { return h.GetString(n) }, func(h *tandem.SessionHandle, n string) any { return h.PopString(n) }, ""}
	)
	for _, tc := range []struct {
		name string
		as   read
		want any
	}{
		{"int", asInt, 42},
		{"negative", asInt, -7},
		{"int", asInt64, int64(42)},
		{"big", asInt64, int64(1) << 40},
		{"bool", asBool, true},
		{"float", asFloat, 2.5},
		{"time", asTime, when},
		{"bytes", asBytes, []byte{0, 1, 2, 255}},
		{"string", asStr, "tea"},
		{"string", asInt, 0},            // not an integer
		{"int", asBool, false},          // not a bool
		{"string", asTime, time.Time{}}, // not a time
		{"missing", asInt, 0},
		{"missing", asBytes, []byte(nil)},
	} {
		t.Run(fmt.Sprintf("%s as %T", tc.name, tc.want), func(t *testing.T) {
			// One request stores the values; the next reads and pops one;
			// a third finds it gone when it was there.
			var got, popped, after any
			var stillThere bool
			step := 0
			h := nodes[0].Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				s := tandem.FromContext(r.Context())
				switch step {
				case 0:
					for k, v := range values {
						if err := s.Set(k, v); err != nil {
							t.Error(err)
						}
					}
				case 1:
					got, popped = tc.as.get(s, tc.name), tc.as.pop(s, tc.name)
					after = tc.as.get(s, tc.name) // within the request, the pop is seen at once
				case 2:
					stillThere = s.Has(tc.name)
				}
			}))
			var cookies []*http.Cookie
			for step = 0; step < 3; step++ {
				req := httptest.NewRequest("GET", "/", nil)
				for _, c := range cookies {
					req.AddCookie(c)
				}
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != 200 {
					t.Fatalf("step %d: %d %s", step, rec.Code, rec.Body)
				}
				if step == 0 {
					cookies = rec.Result().Cookies()
				}
			}
			eq := func(a, b any) bool {
				if x, ok := a.(time.Time); ok {
					return x.Equal(b.(time.Time))
				}
				if x, ok := a.([]byte); ok {
					return bytes.Equal(x, b.([]byte)) && (x == nil) == (b.([]byte) == nil)
				}
				return a == b
			}
			if !eq(got, tc.want) || !eq(popped, tc.want) {
				t.Fatalf("get %#v, pop %#v, want %#v", got, popped, tc.want)
			}
			if !eq(after, tc.as.zero) {
				t.Fatalf("get after pop %#v, want %#v", after, tc.as.zero)
			}
			if _, ok := values[tc.name]; stillThere || !ok && stillThere {
				t.Fatalf("%s still in the session after Pop", tc.name)
			}
		})
	}
}
