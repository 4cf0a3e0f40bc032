package tandemsessions_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/gorilla/sessions"

	"github.com/tandem-io/tandem"
	tandemsessions "github.com/tandem-io/tandem/contrib/gorillasessions"
)

// startCluster starts n nodes on loopback, killed when the test ends.
func startCluster(t *testing.T, n int) []*tandem.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nodes, err := tandem.StartLocal(ctx, n, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, node := range nodes {
			node.Kill()
		}
	})
	return nodes
}

// app serves a gorilla/sessions app through a Store on node: /put and /get
// values, /flash, /login (Regenerate and SetPrincipal), /logout (MaxAge -1).
func app(t *testing.T, node *tandem.Node) (*httptest.Server, *tandemsessions.Store) {
	store := tandemsessions.New(node)
	handle := func(fn func(w http.ResponseWriter, r *http.Request, s *sessions.Session) error) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			s, err := store.Get(r, "app")
			if err == nil {
				err = fn(w, r, s)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusServiceUnavailable)
			}
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/put", handle(func(w http.ResponseWriter, r *http.Request, s *sessions.Session) error {
		s.Values["v"] = r.FormValue("v")
		s.Values[42] = []any{"mixed", 7, true}
		s.AddFlash("saved")
		return s.Save(r, w)
	}))
	mux.HandleFunc("/get", handle(func(w http.ResponseWriter, r *http.Request, s *sessions.Session) error {
		v, _ := s.Values["v"].(string)
		fmt.Fprintf(w, "%s %v %v", v, s.Values[42], s.IsNew)
		return nil
	}))
	mux.HandleFunc("/flash", handle(func(w http.ResponseWriter, r *http.Request, s *sessions.Session) error {
		fmt.Fprint(w, s.Flashes())
		return s.Save(r, w)
	}))
	mux.HandleFunc("/login", handle(func(w http.ResponseWriter, r *http.Request, s *sessions.Session) error {
		if err := store.Regenerate(r, w, s); err != nil {
			return err
		}
		return store.SetPrincipal(r, s, r.FormValue("user"))
	}))
	mux.HandleFunc("/logout", handle(func(w http.ResponseWriter, r *http.Request, s *sessions.Session) error {
		s.Options.MaxAge = -1
		return s.Save(r, w)
	}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, store
}

// browser is a cookie-keeping client; cookies on 127.0.0.1 are shared
// across ports, as for one site behind a balancer.
type browser struct {
	t      *testing.T
	client *http.Client
}

// newBrowser returns a browser with an empty jar.
func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// get requests url, which must answer 200, and returns the response and
// body.
func (b *browser) get(url string) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.client.Get(url)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		b.t.Fatalf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return resp, string(body)
}

// id returns the session cookie's value.
func (b *browser) id(srv *httptest.Server) string {
	u, _ := url.Parse(srv.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == "app" {
			return c.Value
		}
	}
	return ""
}

func TestSessionsFollowTheUserAcrossInstances(t *testing.T) {
	nodes := startCluster(t, 3)
	var srvs []*httptest.Server
	for _, n := range nodes {
		srv, _ := app(t, n)
		srvs = append(srvs, srv)
	}
	b := newBrowser(t)
	if _, body := b.get(srvs[0].URL + "/get"); body != " <nil> true" {
		t.Fatalf("first visit: %q", body)
	}
	resp, _ := b.get(srvs[0].URL + "/put?v=tea")
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "app" {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteLaxMode || cookie.Path != "/" || cookie.MaxAge != tandemsessions.DefaultMaxAge || tandem.ValidateID(cookie.Value) != nil {
		t.Fatalf("session cookie %+v", cookie)
	}
	for _, srv := range srvs {
		if _, body := b.get(srv.URL + "/get"); body != "tea [mixed 7 true] false" {
			t.Fatalf("%s reads %q", srv.URL, body)
		}
	}
	if _, body := b.get(srvs[1].URL + "/flash"); body != "[saved]" {
		t.Fatalf("flash: %q", body)
	}
	if _, body := b.get(srvs[2].URL + "/flash"); body != "[]" {
		t.Fatalf("flash shown twice: %q", body)
	}
}

func TestUnknownIDsAreNeverKept(t *testing.T) {
	nodes := startCluster(t, 2)
	srv, _ := app(t, nodes[0])
	ctx := context.Background()
	deleted := "deleted-gorilla-session-01"
	if _, err := nodes[0].Put(ctx, deleted, "", nil); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(srv.URL)
	for _, id := range []string{"chosen-by-the-client-01", deleted, "not an id"} {
		b := newBrowser(t)
		b.client.Jar.SetCookies(u, []*http.Cookie{{Name: "app", Value: id, Path: "/"}})
		if _, body := b.get(srv.URL + "/get"); body != " <nil> true" {
			t.Fatalf("cookie %q: %q", id, body)
		}
		b.get(srv.URL + "/put?v=x")
		if got := b.id(srv); got == id || tandem.ValidateID(got) != nil {
			t.Fatalf("cookie %q: session saved as %q", id, got)
		}
		if tandem.ValidateID(id) == nil {
			if _, err := nodes[1].Peek(ctx, id); !errors.Is(err, tandem.ErrNotFound) {
				t.Fatalf("the client's id %q was stored: %v", id, err)
			}
		}
	}

	// A session that vanishes between load and save is saved under a new
	// id, not brought back.
	b := newBrowser(t)
	b.get(srv.URL + "/put?v=1")
	first := b.id(srv)
	if err := nodes[1].Delete(ctx, first); err != nil {
		t.Fatal(err)
	}
	req := httptest.NewRequest("GET", "/", nil)
	req.AddCookie(&http.Cookie{Name: "app", Value: first})
	store := tandemsessions.New(nodes[1])
	s, err := store.New(req, "app")
	if err != nil || !s.IsNew {
		t.Fatalf("load deleted: %+v %v", s, err)
	}
	s.ID = first // as if loaded just before the delete
	rec := httptest.NewRecorder()
	if err := store.Save(req, rec, s); err != nil {
		t.Fatal(err)
	}
	if s.ID == first {
		t.Fatal("a vanished session was brought back under its id")
	}
}

func TestLoginRegeneratesAndLogoutDeletes(t *testing.T) {
	nodes := startCluster(t, 3)
	srv, _ := app(t, nodes[0])
	ctx := context.Background()
	b := newBrowser(t)
	b.get(srv.URL + "/put?v=cart")
	anonymous := b.id(srv)
	b.get(srv.URL + "/login?user=alice")
	loggedIn := b.id(srv)
	if loggedIn == anonymous {
		t.Fatal("login kept the id")
	}
	if _, err := nodes[1].Peek(ctx, anonymous); !errors.Is(err, tandem.ErrNotFound) {
		t.Fatalf("old id after regenerate: %v", err)
	}
	s, err := nodes[2].Peek(ctx, loggedIn)
	if err != nil || s.Principal != "alice" {
		t.Fatalf("after login: %+v %v", s, err)
	}
	if _, body := b.get(srv.URL + "/get"); body != "cart [mixed 7 true] false" {
		t.Fatalf("values after login: %q", body)
	}

	// Logged out everywhere: the next request starts anew.
	if n, err := nodes[1].InvalidatePrincipal(ctx, "alice"); err != nil || n != 1 {
		t.Fatalf("invalidate: %d %v", n, err)
	}
	if _, body := b.get(srv.URL + "/get"); body != " <nil> true" {
		t.Fatalf("after invalidation: %q", body)
	}

	b.get(srv.URL + "/put?v=again")
	id := b.id(srv)
	resp, _ := b.get(srv.URL + "/logout")
	if cs := resp.Cookies(); len(cs) != 1 || cs[0].MaxAge >= 0 {
		t.Fatalf("logout cookies %v", cs)
	}
	if _, err := nodes[1].Peek(ctx, id); !errors.Is(err, tandem.ErrNotFound) {
		t.Fatalf("after logout: %v", err)
	}
	if b.id(srv) != "" {
		t.Fatal("the browser kept the cookie")
	}
}

func TestMaxAgeBecomesTheSessionsTimeouts(t *testing.T) {
	nodes := startCluster(t, 1)
	defaults := tandem.DefaultConfig("x")
	for _, tc := range []struct {
		name     string
		set      func(*tandemsessions.Store)
		maxAge   int           // the cookie's
		idle     time.Duration // the stored session's
		lifetime time.Duration
	}{
		{"default: 30 days, as gorilla's stores", func(*tandemsessions.Store) {}, 86400 * 30, 30 * 24 * time.Hour, 30 * 24 * time.Hour},
		{"Options.MaxAge", func(s *tandemsessions.Store) { s.Options.MaxAge = 3600 }, 3600, time.Hour, time.Hour},
		{"MaxAge method", func(s *tandemsessions.Store) { s.MaxAge(7200) }, 7200, 2 * time.Hour, 2 * time.Hour},
		{"MaxAge 0 on purpose: browser-session cookie, cluster timeouts", func(s *tandemsessions.Store) { s.MaxAge(0) }, 0, defaults.IdleTimeout, defaults.AbsoluteTimeout},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := tandemsessions.New(nodes[0])
			tc.set(store)
			req := httptest.NewRequest("GET", "/", nil)
			s, _ := store.Get(req, "app")
			s.Values["k"] = "v"
			rec := httptest.NewRecorder()
			if err := store.Save(req, rec, s); err != nil {
				t.Fatal(err)
			}
			stored, err := nodes[0].Peek(context.Background(), s.ID)
			if err != nil || stored.IdleTimeout != tc.idle || !stored.Deadline.Equal(stored.Created.Add(tc.lifetime)) {
				t.Fatalf("stored: %+v %v", stored, err)
			}
			if c := rec.Result().Cookies(); len(c) != 1 || c[0].MaxAge != tc.maxAge {
				t.Fatalf("cookie %v", c)
			}
		})
	}
	store := tandemsessions.New(nodes[0])
	if err := store.SetPrincipal(httptest.NewRequest("GET", "/", nil), sessions.NewSession(store, "unsaved"), "x"); !errors.Is(err, tandem.ErrInvalid) {
		t.Fatalf("principal of an unsaved session: %v", err)
	}
}
