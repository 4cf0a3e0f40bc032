package tandem_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tandem-io/tandem"
	"github.com/tandem-io/tandem/replica/peer"
)

// testApp is a web app whose endpoints each exercise one part of the
// session handle. Query parameters name attributes and values.
func testApp() http.Handler {
	mux := http.NewServeMux()
	session := func(r *http.Request) *tandem.SessionHandle { return tandem.FromContext(r.Context()) }
	mux.HandleFunc("GET /noop", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	})
	mux.HandleFunc("GET /get", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, session(r).GetString(r.FormValue("name")))
	})
	mux.HandleFunc("GET /whoami", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, session(r).Principal())
	})
	mux.HandleFunc("POST /set", func(w http.ResponseWriter, r *http.Request) {
		if err := session(r).Set(r.FormValue("name"), r.FormValue("value")); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		switch r.FormValue("answer") {
		case "nothing":
		case "created":
			w.WriteHeader(http.StatusCreated)
		case "flush":
			http.NewResponseController(w).Flush()
		default:
			io.WriteString(w, "ok")
		}
	})
	mux.HandleFunc("GET /version", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, session(r).Version())
	})
	mux.HandleFunc("POST /set-version", func(w http.ResponseWriter, r *http.Request) {
		s := session(r)
		before := s.Version()
		_ = s.Set(r.FormValue("name"), r.FormValue("value"))
		w.WriteHeader(http.StatusOK) // saves
		fmt.Fprintf(w, "%d %d", before, s.Version())
	})
	mux.HandleFunc("POST /hijack", func(w http.ResponseWriter, r *http.Request) {
		_ = session(r).Set(r.FormValue("name"), r.FormValue("value"))
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		defer conn.Close()
		buf.WriteString("HTTP/1.1 200 OK\r\nContent-Length: 8\r\nConnection: close\r\n\r\nhijacked")
		buf.Flush()
	})
	mux.HandleFunc("POST /set-after-write", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
		_ = session(r).Set(r.FormValue("name"), r.FormValue("value"))
	})
	mux.HandleFunc("POST /delete", func(w http.ResponseWriter, r *http.Request) {
		session(r).Delete(r.FormValue("name"))
	})
	mux.HandleFunc("POST /login", func(w http.ResponseWriter, r *http.Request) {
		s := session(r)
		if err := s.RenewID(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		s.SetPrincipal(r.FormValue("user"))
	})
	mux.HandleFunc("POST /logout", func(w http.ResponseWriter, r *http.Request) {
		if err := session(r).Destroy(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
	return mux
}

// serveApp serves testApp through node's middleware until the test ends.
func serveApp(t *testing.T, node *tandem.Node, cfg tandem.MiddlewareConfig) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(node.MiddlewareWith(cfg)(testApp()))
	t.Cleanup(srv.Close)
	return srv
}

// browser is a user agent with a cookie jar. Cookies on 127.0.0.1 are
// shared across ports, as for one site behind a balancer.
type browser struct {
	t      *testing.T
	client *http.Client
}

// newBrowser returns a browser with an empty jar.
func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, client: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

// do sends a request and returns the response with its body read.
func (b *browser) do(method, url string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		b.t.Fatal(err)
	}
	return resp, string(body)
}

// must sends a request that must answer wantStatus and returns the body.
func (b *browser) must(wantStatus int, method, url string) (*http.Response, string) {
	b.t.Helper()
	resp, body := b.do(method, url)
	if resp.StatusCode != wantStatus {
		b.t.Fatalf("%s %s: %d %q, want %d", method, url, resp.StatusCode, body, wantStatus)
	}
	return resp, body
}

// cookie returns the jar's value of the named cookie for srv, or "".
func (b *browser) cookie(srv *httptest.Server, name string) string {
	u, _ := url.Parse(srv.URL)
	for _, c := range b.client.Jar.Cookies(u) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// setCookie puts a cookie in the jar, as a client choosing its own would.
func (b *browser) setCookie(srv *httptest.Server, name, value string) {
	u, _ := url.Parse(srv.URL)
	b.client.Jar.SetCookies(u, []*http.Cookie{{Name: name, Value: value, Path: "/"}})
}

// responseCookie returns the named cookie a response set, or nil.
func responseCookie(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// calls sums the cluster calls nodes have served: reads, writes, forwards.
func calls(nodes []*tandem.Node) uint64 {
	var n uint64
	for _, node := range nodes {
		st := node.Stats()
		n += st.Reads + st.Writes + st.Forwarded + st.BuddyReads
	}
	return n
}

// writes sums the writes nodes have acknowledged as primaries.
func writes(nodes []*tandem.Node) uint64 {
	var n uint64
	for _, node := range nodes {
		n += node.Stats().Writes
	}
	return n
}

func TestMiddlewareCreatesASessionOnlyWhenWrittenWithSecureCookies(t *testing.T) {
	nodes := startCluster(t, 3)
	srv := serveApp(t, nodes[0], tandem.MiddlewareConfig{})
	b := newBrowser(t)

	before := calls(nodes)
	for _, path := range []string{"/noop", "/get?name=cart", "/whoami"} {
		resp, _ := b.must(200, "GET", srv.URL+path)
		if len(resp.Cookies()) != 0 {
			t.Fatalf("GET %s without a session set cookies: %v", path, resp.Cookies())
		}
	}
	if got := calls(nodes) - before; got != 0 {
		t.Fatalf("requests without a session made %d cluster calls", got)
	}

	resp, _ := b.must(200, "POST", srv.URL+"/set?name=cart&value=tea")
	c := responseCookie(resp, "tandem_session")
	if c == nil {
		t.Fatalf("first write set no session cookie: %v", resp.Cookies())
	}
	if !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/" || c.Secure {
		t.Fatalf("session cookie %+v, want HttpOnly, SameSite=Lax, Path=/", c)
	}
	if len(c.Value) != 22 || tandem.ValidateID(c.Value) != nil {
		t.Fatalf("session id %q is not 128 bits in base64url", c.Value)
	}
	s, err := nodes[2].Peek(context.Background(), c.Value)
	if err != nil || s.Version != 1 || string(s.Attributes["cart"]) != string(encode(t, "tea")) {
		t.Fatalf("stored session: %+v %v", s, err)
	}
	primary, _, _, _ := nodes[0].Owners(c.Value)
	if route := responseCookie(resp, "tandem_route"); route == nil || route.Value != primary.Name || !route.HttpOnly {
		t.Fatalf("route cookie %+v, want HttpOnly naming primary %s", route, primary.Name)
	}

	// A request that only reads makes one read and sets no cookie.
	before, beforeWrites := calls(nodes), writes(nodes)
	resp, body := b.must(200, "GET", srv.URL+"/get?name=cart")
	if body != "tea" || len(resp.Cookies()) != 0 {
		t.Fatalf("read back: %q, cookies %v", body, resp.Cookies())
	}
	if w := writes(nodes) - beforeWrites; w != 0 {
		t.Fatalf("a read-only request wrote %d times", w)
	}
	if n := calls(nodes) - before; n < 1 || n > 2 { // one read, plus a forward if node 0 is not primary
		t.Fatalf("a read-only request made %d cluster calls", n)
	}
	// And a request that never touches the session makes no call at all.
	before = calls(nodes)
	b.must(200, "GET", srv.URL+"/noop")
	if n := calls(nodes) - before; n != 0 {
		t.Fatalf("a request that never touched the session made %d cluster calls", n)
	}
}

func TestMiddlewareCookieSettings(t *testing.T) {
	nodes := startCluster(t, 1)
	cfg := tandem.MiddlewareConfig{CookieName: "sid", RouteCookieName: "node", Path: "/app", Domain: "example.test", SameSite: http.SameSiteStrictMode}
	h := nodes[0].MiddlewareWith(cfg)(testApp())
	for _, viaTLS := range []bool{false, true} {
		req := httptest.NewRequest("POST", "/set?name=a&value=b", nil)
		if viaTLS {
			req.TLS = &tls.ConnectionState{}
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		resp := rec.Result()
		sid, node := responseCookie(resp, "sid"), responseCookie(resp, "node")
		if sid == nil || node == nil || node.Value != "node-1" {
			t.Fatalf("cookies: %v", resp.Cookies())
		}
		for _, c := range []*http.Cookie{sid, node} {
			if c.Path != "/app" || c.Domain != "example.test" || c.SameSite != http.SameSiteStrictMode || !c.HttpOnly || c.Secure != viaTLS {
				t.Fatalf("TLS %v: cookie %+v", viaTLS, c)
			}
		}
	}
	rec := httptest.NewRecorder()
	nodes[0].MiddlewareWith(tandem.MiddlewareConfig{Secure: true})(testApp()).ServeHTTP(rec, httptest.NewRequest("POST", "/set?name=a&value=b", nil))
	if c := responseCookie(rec.Result(), "tandem_session"); c == nil || !c.Secure {
		t.Fatalf("Secure config: %+v", c)
	}
}

func TestFromContextOutsideTheMiddlewarePanicsNamingTheMistake(t *testing.T) {
	defer func() {
		r := recover()
		msg, _ := r.(string)
		if !strings.Contains(msg, "tandem: FromContext called outside Node.Middleware") {
			t.Fatalf("recovered %v, want a panic naming FromContext outside Node.Middleware", r)
		}
	}()
	tandem.FromContext(context.Background())
	t.Fatal("FromContext outside the middleware returned")
}

func TestMiddlewareSavesBeforeTheResponseBegins(t *testing.T) {
	nodes := startCluster(t, 2)
	srv := serveApp(t, nodes[0], tandem.MiddlewareConfig{})
	for _, answer := range []string{"body", "nothing", "created", "flush"} {
		t.Run(answer, func(t *testing.T) {
			b := newBrowser(t)
			want := map[string]int{"created": 201}[answer]
			if want == 0 {
				want = 200
			}
			resp, _ := b.must(want, "POST", srv.URL+"/set?name=k&value="+answer+"&answer="+answer)
			c := responseCookie(resp, "tandem_session")
			if c == nil {
				t.Fatalf("no session cookie: %v", resp.Cookies())
			}
			s, err := nodes[1].Peek(context.Background(), c.Value)
			if err != nil || string(s.Attributes["k"]) != string(encode(t, answer)) {
				t.Fatalf("stored: %+v %v", s, err)
			}
		})
	}

	// A change after the response began reaches an existing session when
	// the handler returns...
	b := newBrowser(t)
	b.must(200, "POST", srv.URL+"/set?name=a&value=1")
	id := b.cookie(srv, "tandem_session")
	b.must(200, "POST", srv.URL+"/set-after-write?name=late&value=yes")
	s, err := nodes[1].Peek(context.Background(), id)
	if err != nil || string(s.Attributes["late"]) != string(encode(t, "yes")) {
		t.Fatalf("late change to an existing session: %+v %v", s, err)
	}
	// A hijacked connection still saves first.
	if _, body := b.must(200, "POST", srv.URL+"/hijack?name=ws&value=up"); body != "hijacked" {
		t.Fatalf("hijack answered %q", body)
	}
	if s, err := nodes[1].Peek(context.Background(), id); err != nil || string(s.Attributes["ws"]) != string(encode(t, "up")) {
		t.Fatalf("change before a hijack: %+v %v", s, err)
	}
	// ...but cannot create one, whose cookie could not be sent.
	before := writes(nodes)
	resp, _ := newBrowser(t).must(200, "POST", srv.URL+"/set-after-write?name=late&value=no")
	if len(resp.Cookies()) != 0 || writes(nodes) != before {
		t.Fatalf("a late first write created a session: cookies %v", resp.Cookies())
	}
}

func TestMiddlewareConcurrentRequestsKeepEachOthersChanges(t *testing.T) {
	nodes := startCluster(t, 3)
	b := newBrowser(t)
	setup := serveApp(t, nodes[0], tandem.MiddlewareConfig{})
	b.must(200, "POST", setup.URL+"/set?name=cart&value=tea")

	// Two requests of one user on different nodes: both read the session,
	// then each changes a different attribute.
	var loaded sync.WaitGroup
	loaded.Add(2)
	app := func(name string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s := tandem.FromContext(r.Context())
			if s.GetString("cart") != "tea" {
				http.Error(w, "cart not loaded", 500)
			}
			loaded.Done()
			loaded.Wait()
			_ = s.Set(name, name+"-value")
		})
	}
	var wg sync.WaitGroup
	for i, name := range []string{"theme", "lang"} {
		srv := httptest.NewServer(nodes[1+i].Middleware(app(name)))
		defer srv.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := b.client.Post(srv.URL, "", nil)
			if err == nil {
				resp.Body.Close()
			}
			if err != nil || resp.StatusCode != 200 {
				t.Errorf("%s: %v %v", name, resp, err)
			}
		}()
	}
	wg.Wait()
	s, err := nodes[0].Peek(context.Background(), b.cookie(setup, "tandem_session"))
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"cart": "tea", "theme": "theme-value", "lang": "lang-value"} {
		if string(s.Attributes[name]) != string(encode(t, want)) {
			t.Fatalf("attribute %s lost: %+v", name, s.Attributes)
		}
	}

	b.must(200, "POST", setup.URL+"/delete?name=theme")
	if _, body := b.must(200, "GET", setup.URL+"/get?name=theme"); body != "" {
		t.Fatalf("deleted attribute reads %q", body)
	}
}

func TestMiddlewareNeverAdoptsAnUnknownID(t *testing.T) {
	nodes := startCluster(t, 2)
	srv := serveApp(t, nodes[0], tandem.MiddlewareConfig{})
	ctx := context.Background()

	expired := "expired-session-00000001"
	if _, err := nodes[0].Do(ctx, &tandem.Op{Kind: tandem.OpPut, ID: expired, Principal: "mallory", IdleTimeout: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	deleted := "deleted-session-00000001"
	if _, err := nodes[0].Put(ctx, deleted, "mallory", nil); err != nil {
		t.Fatal(err)
	}
	if err := nodes[0].Delete(ctx, deleted); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, err := nodes[0].Peek(ctx, expired); !errors.Is(err, tandem.ErrNotFound); _, err = nodes[0].Peek(ctx, expired) {
		if time.Now().After(deadline) {
			t.Fatalf("session did not expire: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}

	for _, id := range []string{"chosen-by-the-client-01", expired, deleted, "bad id", strings.Repeat("x", 200)} {
		t.Run(id[:min(len(id), 20)], func(t *testing.T) {
			b := newBrowser(t)
			b.setCookie(srv, "tandem_session", id)
			if _, who := b.must(200, "GET", srv.URL+"/whoami"); who != "" {
				t.Fatalf("whoami %q", who)
			}
			resp, _ := b.must(200, "POST", srv.URL+"/set?name=a&value=b")
			c := responseCookie(resp, "tandem_session")
			if c == nil || c.Value == id {
				t.Fatalf("cookie %+v: the client's id was kept", c)
			}
			if tandem.ValidateID(id) == nil {
				if _, err := nodes[1].Peek(ctx, id); !errors.Is(err, tandem.ErrNotFound) {
					t.Fatalf("the client's id %s was stored: %v", id, err)
				}
			}
			if _, body := b.must(200, "GET", srv.URL+"/get?name=a"); body != "b" {
				t.Fatalf("new session reads %q", body)
			}
		})
	}
}

func TestMiddlewareLoginRenewsIDAndLogoutDestroys(t *testing.T) {
	nodes := startCluster(t, 3)
	srv := serveApp(t, nodes[1], tandem.MiddlewareConfig{})
	ctx := context.Background()
	b := newBrowser(t)

	b.must(200, "POST", srv.URL+"/set?name=cart&value=tea")
	anonymous := b.cookie(srv, "tandem_session")
	resp, _ := b.must(200, "POST", srv.URL+"/login?user=alice")
	loggedIn := b.cookie(srv, "tandem_session")
	if loggedIn == anonymous || responseCookie(resp, "tandem_session") == nil {
		t.Fatalf("login kept id %s", anonymous)
	}
	if _, err := nodes[0].Peek(ctx, anonymous); !errors.Is(err, tandem.ErrNotFound) {
		t.Fatalf("pre-login id still stored: %v", err)
	}
	s, err := nodes[0].Peek(ctx, loggedIn)
	if err != nil || s.Principal != "alice" || string(s.Attributes["cart"]) != string(encode(t, "tea")) {
		t.Fatalf("session after login: %+v %v", s, err)
	}
	if primary, _, _, _ := nodes[0].Owners(loggedIn); b.cookie(srv, "tandem_route") != primary.Name {
		t.Fatalf("route cookie %q after login, primary %s", b.cookie(srv, "tandem_route"), primary.Name)
	}
	if _, who := b.must(200, "GET", srv.URL+"/whoami"); who != "alice" {
		t.Fatalf("whoami %q", who)
	}

	// Logging in without a session yet needs no renewal.
	fresh := newBrowser(t)
	fresh.must(200, "POST", srv.URL+"/login?user=bob")
	if _, who := fresh.must(200, "GET", srv.URL+"/whoami"); who != "bob" {
		t.Fatalf("whoami %q", who)
	}

	resp, _ = b.must(200, "POST", srv.URL+"/logout")
	for _, name := range []string{"tandem_session", "tandem_route"} {
		if c := responseCookie(resp, name); c == nil || c.MaxAge >= 0 {
			t.Fatalf("logout left cookie %s: %+v", name, c)
		}
	}
	if _, err := nodes[0].Peek(ctx, loggedIn); !errors.Is(err, tandem.ErrNotFound) {
		t.Fatalf("session after logout: %v", err)
	}
	if b.cookie(srv, "tandem_session") != "" {
		t.Fatal("the browser kept the session cookie")
	}
	if _, who := b.must(200, "GET", srv.URL+"/whoami"); who != "" {
		t.Fatalf("whoami after logout %q", who)
	}
}

func TestMiddlewareLogsAUserOutEverywhere(t *testing.T) {
	nodes := startCluster(t, 3)
	var browsers []*browser
	var servers []*httptest.Server
	for _, node := range nodes {
		srv := serveApp(t, node, tandem.MiddlewareConfig{})
		b := newBrowser(t)
		b.must(200, "POST", srv.URL+"/login?user=carol")
		browsers, servers = append(browsers, b), append(servers, srv)
	}
	n, err := nodes[0].InvalidatePrincipal(context.Background(), "carol")
	if err != nil || n != 3 {
		t.Fatalf("invalidate: %d %v", n, err)
	}
	for i, b := range browsers {
		if _, who := b.must(200, "GET", servers[i].URL+"/whoami"); who != "" {
			t.Fatalf("browser %d still logged in as %q", i, who)
		}
		// A write after the invalidation starts a new, anonymous session
		// rather than bringing the old one back.
		old := b.cookie(servers[i], "tandem_session")
		b.must(200, "POST", servers[i].URL+"/set?name=a&value=b")
		if b.cookie(servers[i], "tandem_session") == old {
			t.Fatalf("browser %d: invalidated id reused", i)
		}
		if _, who := b.must(200, "GET", servers[i].URL+"/whoami"); who != "" {
			t.Fatalf("browser %d: logged in again as %q", i, who)
		}
	}
}

func TestMiddlewareAnswers503WhenTheClusterIsUnavailable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	faults := make([]*peer.FaultyCaller, 3)
	nodes, err := tandem.StartLocal(ctx, 3, func(i int, cfg *tandem.Config) {
		cfg.Caller = func(c peer.Caller) peer.Caller { faults[i] = peer.NewFaultyCaller(c); return faults[i] }
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Kill()
		}
	})
	srv := serveApp(t, nodes[0], tandem.MiddlewareConfig{Timeout: 300 * time.Millisecond})

	// A session node-1 neither owns nor backs up, so that cut off from the
	// others it can neither read nor write it.
	var id string
	for i := 0; id == ""; i++ {
		cand := fmt.Sprintf("elsewhere-session-%06d", i)
		p, b, _, _ := nodes[0].Owners(cand)
		if p.Name != "node-1" && b.Name != "node-1" {
			id = cand
		}
	}
	if _, err := nodes[1].Put(ctx, id, "dave", nil); err != nil {
		t.Fatal(err)
	}
	user := newBrowser(t)
	user.setCookie(srv, "tandem_session", id)
	if _, who := user.must(200, "GET", srv.URL+"/whoami"); who != "dave" {
		t.Fatalf("whoami %q", who)
	}

	for _, other := range nodes[1:] {
		faults[0].Cut(other.PeerAddr())
	}
	for _, path := range []string{"/whoami", "/set?name=a&value=b"} {
		method := map[bool]string{true: "GET", false: "POST"}[path == "/whoami"]
		resp, body := user.must(503, method, srv.URL+path)
		if strings.Contains(body, "dave") || strings.Contains(body, "ok") || resp.Header.Get("Retry-After") == "" || len(resp.Cookies()) != 0 {
			t.Fatalf("%s: 503 with body %q, headers %v", path, body, resp.Header)
		}
	}
	// A new session, which node-1 cannot replicate: no cookie, no 200.
	resp, body := newBrowser(t).must(503, "POST", srv.URL+"/set?name=a&value=b")
	if len(resp.Cookies()) != 0 || strings.Contains(body, "ok") {
		t.Fatalf("new session while cut off: %q %v", body, resp.Cookies())
	}

	faults[0].HealAll()
	user.must(200, "POST", srv.URL+"/set?name=a&value=b")
	if _, body := user.must(200, "GET", srv.URL+"/get?name=a"); body != "b" {
		t.Fatalf("after healing: %q", body)
	}
}

func TestMiddlewareRouteCookieFollowsFailoverAndFailback(t *testing.T) {
	nodes := startCluster(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b := newBrowser(t)
	srvs := make([]*httptest.Server, 3)
	for i, node := range nodes {
		srvs[i] = serveApp(t, node, tandem.MiddlewareConfig{})
	}
	b.must(200, "POST", srvs[0].URL+"/login?user=erin")
	id := b.cookie(srvs[0], "tandem_session")
	primary, _, _, _ := nodes[0].Owners(id)
	if got := b.cookie(srvs[0], "tandem_route"); got != primary.Name {
		t.Fatalf("route cookie %q, primary %s", got, primary.Name)
	}
	victim := slices.IndexFunc(nodes, func(n *tandem.Node) bool { return n.Name() == primary.Name })
	var survivors []*tandem.Node
	var front *httptest.Server
	for i, n := range nodes {
		if i != victim {
			survivors = append(survivors, n)
			front = srvs[i]
		}
	}

	nodes[victim].Kill()
	srvs[victim].Close()
	// At once, the buddy answers reads.
	if _, who := b.must(200, "GET", front.URL+"/whoami"); who != "erin" {
		t.Fatalf("whoami right after the primary died: %q", who)
	}
	if err := tandem.WaitConverged(ctx, survivors); err != nil {
		t.Fatal(err)
	}
	// The route cookie names the new primary (it may have been re-set by
	// the read above already, if membership was that quick).
	_, who := b.must(200, "GET", front.URL+"/whoami")
	newPrimary, _, _, _ := survivors[0].Owners(id)
	if route := b.cookie(front, "tandem_route"); who != "erin" || route != newPrimary.Name || newPrimary.Name == primary.Name {
		t.Fatalf("after failover: whoami %q, route cookie %q, primary %s", who, route, newPrimary.Name)
	}

	// The old primary returns under its name and gets the session back.
	cfg := tandem.LocalConfig(primary.Name)
	cfg.GossipAddr, cfg.PeerAddr, cfg.Join = "127.0.0.1:0", "127.0.0.1:0", []string{survivors[0].GossipAddr()}
	back, err := tandem.Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(back.Kill)
	if err := tandem.WaitConverged(ctx, append(survivors, back)); err != nil {
		t.Fatal(err)
	}
	resp, who := b.must(200, "GET", front.URL+"/whoami")
	if route := responseCookie(resp, "tandem_route"); who != "erin" || route == nil || route.Value != primary.Name {
		t.Fatalf("after failback: whoami %q, route cookie %+v, want %s", who, route, primary.Name)
	}
	if resp, _ := b.must(200, "GET", front.URL+"/whoami"); responseCookie(resp, "tandem_route") != nil {
		t.Fatal("route cookie re-set although the primary did not change")
	}
}

// Version is the session's version as the request's reads saw it, and the
// version its save made once the response began; 0 without a session.
func TestMiddlewareVersionFollowsLoadsAndSaves(t *testing.T) {
	nodes := startCluster(t, 2)
	srv := serveApp(t, nodes[0], tandem.MiddlewareConfig{})
	b := newBrowser(t)
	if _, body := b.must(200, "GET", srv.URL+"/version"); body != "0" {
		t.Fatalf("version without a session: %q, want 0", body)
	}
	if _, body := b.must(200, "POST", srv.URL+"/set-version?name=a&value=1"); body != "0 1" {
		t.Fatalf("first write: %q, want 0 before the save and 1 after", body)
	}
	if _, body := b.must(200, "POST", srv.URL+"/set-version?name=a&value=2"); body != "1 2" {
		t.Fatalf("second write: %q, want 1 before the save and 2 after", body)
	}
	s, err := nodes[1].Peek(context.Background(), b.cookie(srv, "tandem_session"))
	if err != nil || s.Version != 2 {
		t.Fatalf("stored: %+v %v; want version 2", s, err)
	}
	if _, body := b.must(200, "GET", srv.URL+"/version"); body != "2" {
		t.Fatalf("a read: %q, want 2", body)
	}
}
