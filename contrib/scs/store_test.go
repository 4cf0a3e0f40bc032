package tandemscs_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/alexedwards/scs/v2"

	"github.com/tandem-io/tandem"
	tandemscs "github.com/tandem-io/tandem/contrib/scs"
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

// app serves an scs-managed app through a Store on node: /put and /get
// a value, /renew the token, /destroy the session.
func app(t *testing.T, node *tandem.Node, tune func(*scs.SessionManager)) (*httptest.Server, *scs.SessionManager) {
	sm := scs.New()
	sm.Store = tandemscs.New(node)
	if tune != nil {
		tune(sm)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/put", func(w http.ResponseWriter, r *http.Request) { sm.Put(r.Context(), "v", r.FormValue("v")) })
	mux.HandleFunc("/get", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, sm.GetString(r.Context(), "v")) })
	mux.HandleFunc("/renew", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.RenewToken(r.Context()); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	mux.HandleFunc("/destroy", func(w http.ResponseWriter, r *http.Request) {
		if err := sm.Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), 500)
		}
	})
	srv := httptest.NewServer(sm.LoadAndSave(mux))
	t.Cleanup(srv.Close)
	return srv, sm
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

// get requests url, which must answer 200, and returns the body.
func (b *browser) get(url string) string {
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
	return string(body)
}

// token returns the session cookie's value.
func (b *browser) token(srv *httptest.Server) string {
	u, _ := url.Parse(srv.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == "session" {
			return c.Value
		}
	}
	return ""
}

func TestSessionsFollowTheUserAcrossInstances(t *testing.T) {
	nodes := startCluster(t, 3)
	var srvs []*httptest.Server
	for _, n := range nodes {
		srv, _ := app(t, n, nil)
		srvs = append(srvs, srv)
	}
	b := newBrowser(t)
	b.get(srvs[0].URL + "/put?v=tea")
	for _, srv := range srvs {
		if got := b.get(srv.URL + "/get"); got != "tea" {
			t.Fatalf("%s reads %q", srv.URL, got)
		}
	}
	token := b.token(srvs[0])
	if len(token) != 43 {
		t.Fatalf("token %q", token)
	}

	// Renewing the token moves the data and deletes the old one.
	b.get(srvs[1].URL + "/renew")
	if renewed := b.token(srvs[1]); renewed == token || renewed == "" {
		t.Fatalf("token after renew: %q", renewed)
	}
	if _, err := nodes[2].Peek(context.Background(), token); !errors.Is(err, tandem.ErrNotFound) {
		t.Fatalf("old token after renew: %v", err)
	}
	if got := b.get(srvs[2].URL + "/get"); got != "tea" {
		t.Fatalf("after renew: %q", got)
	}

	b.get(srvs[2].URL + "/destroy")
	if got := b.get(srvs[0].URL + "/get"); got != "" {
		t.Fatalf("after destroy: %q", got)
	}
}

func TestStoreHidesExpiredSessions(t *testing.T) {
	nodes := startCluster(t, 2)
	ctx := context.Background()
	store := tandemscs.New(nodes[0])
	token := "scs-token-abcdefghijklmnopqrstuvwxyz0123456"

	if err := store.CommitCtx(ctx, token, []byte("data"), time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	b, found, err := store.FindCtx(ctx, token)
	if err != nil || !found || string(b) != "data" {
		t.Fatalf("find: %q %v %v", b, found, err)
	}
	s, err := nodes[1].Peek(ctx, token)
	if err != nil {
		t.Fatal(err)
	}
	if at := s.ExpiresAt(); at.Before(time.Now().Add(59*time.Minute)) || at.After(time.Now().Add(time.Hour)) {
		t.Fatalf("Tandem ends the session at %v, want in an hour", at)
	}

	// A short expiry: the session is gone when it passes, in Tandem too.
	expiry := time.Now().Add(200 * time.Millisecond)
	if err := store.Commit(token, []byte("soon"), expiry); err != nil {
		t.Fatal(err)
	}
	for range 5 { // finds do not extend it
		if _, found, err := store.Find(token); !found || err != nil {
			t.Fatalf("find before expiry: %v %v", found, err)
		}
	}
	for time.Now().Before(expiry) {
		time.Sleep(time.Until(expiry))
	}
	if _, found, err := store.Find(token); found || err != nil {
		t.Fatalf("find after expiry: %v %v", found, err)
	}
	if _, err := nodes[1].Peek(ctx, token); !errors.Is(err, tandem.ErrNotFound) {
		t.Fatalf("Tandem still holds the expired session: %v", err)
	}
	// A commit whose expiry has passed deletes.
	if err := store.Commit(token, []byte("x"), time.Now().Add(-time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, found, _ := store.Find(token); found {
		t.Fatal("found a session committed already expired")
	}

	for _, bad := range []string{"", "short", "bad token with spaces....."} {
		if _, found, err := store.Find(bad); found || err != nil {
			t.Fatalf("find %q: %v %v", bad, found, err)
		}
		if err := store.Delete(bad); err != nil {
			t.Fatalf("delete %q: %v", bad, err)
		}
	}
	if err := store.Delete("never-committed-token-0001"); err != nil {
		t.Fatalf("delete unknown: %v", err)
	}
}

func TestSCSLifetimeAndUnknownTokens(t *testing.T) {
	nodes := startCluster(t, 2)
	srv, _ := app(t, nodes[0], func(sm *scs.SessionManager) { sm.Lifetime = 300 * time.Millisecond })
	b := newBrowser(t)
	b.get(srv.URL + "/put?v=x")
	first := b.token(srv)
	if got := b.get(srv.URL + "/get"); got != "x" {
		t.Fatalf("get: %q", got)
	}
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		time.Sleep(time.Until(deadline))
	}
	if got := b.get(srv.URL + "/get"); got != "" {
		t.Fatalf("after the lifetime: %q", got)
	}

	// A token Tandem does not know starts a new session under a new token.
	u, _ := url.Parse(srv.URL)
	for _, tok := range []string{first, "made-up-token-0123456789abcdefghijklmnopqrs", "not a token"} {
		b.client.Jar.SetCookies(u, []*http.Cookie{{Name: "session", Value: tok, Path: "/"}})
		if got := b.get(srv.URL + "/get"); got != "" {
			t.Fatalf("token %q reads %q", tok, got)
		}
		b.get(srv.URL + "/put?v=y")
		if now := b.token(srv); now == tok {
			t.Fatalf("scs kept the unknown token %q", tok)
		}
	}
}

func TestHashedTokensAreValidIDs(t *testing.T) {
	nodes := startCluster(t, 1)
	srv, _ := app(t, nodes[0], func(sm *scs.SessionManager) { sm.HashTokenInStore = true })
	b := newBrowser(t)
	b.get(srv.URL + "/put?v=hashed")
	if got := b.get(srv.URL + "/get"); got != "hashed" {
		t.Fatalf("get: %q", got)
	}
	if _, err := nodes[0].Peek(context.Background(), b.token(srv)); !errors.Is(err, tandem.ErrNotFound) {
		t.Fatalf("the raw token is stored although HashTokenInStore: %v", err)
	}
}
