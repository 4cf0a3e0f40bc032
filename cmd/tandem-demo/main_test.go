package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// TestMain lets the test binary act as the demo, so tests can start real
// instances and kill them.
func TestMain(m *testing.M) {
	if os.Getenv("TANDEM_DEMO_AS_COMMAND") == "1" {
		ctx, stop := signalContext()
		defer stop()
		if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "tandem-demo:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// handedOut holds the ports freePort has handed out in this test binary.
var handedOut sync.Map

// freePort returns a loopback port free for TCP and UDP at the time of the
// call. It picks from 28000 to 31999: below the kernel's ephemeral range
// (32768 and up by default), where an outgoing connection of any process
// could take the port between this pick and the instance binding it (a
// fresh-clone .ci/run failed so: "bind: address already in use"), and
// apart from the ranges of the suites that run beside it (the chaos
// harness below 20000, cmd/tandem from 20000 to 27999). A port is handed
// out once per test binary: two picks before either is bound would
// otherwise get the same one.
func freePort(t *testing.T) int {
	t.Helper()
	for range 200 {
		port := 28000 + rand.IntN(4000)
		if _, taken := handedOut.LoadOrStore(port, true); taken {
			continue
		}
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		ln.Close()
		if pc, err := net.ListenPacket("udp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			pc.Close()
			return port
		}
	}
	t.Fatal("no free port")
	return 0
}

// instance is one demo process.
type instance struct {
	name, url, api, gossip, peer string // url is the shop's public port, api the operator API's
	cmd                          *exec.Cmd
}

// startInstance starts the demo as a child process on free ports.
func startInstance(t *testing.T, name, join string) *instance {
	t.Helper()
	in := &instance{
		name:   name,
		url:    fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		api:    fmt.Sprintf("http://127.0.0.1:%d", freePort(t)),
		gossip: fmt.Sprintf("127.0.0.1:%d", freePort(t)),
		peer:   fmt.Sprintf("127.0.0.1:%d", freePort(t)),
	}
	in.start(t, join)
	return in
}

// start runs the instance's process, joining join if not empty.
func (in *instance) start(t *testing.T, join string) {
	t.Helper()
	args := []string{"-name", in.name, "-http", strings.TrimPrefix(in.url, "http://"), "-gossip", in.gossip, "-peer", in.peer, "-profile", "local", "-log-level", "warn",
		"-api", strings.TrimPrefix(in.api, "http://"), "-insecure-api"}
	if join != "" {
		args = append(args, "-join", join)
	}
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "TANDEM_DEMO_AS_COMMAND=1")
	cmd.Stderr = &prefixWriter{t: t, prefix: in.name}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	in.cmd = cmd
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}

// kill9 kills the instance as a crash would.
func (in *instance) kill9(t *testing.T) {
	t.Helper()
	if err := in.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = in.cmd.Wait()
}

// prefixWriter logs a child's stderr through the test.
type prefixWriter struct {
	t      *testing.T
	prefix string
}

// Write logs p line by line.
func (w *prefixWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Logf("[%s] %s", w.prefix, line)
	}
	return len(p), nil
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// probe is a client without cookies, for health and cluster checks.
var probe = &http.Client{Timeout: 5 * time.Second}

// ready reports whether the instance answers /readyz with 200.
func (in *instance) ready() bool {
	resp, err := probe.Get(in.url + "/readyz")
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == 200
}

// ring returns the names in the instance's ring, if it is ready.
func (in *instance) ring() []string {
	resp, err := probe.Get(in.api + "/v1/cluster")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	var v struct {
		Ready      bool           `json:"ready"`
		Partitions map[string]any `json:"partitions"`
	}
	if json.NewDecoder(resp.Body).Decode(&v) != nil || !v.Ready {
		return nil
	}
	var names []string
	for name := range v.Partitions {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// user is a browser: a cookie jar shared by every instance, all on
// 127.0.0.1, as behind one balancer.
type user struct {
	t      *testing.T
	client *http.Client
}

// newUser returns a user with no cookies.
func newUser(t *testing.T) *user {
	jar, _ := cookiejar.New(nil)
	return &user{t: t, client: &http.Client{Jar: jar, Timeout: 15 * time.Second}}
}

// do sends a request, following redirects, and returns status and body.
func (u *user) do(method, url string, form url.Values) (int, string) {
	u.t.Helper()
	var resp *http.Response
	var err error
	if method == "POST" {
		resp, err = u.client.PostForm(url, form)
	} else {
		resp, err = u.client.Get(url)
	}
	if err != nil {
		u.t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// must sends a request that must answer 200 and returns the body.
func (u *user) must(method, url string, form url.Values) string {
	u.t.Helper()
	status, body := u.do(method, url, form)
	if status != 200 {
		u.t.Fatalf("%s %s: %d %s", method, url, status, body)
	}
	return body
}

// cookie returns the jar's value of the named cookie.
func (u *user) cookie(in *instance, name string) string {
	loc, _ := url.Parse(in.url)
	for _, c := range u.client.Jar.Cookies(loc) {
		if c.Name == name {
			return c.Value
		}
	}
	return ""
}

// expect checks whoami and the cart on in.
func (u *user) expect(in *instance, who string, cart ...string) {
	u.t.Helper()
	if got := strings.TrimSpace(u.must("GET", in.url+"/whoami", nil)); got != who {
		u.t.Fatalf("whoami on %s: %q, want %q", in.name, got, who)
	}
	want, _ := json.Marshal(append([]string{}, cart...))
	if got := strings.TrimSpace(u.must("GET", in.url+"/cart", nil)); got != string(want) {
		u.t.Fatalf("cart on %s: %s, want %s", in.name, got, want)
	}
}

func TestUserKeepsWorkingWhenTheirInstanceDiesAndReturns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	a := startInstance(t, "a", "")
	waitFor(t, 20*time.Second, "a to be ready", a.ready)
	b, c := startInstance(t, "b", a.gossip), startInstance(t, "c", a.gossip)
	for _, in := range []*instance{a, b, c} {
		waitFor(t, 20*time.Second, in.name+" to see a ready ring of three", func() bool { return len(in.ring()) == 3 })
	}

	alice := newUser(t)
	if status, _ := alice.do("GET", a.url+"/whoami", nil); status != http.StatusUnauthorized {
		t.Fatalf("whoami before login: %d", status)
	}
	if page := alice.must("GET", a.url+"/", nil); !strings.Contains(page, `action="/login"`) {
		t.Fatalf("page without login form: %s", page)
	}
	alice.must("POST", a.url+"/cart", url.Values{"item": {"tea"}})
	anonymous := alice.cookie(a, "tandem_session")
	page := alice.must("POST", a.url+"/login", url.Values{"user": {"alice"}})
	if !strings.Contains(page, "Logged in as <b>alice</b>") || !strings.Contains(page, `<li class="item">tea `) {
		t.Fatalf("page after login: %s", page)
	}
	if alice.cookie(a, "tandem_session") == anonymous {
		t.Fatal("login kept the session id")
	}
	alice.must("POST", a.url+"/cart", url.Values{"item": {"milk"}})
	alice.expect(a, "alice", "tea", "milk")
	// The page tells the story: who served it, where the session lives
	// (as the operator API says), who is alive.
	where := alice.owners(a)
	alice.expectPage(a, where[0], where[1], "a", "b", "c")

	a.kill9(t)
	// At once, before membership notices: reads are served by buddies.
	alice.expect(b, "alice", "tea", "milk")
	for _, in := range []*instance{b, c} {
		waitFor(t, 30*time.Second, in.name+" to drop a from its ring", func() bool { return slices.Equal(in.ring(), []string{"b", "c"}) })
	}
	alice.must("POST", b.url+"/cart", url.Values{"item": {"bread"}})
	alice.expect(b, "alice", "tea", "milk", "bread")
	where = alice.owners(b)
	if where[0] == "a" || where[1] == "a" {
		t.Fatalf("owners after a died: %q", where)
	}
	waitFor(t, 30*time.Second, "b's page to show b and c alive", func() bool { return slices.Equal(alice.page(b).alive, []string{"b", "c"}) })
	alice.expectPage(b, where[0], where[1], "b", "c")
	if route := alice.cookie(b, "tandem_route"); route != "b" && route != "c" {
		t.Fatalf("route cookie names %q after a died", route)
	}

	// a restarts, on its addresses and under its name, and takes its
	// sessions back before it serves them; alice carries on there.
	a.start(t, b.gossip)
	waitFor(t, 30*time.Second, "a to be ready again", a.ready)
	alice.expect(a, "alice", "tea", "milk", "bread")
	alice.must("POST", a.url+"/cart/remove", url.Values{"item": {"tea"}})
	alice.expect(a, "alice", "milk", "bread")
	for _, in := range []*instance{a, b, c} {
		waitFor(t, 30*time.Second, in.name+" to see a ready ring of three", func() bool { return len(in.ring()) == 3 })
	}
	alice.expect(c, "alice", "milk", "bread")
	var owners struct{ Primary struct{ Name string } }
	status, body := alice.do("GET", a.api+"/v1/sessions/"+alice.cookie(a, "tandem_session")+"/owners", nil)
	if status != 200 || json.Unmarshal([]byte(body), &owners) != nil || alice.cookie(a, "tandem_route") != owners.Primary.Name {
		t.Fatalf("route cookie %q, owners %d %s", alice.cookie(a, "tandem_route"), status, body)
	}

	alice.must("POST", c.url+"/logout", nil)
	if status, _ := alice.do("GET", a.url+"/whoami", nil); status != http.StatusUnauthorized {
		t.Fatalf("whoami after logout: %d", status)
	}
}

// shown is what the shop's page shows.
type shown struct {
	servedBy, primary, buddy string
	alive                    []string
}

var (
	servedByRe = regexp.MustCompile(`id="served-by">([^<]*)<`)
	primaryRe  = regexp.MustCompile(`id="primary">([^<]*)<`)
	buddyRe    = regexp.MustCompile(`id="buddy">([^<]*)<`)
	memberRe   = regexp.MustCompile(`<li class="member" data-name="([^"]*)"`)
)

// page reads the shop's page on in.
func (u *user) page(in *instance) shown {
	u.t.Helper()
	body := u.must("GET", in.url+"/", nil)
	var s shown
	for re, v := range map[*regexp.Regexp]*string{servedByRe: &s.servedBy, primaryRe: &s.primary, buddyRe: &s.buddy} {
		if m := re.FindStringSubmatch(body); m != nil {
			*v = m[1]
		}
	}
	for _, m := range memberRe.FindAllStringSubmatch(body, -1) {
		s.alive = append(s.alive, m[1])
	}
	return s
}

// expectPage checks the page on in: served by in, the session's primary
// and buddy, the members alive.
func (u *user) expectPage(in *instance, primary, buddy string, alive ...string) {
	u.t.Helper()
	got := u.page(in)
	want := shown{servedBy: in.name, primary: primary, buddy: buddy, alive: alive}
	if got.servedBy != want.servedBy || got.primary != want.primary || got.buddy != want.buddy || !slices.Equal(got.alive, want.alive) {
		u.t.Fatalf("page on %s shows %+v, want %+v", in.name, got, want)
	}
}

// owners returns the primary and buddy of the user's session, as in's
// operator API names them.
func (u *user) owners(in *instance) [2]string {
	u.t.Helper()
	var v struct{ Primary, Buddy struct{ Name string } }
	status, body := u.do("GET", in.api+"/v1/sessions/"+u.cookie(in, "tandem_session")+"/owners", nil)
	if status != 200 || json.Unmarshal([]byte(body), &v) != nil || v.Primary.Name == "" || v.Buddy.Name == "" {
		u.t.Fatalf("owners on %s: %d %s", in.name, status, body)
	}
	return [2]string{v.Primary.Name, v.Buddy.Name}
}

// The shop refuses form posts from other sites, and answers bad input
// with a page that says what is wrong.
func TestShopRefusesCrossOriginPostsAndBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	a := startInstance(t, "guarded", "")
	waitFor(t, 20*time.Second, "the instance to be ready", a.ready)
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": "http://evil.example"},
	} {
		req, _ := http.NewRequest("POST", a.url+"/login", strings.NewReader("user=mallory"))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := probe.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(string(body), "Cross-origin request refused") || len(resp.Cookies()) != 0 {
			t.Errorf("cross-origin POST /login with %v: %d %q cookies %v\n%s", h, resp.StatusCode, resp.Header.Get("Content-Type"), resp.Cookies(), body)
		}
	}
	// The same origin, as the browser says it, is served.
	req, _ := http.NewRequest("POST", a.url+"/cart", strings.NewReader("item=tea"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	req.Header.Set("Origin", a.url)
	noRedirect := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("same-origin POST /cart: %d", resp.StatusCode)
	}

	shopper := newUser(t)
	for _, c := range []struct{ path, field, value, want string }{
		{"/cart", "item", strings.Repeat("x", 65), "The item field holds at most 64 characters; this one has 65."},
		{"/cart", "item", "   ", "The item field is empty"},
		{"/login", "user", strings.Repeat("é", 65), "The user field holds at most 64 characters; this one has 65."},
	} {
		resp, err := shopper.client.PostForm(a.url+c.path, url.Values{c.field: {c.value}})
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
			!strings.Contains(string(body), "<!doctype html>") || !strings.Contains(string(body), c.want) || !strings.Contains(string(body), `href="/"`) {
			t.Errorf("POST %s %s=%q: %d %q\n%s", c.path, c.field, c.value, resp.StatusCode, resp.Header.Get("Content-Type"), body)
		}
	}
	if cart := strings.TrimSpace(shopper.must("GET", a.url+"/cart", nil)); cart != "[]" {
		t.Errorf("cart after refused input: %s", cart)
	}
	// 64 characters are fine.
	shopper.must("POST", a.url+"/cart", url.Values{"item": {strings.Repeat("é", 64)}})
	if got := shopper.page(a); got.servedBy != "guarded" || got.primary != "guarded" || got.buddy != "none (a single member holds one copy)" || !slices.Equal(got.alive, []string{"guarded"}) {
		t.Errorf("page of a one-member cluster: %+v", got)
	}
}

func TestGracefulStopOnSIGTERM(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	a := startInstance(t, "solo", "")
	waitFor(t, 20*time.Second, "the instance to be ready", a.ready)
	if err := a.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no exit within 30s of SIGTERM")
	}
}

func TestBadCommandLines(t *testing.T) {
	for _, args := range [][]string{{"-no-such-flag"}, {"extra"}, {"-log-level", "loud"}} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if _, ok := err.(usageError); !ok {
			t.Errorf("run %q: %v, want a usage error", args, err)
		}
	}
	t.Setenv("TANDEM_LOG_LEVEL", "loud")
	if err := run(context.Background(), nil, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "log-level") {
		t.Errorf("bad environment value: %v", err)
	}
}

// The shop's public port does not serve Tandem's operator API: it would
// let any visitor read and write every session.
func TestPublicPortHasNoOperatorAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	a := startInstance(t, "public", "")
	waitFor(t, 20*time.Second, "the instance to be ready", a.ready)
	for _, path := range []string{"/v1/cluster", "/v1/sessions/some-session-id-0001", "/v1/principals/alice/sessions"} {
		resp, err := probe.Get(a.url + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Errorf("%s on the public port: %d", path, resp.StatusCode)
		}
	}
	if err := run(context.Background(), []string{"-api", "127.0.0.1:0"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "-tokens-file") {
		t.Errorf("-api without tokens: %v, want a refusal", err)
	}
}

// The app serves /metrics from a registry of its own that holds Tandem's
// collector beside the app's metrics and the runtime's.
func TestMetricsFromTheAppsRegistry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts processes")
	}
	a := startInstance(t, "metered", "")
	waitFor(t, 20*time.Second, "the instance to be ready", a.ready)
	shopper := newUser(t)
	shopper.must("POST", a.url+"/cart", url.Values{"item": {"tea"}})
	if cart := strings.TrimSpace(shopper.must("GET", a.url+"/cart", nil)); cart != `["tea"]` {
		t.Fatalf("cart: %s", cart)
	}
	resp, err := probe.Get(a.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`tandem_request_duration_seconds_count{node="metered",op="put"} 1`, `tandem_request_duration_seconds_bucket{node="metered",op="get",le="0.001"}`,
		`tandem_replication_duration_seconds_count{node="metered"}`, `tandem_build_info{commit=`, `tandem_sessions{node="metered",role="primary"} 1`,
		`shop_requests_total{code="303",method="post"} 1`, "go_goroutines", "process_resident_memory_bytes",
	} {
		if resp.StatusCode != 200 || !strings.Contains(string(body), want) {
			t.Fatalf("/metrics (%d) lacks %s:\n%s", resp.StatusCode, want, body)
		}
	}
}
